//! The client's side of mqttd's QUIC extensions: QoS 0 in DATAGRAM frames
//! (`proto-ext/datagrams.md`) and deliveries on server-initiated streams (`proto-ext/flows.md`
//! section 7). Both are negotiated with MQTT 5.0 user properties; this module holds their
//! names, reads what the CONNACK granted, and counts what happened on the connection so tests
//! and `mqttd bench` can tell a datagram from a stream.

use std::sync::atomic::{AtomicU64, Ordering};

use bytestring::ByteString;

use crate::codec::Properties;

/// CONNECT / SUBSCRIBE user property asking for QoS 0 deliveries in datagrams; the CONNACK
/// answers with the same key (`on` / `off`).
pub const DATAGRAMS_PROPERTY: &str = "quic-datagrams";
/// CONNACK user property: the largest datagram the server may send us, in bytes.
pub const DATAGRAM_MAX_PROPERTY: &str = "quic-datagram-max-size";
/// CONNECT / CONNACK user property choosing the topic-to-stream mapping.
pub const MAPPING_PROPERTY: &str = "quic-stream-mapping";
/// SUBSCRIBE user property: the send priority of the subscription's server stream.
pub const PRIORITY_PROPERTY: &str = "quic-priority";

/// How the server should spread our deliveries over server-initiated QUIC streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMapping {
    /// Everything on the control stream (the default on ALPN `mqtt`).
    Off,
    /// One server stream per subscription.
    Subscription,
    /// One server stream per topic name.
    Topic,
}

impl StreamMapping {
    pub fn name(self) -> &'static str {
        match self {
            StreamMapping::Off => "off",
            StreamMapping::Subscription => "subscription",
            StreamMapping::Topic => "topic",
        }
    }

    pub fn parse(value: &str) -> Option<StreamMapping> {
        match value {
            "off" => Some(StreamMapping::Off),
            "subscription" => Some(StreamMapping::Subscription),
            "topic" => Some(StreamMapping::Topic),
            _ => None,
        }
    }
}

impl std::str::FromStr for StreamMapping {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StreamMapping::parse(s)
            .ok_or_else(|| format!("{s:?} is not a stream mapping: use subscription, topic or off"))
    }
}

/// What the CONNACK said about the extensions (all `None` when it said nothing: TCP, MQTT
/// 3.1.1, a server without them, or a client that did not ask).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuicGrants {
    /// `quic-datagrams`: whether the server will send our QoS 0 deliveries in datagrams.
    pub datagrams: Option<bool>,
    /// `quic-datagram-max-size`: the largest datagram payload the server may send us.
    pub datagram_max_size: Option<u32>,
    /// `quic-stream-mapping`: the mapping in force.
    pub stream_mapping: Option<StreamMapping>,
}

impl QuicGrants {
    /// Reads the CONNACK's user properties; unknown or malformed values count as absent.
    pub fn from_connack(properties: &Properties) -> QuicGrants {
        let value = |key: &str| {
            properties
                .user_properties
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
        };
        QuicGrants {
            datagrams: value(DATAGRAMS_PROPERTY).and_then(|v: &ByteString| {
                let v: &str = v;
                if v.eq_ignore_ascii_case("on") {
                    Some(true)
                } else if v.eq_ignore_ascii_case("off") {
                    Some(false)
                } else {
                    None
                }
            }),
            datagram_max_size: value(DATAGRAM_MAX_PROPERTY).and_then(|v| v.parse().ok()),
            stream_mapping: value(MAPPING_PROPERTY).and_then(|v| StreamMapping::parse(v)),
        }
    }

    /// One line for `-v`.
    pub fn describe(&self) -> String {
        let datagrams = match (self.datagrams, self.datagram_max_size) {
            (Some(true), Some(max)) => format!("on (max {max} bytes)"),
            (Some(true), None) => "on".into(),
            (Some(false), _) => "off".into(),
            (None, _) => "not negotiated".into(),
        };
        let mapping = self
            .stream_mapping
            .map_or("not negotiated", StreamMapping::name);
        format!("datagrams: {datagrams}, stream mapping: {mapping}")
    }
}

