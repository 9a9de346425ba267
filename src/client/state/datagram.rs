//! The QUIC extensions in the session state machine: QoS 0 PUBLISH in datagrams
//! (`proto-ext/datagrams.md`) and deliveries on server-initiated streams (`proto-ext/flows.md`
//! section 7).
//!
//! A datagram is unordered and may be lost, so it is only ever a QoS 0 PUBLISH without a topic
//! alias, in either direction; anything else received in one is dropped, never a reason to end
//! the connection. A server stream carries PUBLISH packets only, with full topic names (an
//! alias set on one stream could be used on another before it arrives); their acknowledgements
//! go on the control stream.

use std::time::Instant;

use super::{ClientState, Phase, StreamKey};
use crate::client::error::ClientError;
use crate::codec::{Packet, QoS, ReasonCode};

impl ClientState {
    /// A packet received in a datagram. Returns whether it was delivered (a QoS 0 PUBLISH
    /// without topic alias, after CONNACK); the glue counts the others as dropped.
    pub fn handle_datagram(&mut self, packet: Packet, now: Instant) -> bool {
        if self.phase != Phase::Connected {
            return false;
        }
        match packet {
            Packet::Publish(p)
                if p.qos == QoS::AtMostOnce && p.properties.topic_alias.is_none() =>
            {
                // Delivered like a control stream message: a datagram belongs to no stream.
                self.handle_publish(StreamKey::CONTROL, p, now).is_ok()
            }
            _ => false,
        }
    }

    /// A packet on a server-initiated stream: a PUBLISH without topic alias, answered on the
    /// control stream; anything else is a protocol error (flows.md section 7).
    pub(super) fn handle_server_stream(
        &mut self,
        stream: StreamKey,
        packet: Packet,
        now: Instant,
    ) -> Result<(), ClientError> {
        match packet {
            Packet::Publish(p) if p.properties.topic_alias.is_none() => {
                // The acknowledgement token names this stream; `route` sends the PUBACK /
                // PUBREC on the control stream, since a server stream is not ours to write.
                self.handle_publish(stream, p, now)
            }
            Packet::Publish(_) => Err(self.violation(
                ReasonCode::PROTOCOL_ERROR,
                "topic alias on a server stream (proto-ext/flows.md section 7)".into(),
                now,
            )),
            other => Err(self.violation(
                ReasonCode::PROTOCOL_ERROR,
                format!(
                    "packet type {} on a server stream, where only PUBLISH may travel",
                    other.packet_type()
                ),
                now,
            )),
        }
    }

    /// Where a QoS 0 PUBLISH that asked for a datagram goes: [`StreamKey::DATAGRAM`] once
    /// connected (the server drops datagrams before its CONNACK), else `stream`.
    pub(super) fn datagram_or(&self, stream: StreamKey) -> StreamKey {
        if self.phase == Phase::Connected {
            StreamKey::DATAGRAM
        } else {
            stream
        }
    }
}
