//! Session state (4.1): what survives a connection when the session does.
//!
//! Subscriptions, outgoing QoS 1/2 messages inflight and queued, incoming QoS 2 packet ids that
//! await PUBREL, the pending will and the expiry. The network connection, if any, is only
//! referenced: a session may be served by one TCP socket, one QUIC stream or several.

use std::collections::VecDeque;
use std::time::Instant;

use ahash::{AHashMap, AHashSet};
use bytestring::ByteString;

use super::types::{ConnId, SharedMessage, StreamId};
use crate::codec::{ProtocolVersion, QoS, SubscriptionOptions};

/// One subscription of a session, as stored in the session and in the trie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubEntry {
    pub options: SubscriptionOptions,
    /// Subscription Identifier (3.8.2.1.2).
    pub id: Option<u32>,
    /// The stream the subscription was made on: deliveries go there.
    pub stream: StreamId,
    /// QoS 0 deliveries of this subscription may go in QUIC datagrams (SUBSCRIBE user
    /// property `quic-datagrams: on`, see `proto-ext/datagrams.md`).
    pub datagram: bool,
    /// Send priority of this subscription's server stream (SUBSCRIBE user property
    /// `quic-priority`), see `proto-ext/flows.md`.
    pub priority: i32,
}

/// A message on its way to one subscriber: the shared message plus what is particular to this
/// subscriber (granted QoS, retain flag to send, matching subscription identifiers).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub msg: SharedMessage,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    pub stream: StreamId,
    /// Every matching subscription asked for datagrams.
    pub datagram: bool,
    /// The filter of a matching subscription (the flow key of per-subscription streams) and
    /// the highest priority among the matching subscriptions.
    pub flow: Option<bytestring::ByteString>,
    pub priority: i32,
    /// Identity of this delivery in the store (unique per broker run and store), given when it
    /// reaches its session (`Broker::deliver`); 0 before.
    pub seq: u64,
}

impl Delivery {
    /// What it counts against `max_queued_bytes`: the message's payload and topic (shared
    /// between the queues that hold it, so this over-counts, on the safe side).
    pub fn size(&self) -> usize {
        self.msg.payload.len() + self.msg.topic.len()
    }
}

/// Outgoing QoS 1/2 state per packet identifier (4.3.2, 4.3.3).
#[derive(Debug, Clone)]
pub enum Inflight {
    /// PUBLISH sent, PUBACK or PUBREC awaited.
    Published(Delivery),
    /// PUBREC received and PUBREL sent, PUBCOMP awaited.
    Released { stream: StreamId },
}

/// Outgoing QoS 1/2 flows by packet identifier, remembering the order they were sent in.
///
/// A hash map, not a `BTreeMap`: each QoS 1 delivery inserts, looks up and removes one entry,
/// and with 100 in flight the B-tree searches were ~300 instructions per message (callgrind,
/// fan-in QoS 1). Retransmission [MQTT-4.4.0-1] and stream rebinding want send order, which
/// the sequence number gives (packet ids wrap).
#[derive(Debug, Default)]
pub struct Inflights {
    map: AHashMap<u16, (u64, Inflight)>,
    next_seq: u64,
}

impl Inflights {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn contains_key(&self, id: &u16) -> bool {
        self.map.contains_key(id)
    }

    pub fn get(&self, id: &u16) -> Option<&Inflight> {
        self.map.get(id).map(|(_, f)| f)
    }

    /// Adds a flow, or replaces one keeping its place in the send order (PUBREC -> PUBREL).
    pub fn insert(&mut self, id: u16, inflight: Inflight) {
        match self.map.get_mut(&id) {
            Some(entry) => entry.1 = inflight,
            None => {
                self.map.insert(id, (self.next_seq, inflight));
                self.next_seq += 1;
            }
        }
    }

    pub fn remove(&mut self, id: &u16) -> Option<Inflight> {
        self.map.remove(id).map(|(_, f)| f)
    }