/// A user property pair.
pub(crate) fn property(
    key: &'static str,
    value: impl Into<ByteString>,
) -> (ByteString, ByteString) {
    (ByteString::from_static(key), value.into())
}

/// What the extensions carried on one client, across its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuicStats {
    /// QoS 0 PUBLISH packets sent in datagrams.
    pub datagrams_sent: u64,
    /// Publishes that asked for a datagram and went on the control stream instead: before
    /// CONNACK, over TCP, larger than the path allows, or the server takes no datagrams.
    pub datagrams_fallback: u64,
    /// QoS 0 PUBLISH packets received in datagrams and delivered.
    pub datagrams_received: u64,
    /// Received datagrams dropped: not exactly one QoS 0 PUBLISH without topic alias, or
    /// before the CONNACK.
    pub datagrams_dropped: u64,
    /// Server-initiated streams accepted with a valid server data flow header (0x13).
    pub server_streams: u64,
    /// Server-initiated streams refused (STOP_SENDING): a wrong or malformed flow header.
    pub server_streams_refused: u64,
    /// Connections whose CONNECT went out as 0-RTT early data and the server took it.
    pub zero_rtt_accepted: u64,
    /// Connections whose early data the server refused (CONNECT sent again in 1-RTT).
    pub zero_rtt_rejected: u64,
    /// Connections made over [`Fallback`](super::Fallback)'s transport because QUIC got no
    /// answer.
    pub fallback_connections: u64,
    /// Connections moved from the fallback back to QUIC once QUIC answered again
    /// ([`Fallback::retry_quic`](super::Fallback)).
    pub quic_returns: u64,
}

/// [`QuicStats`] as the tasks of a connection update it.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub datagrams_sent: AtomicU64,
    pub datagrams_fallback: AtomicU64,
    pub datagrams_received: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    pub server_streams: AtomicU64,
    pub server_streams_refused: AtomicU64,
    pub zero_rtt_accepted: AtomicU64,
    pub zero_rtt_rejected: AtomicU64,
    pub fallback_connections: AtomicU64,
    pub quic_returns: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> QuicStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        QuicStats {
            datagrams_sent: get(&self.datagrams_sent),
            datagrams_fallback: get(&self.datagrams_fallback),
            datagrams_received: get(&self.datagrams_received),
            datagrams_dropped: get(&self.datagrams_dropped),
            server_streams: get(&self.server_streams),
            server_streams_refused: get(&self.server_streams_refused),
            zero_rtt_accepted: get(&self.zero_rtt_accepted),
            zero_rtt_rejected: get(&self.zero_rtt_rejected),
            fallback_connections: get(&self.fallback_connections),
            quic_returns: get(&self.quic_returns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connack_grants_are_read_from_user_properties() {
        let mut p = Properties::default();
        assert_eq!(QuicGrants::from_connack(&p), QuicGrants::default());
        p.user_properties.push(property(DATAGRAMS_PROPERTY, "on"));
        p.user_properties
            .push(property(DATAGRAM_MAX_PROPERTY, "1180"));
        p.user_properties.push(property(MAPPING_PROPERTY, "topic"));
        let grants = QuicGrants::from_connack(&p);
        assert_eq!(grants.datagrams, Some(true));
        assert_eq!(grants.datagram_max_size, Some(1180));
        assert_eq!(grants.stream_mapping, Some(StreamMapping::Topic));
        assert_eq!(
            grants.describe(),
            "datagrams: on (max 1180 bytes), stream mapping: topic"
        );
        let mut off = Properties::default();
        off.user_properties
            .push(property(DATAGRAMS_PROPERTY, "off"));
        off.user_properties
            .push(property(MAPPING_PROPERTY, "sideways"));
        let grants = QuicGrants::from_connack(&off);
        assert_eq!(grants.datagrams, Some(false));
        assert_eq!(grants.stream_mapping, None);
    }
}
