//! QoS 0 over QUIC datagrams (RFC 9221): the opt-in and the rules for datagrams from clients.
//! See `proto-ext/datagrams.md`.
//!
//! A datagram carries exactly one MQTT packet, unordered and unreliable, so only a QoS 0
//! PUBLISH may travel in one, and never with a topic alias. A datagram that breaks a rule is
//! dropped and counted: it is never a reason to close the connection.

use std::time::Instant;

use bytestring::ByteString;

use super::{Broker, ConnId};
use crate::codec::{Packet, Properties, QoS};

/// The user property that asks for (CONNECT, SUBSCRIBE) and reports (CONNACK) datagrams.
pub const DATAGRAMS_PROPERTY: &str = "quic-datagrams";
/// The CONNACK user property with the current maximum datagram payload.
pub const DATAGRAM_MAX_PROPERTY: &str = "quic-datagram-max-size";

/// True if the properties carry `quic-datagrams: on`.
pub fn wants_datagrams(properties: &Properties) -> bool {
    properties
        .user_properties
        .iter()
        .any(|(k, v)| k == DATAGRAMS_PROPERTY && v.eq_ignore_ascii_case("on"))
}

/// What a QUIC connection can do, as the transport learnt it in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuicCaps {
    /// Largest datagram the peer accepts; `None` when it did not enable datagrams.
    pub datagram_max: Option<usize>,
    /// ALPN MQTT-next was negotiated.
    pub mqtt_next: bool,
}

impl Broker {
    /// Marks `conn` as a QUIC connection with these capabilities (before its CONNECT).
    pub fn set_quic_caps(&mut self, conn: ConnId, caps: QuicCaps) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.quic = true;
            c.datagram_max = caps.datagram_max;
            c.mqtt_next = caps.mqtt_next;
        }
    }

    /// A zero-length datagram: a liveness probe, counted as activity for keep alive.
    pub fn datagram_probe(&mut self, conn: ConnId, now: Instant) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_activity = now;
        }
    }

    /// A datagram that did not decode.
    pub fn datagram_malformed(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get(&conn) {
            tracing::debug!(conn = conn.0, peer = %c.peer, "malformed datagram dropped");
        }
        self.metrics.datagrams_dropped += 1;
    }

    pub(super) fn handle_datagram(&mut self, conn: ConnId, packet: Packet, now: Instant) {
        match packet {
            Packet::Publish(p) if self.acceptable_in_datagram(&p) => {
                self.metrics.datagrams_received += 1;
                self.handle_publish(conn, super::StreamId::CONTROL, p, now);
            }
            _ => {
                self.metrics.datagrams_dropped += 1;
                tracing::debug!(
                    conn = conn.0,
                    "datagram dropped: only a valid QoS 0 PUBLISH without topic alias may be a datagram"
                );
            }
        }
    }

    /// A QoS 0 PUBLISH without topic alias that `handle_publish` will not treat as a protocol
    /// violation: on a stream those close the connection, in a datagram they are only dropped
    /// (proto-ext/datagrams.md 2). Found by the `datagram` fuzz target (a retained PUBLISH in a
    /// datagram while retain is unavailable closed the connection).
    fn acceptable_in_datagram(&self, p: &crate::codec::Publish) -> bool {
        p.qos == QoS::AtMostOnce
            && p.properties.topic_alias.is_none()
            // [MQTT-3.3.4-6]
            && p.properties.subscription_identifiers.is_empty()
            // [MQTT-3.3.2-1] [MQTT-3.3.2-2]
            && crate::topic::is_valid_topic_name(&p.topic)
            && !self.too_deep(&p.topic)
            // [MQTT-3.2.2-14]
            && (!p.retain || self.settings.session.retain_available)
    }

    /// CONNACK user properties answering a datagram request, and whether datagrams are on.
    pub(super) fn negotiate_datagrams(
        &mut self,
        conn: ConnId,
        requested: bool,
        properties: &mut Properties,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !requested {
            return;
        }
        let on = c.datagram_max.is_some();
        c.datagrams_out = on;
        let state = if on { "on" } else { "off" };
        properties.user_properties.push((
            ByteString::from_static(DATAGRAMS_PROPERTY),
            ByteString::from_static(state),
        ));
        if let Some(max) = c.datagram_max {
            properties.user_properties.push((
                ByteString::from_static(DATAGRAM_MAX_PROPERTY),
                ByteString::from(max.to_string()),
            ));
        }
    }
}
