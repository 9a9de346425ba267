//! Topic-to-stream mapping: deliveries on server-initiated QUIC streams, one per subscription
//! or per topic, so that a lost packet on one topic never delays another (`proto-ext/flows.md`).
//!
//! Only for a client that asked (ALPN MQTT-next, or the CONNECT user property
//! `quic-stream-mapping`). The broker caps the streams it keeps open per connection, closes the
//! least recently used one to open a new one, and closes streams idle for a minute. QoS 1/2
//! state does not depend on them: acknowledgements come back on the control stream and
//! inflight messages are keyed by packet identifier.

use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytestring::ByteString;

use super::types::StreamId;

/// The CONNECT / CONNACK user property choosing the mapping: `subscription`, `topic` or `off`.
pub const MAPPING_PROPERTY: &str = "quic-stream-mapping";
/// The SUBSCRIBE user property giving the subscription's stream priority (-100..=100).
pub const PRIORITY_PROPERTY: &str = "quic-priority";
/// Server streams open at once per connection.
pub const MAX_SERVER_STREAMS: usize = 32;
/// A server stream unused this long is closed.
pub const IDLE: Duration = Duration::from_secs(60);
/// Server-flow stream ids are broker-internal: the transport maps them to the QUIC streams it
/// opens.
pub const SERVER_FLOW_BASE: u64 = 1 << 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamMapping {
    #[default]
    Off,
    PerSubscription,
    PerTopic,
}

impl StreamMapping {
    pub fn parse(value: &str) -> Option<StreamMapping> {
        match value {
            "subscription" => Some(StreamMapping::PerSubscription),
            "topic" => Some(StreamMapping::PerTopic),
            "off" => Some(StreamMapping::Off),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            StreamMapping::Off => "off",
            StreamMapping::PerSubscription => "subscription",
            StreamMapping::PerTopic => "topic",
        }
    }
}

/// What the transport must do for the server streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEvent {
    /// Open a unidirectional stream for `stream`, starting with a server data flow header
    /// (0x13) for `flow_id`, at `priority`.
    Open {
        stream: StreamId,
        flow_id: u64,
        priority: i32,
    },
    /// Finish the stream (FIN after what was queued).
    Close { stream: StreamId },
}

#[derive(Debug, Default)]
pub struct ServerFlows {
    pub mapping: StreamMapping,
    flows: AHashMap<ByteString, Flow>,
    next: u64,
}

#[derive(Debug)]
struct Flow {
    stream: StreamId,
    last_used: Instant,
}

impl ServerFlows {
    /// The stream for `key` (a subscription filter or a topic), opening one if needed.
    pub fn stream_for(
        &mut self,
        key: ByteString,
        priority: i32,
        now: Instant,
    ) -> (StreamId, Vec<FlowEvent>) {
        if let Some(flow) = self.flows.get_mut(&key) {
            flow.last_used = now;
            return (flow.stream, Vec::new());
        }
        let mut events = Vec::new();
        self.flows.retain(|_, f| {
            let keep = now.saturating_duration_since(f.last_used) < IDLE;
            if !keep {
                events.push(FlowEvent::Close { stream: f.stream });
            }
            keep
        });
        if self.flows.len() >= MAX_SERVER_STREAMS {
            let lru = self
                .flows
                .iter()
                .min_by_key(|(_, f)| f.last_used)
                .map(|(k, _)| k.clone());
            if let Some(flow) = lru.and_then(|k| self.flows.remove(&k)) {
                events.push(FlowEvent::Close {
                    stream: flow.stream,
                });
            }
        }
        let sequence = self.next;
        self.next += 1;
        let stream = StreamId(SERVER_FLOW_BASE + sequence);
        // Server flow ids have bit 0 set: 1, 3, 5, ...
        let flow_id = (sequence << 1) | 1;
        events.push(FlowEvent::Open {
            stream,
            flow_id,
            priority: priority.clamp(-100, 100),
        });
        self.flows.insert(
            key,
            Flow {
                stream,
                last_used: now,
            },
        );
        (stream, events)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.flows.len()
    }
}

impl super::Broker {
    /// Chooses the mapping at CONNECT: the user property if given (QUIC only), else per
    /// subscription on ALPN MQTT-next, else off. 5.0 clients that asked, or that use MQTT-next,
    /// see the choice in CONNACK.
    pub(super) fn negotiate_stream_mapping(
        &mut self,
        conn: super::ConnId,
        connect: &crate::codec::Properties,
        connack: &mut crate::codec::Properties,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let asked = connect
            .user_properties
            .iter()
            .find(|(k, _)| k == MAPPING_PROPERTY)
            .map(|(_, v)| StreamMapping::parse(v).unwrap_or(StreamMapping::Off));
        let mapping = match asked {
            _ if !c.quic => StreamMapping::Off,
            Some(m) => m,
            None if c.mqtt_next => StreamMapping::PerSubscription,
            None => StreamMapping::Off,
        };
        c.flows.mapping = mapping;
        if c.version.is_v5() && (asked.is_some() || c.mqtt_next) {
            connack.user_properties.push((
                ByteString::from_static(MAPPING_PROPERTY),
                ByteString::from_static(mapping.name()),
            ));
        }
    }
}

/// The `quic-priority` user property of a SUBSCRIBE (0 when absent or not a number).
pub fn priority(properties: &crate::codec::Properties) -> i32 {
    properties
        .user_properties
        .iter()
        .find(|(k, _)| k == PRIORITY_PROPERTY)
        .and_then(|(_, v)| v.parse::<i32>().ok())
        .map_or(0, |p| p.clamp(-100, 100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_caps_and_recycles() {
        let t0 = Instant::now();
        let mut flows = ServerFlows::default();
        let (a, ev) = flows.stream_for("a".into(), 5, t0);
        assert_eq!(
            ev,
            vec![FlowEvent::Open {
                stream: a,
                flow_id: 1,
                priority: 5
            }]
        );
        assert_eq!(flows.stream_for("a".into(), 5, t0), (a, vec![]));
        for i in 1..MAX_SERVER_STREAMS {
            flows.stream_for(
                ByteString::from(format!("k{i}")),
                0,
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(flows.len(), MAX_SERVER_STREAMS);
        // One more: the least recently used ("a") is closed to make room.
        let (_, ev) = flows.stream_for("new".into(), 0, t0 + Duration::from_secs(1));
        assert_eq!(ev[0], FlowEvent::Close { stream: a });
        assert_eq!(flows.len(), MAX_SERVER_STREAMS);
        // Much later, idle streams are closed when a new one opens.
        let (_, ev) = flows.stream_for("later".into(), 0, t0 + IDLE + Duration::from_secs(2));
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, FlowEvent::Close { .. }))
                .count(),
            MAX_SERVER_STREAMS
        );
        assert_eq!(flows.len(), 1);
    }
}
