//! Identifiers and the application message shared between sessions.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;

use crate::codec::{Properties, QoS};

/// One network connection (a TCP socket, or a QUIC connection) as seen by the broker.
/// Chosen by the transport glue; never reused while the broker knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A session (4.1): outlives connections when its expiry interval allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// A logical stream of a connection. TCP has only [`StreamId::CONTROL`]; QUIC may carry several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamId(pub u64);

impl StreamId {
    /// The stream that carried CONNECT: for TCP the socket itself.
    pub const CONTROL: StreamId = StreamId(0);
    /// QUIC DATAGRAM frames (RFC 9221): unordered, unreliable, one MQTT packet each.
    pub const DATAGRAM: StreamId = StreamId(u64::MAX);
}

/// An application message as published, shared (behind an `Arc`) by every queue it sits in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: ByteString,
    pub payload: Bytes,
    /// The QoS it was published with (deliveries use min(this, granted)).
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// Forwarded properties only: payload format, content type, response topic, correlation data,
    /// user properties [MQTT-3.3.2-17] [MQTT-3.3.2-18]. Expiry is kept in `expires_at`.
    pub properties: Properties,
    /// When the Message Expiry Interval runs out [MQTT-3.3.2-5].
    pub expires_at: Option<Instant>,
    /// Client id of the publisher (`None` for messages published by the embedding application).
    pub origin: Option<ByteString>,
    /// When the broker received it (publish-to-delivery latency); `None` for wills and
    /// messages restored from the store.
    pub received_at: Option<Instant>,
    /// In a cluster, the message's sequence number in the cluster's stream of QoS 1/2
    /// messages (README "Cluster"): where a session that moves between nodes resumes.
    /// `None` for QoS 0, retained copies and single-node brokers.
    pub cluster_seq: Option<u64>,
}

pub type SharedMessage = Arc<Message>;

impl Message {
    /// Seconds left before expiry, rounded up, or `None` when the message does not expire.
    /// `Some(0)` means expired.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            if left.is_zero() {
                0
            } else {
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                secs.min(u64::from(u32::MAX)) as u32
            }
        })
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.remaining_expiry(now) == Some(0)
    }
}