    /// Makes the send order the packet identifier order (for flows restored from the store,
    /// which does not keep the order of flows past PUBREC).
    pub fn order_by_packet_id(&mut self) {
        let mut ids: Vec<u16> = self.map.keys().copied().collect();
        ids.sort_unstable();
        for (seq, id) in ids.into_iter().enumerate() {
            if let Some(entry) = self.map.get_mut(&id) {
                entry.0 = seq as u64;
            }
        }
        self.next_seq = self.map.len() as u64;
    }

    /// Every flow, in the order it was first sent.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&u16, &mut Inflight)> {
        let mut all: Vec<_> = self.map.iter_mut().collect();
        all.sort_unstable_by_key(|(_, (seq, _))| *seq);
        all.into_iter().map(|(id, (_, f))| (id, f))
    }

    /// Every flow, in the order it was first sent.
    pub fn iter(&self) -> impl Iterator<Item = (&u16, &Inflight)> {
        let mut all: Vec<_> = self.map.iter().collect();
        all.sort_unstable_by_key(|(_, (seq, _))| *seq);
        all.into_iter().map(|(id, (_, f))| (id, f))
    }
}

/// A will waiting for its delay to pass or its session to end (3.1.3.2.2).
#[derive(Debug, Clone)]
pub struct PendingWill {
    pub message: SharedMessage,
    pub delay_secs: u32,
    /// Set once the connection is gone.
    pub publish_at: Option<Instant>,
}

#[derive(Debug)]
pub struct Session {
    pub client_id: ByteString,
    pub conn: Option<ConnId>,
    pub version: ProtocolVersion,
    /// By full filter string (shared ones with their `$share/group/` prefix) and the stream that
    /// made the subscription.
    pub subscriptions: AHashMap<(ByteString, StreamId), SubEntry>,
    pub inflight: Inflights,
    /// Only through `push_queued` / `pop_queued` / `unpop_queued`, which keep `queued_bytes`.
    pub queue: VecDeque<Delivery>,
    /// Payload and topic bytes of `queue` (`limits.max_queued_bytes`).
    pub queued_bytes: usize,
    /// Incoming QoS 2 packet ids awaiting PUBREL, per stream (ids are per stream on QUIC).
    pub incoming_qos2: AHashSet<(StreamId, u16)>,
    next_packet_id: u16,
    /// Session Expiry Interval in seconds; u32::MAX never expires.
    pub expiry_secs: u32,
    /// When a disconnected session expires.
    pub expires_at: Option<Instant>,
    /// The will of the current (or last) connection.
    pub will: Option<PendingWill>,
    /// The user name of the current (or last) connection (`None`: anonymous).
    pub username: Option<ByteString>,
    /// Its ACL rules, resolved at CONNECT; `None` without an ACL (see access.rs).
    pub rules: Option<std::sync::Arc<crate::auth::ClientRules>>,
    /// Already in the session map's dirty set (persistence change tracking): a session
    /// borrowed mutably many times between two commits is added once, by a flag check.
    pub(crate) dirty_marked: bool,
}

impl Session {
    pub fn new(client_id: ByteString, version: ProtocolVersion) -> Session {
        Session {
            client_id,
            conn: None,
            version,
            subscriptions: AHashMap::new(),
            inflight: Inflights::default(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            incoming_qos2: AHashSet::new(),
            next_packet_id: 1,
            expiry_secs: 0,
            expires_at: None,
            will: None,
            username: None,
            rules: None,
            dirty_marked: false,
        }
    }

    pub fn push_queued(&mut self, delivery: Delivery) {
        self.queued_bytes += delivery.size();
        self.queue.push_back(delivery);
    }

    pub fn pop_queued(&mut self) -> Option<Delivery> {
        let delivery = self.queue.pop_front()?;
        self.queued_bytes -= delivery.size();
        Some(delivery)
    }

    /// Puts back what `pop_queued` just took.
    pub fn unpop_queued(&mut self, delivery: Delivery) {
        self.queued_bytes += delivery.size();
        self.queue.push_front(delivery);
    }

    /// A free packet identifier for an outgoing QoS 1/2 PUBLISH, or `None` when all 65535 are
    /// in use [MQTT-2.2.1-4].
    pub fn allocate_packet_id(&mut self) -> Option<u16> {
        if self.inflight.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.inflight.contains_key(&id) {
                return Some(id);
            }
        }
    }
}
