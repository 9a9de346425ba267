//! `limits:` protocol maxima announced to clients, and bounds against abuse.

use serde::{Deserialize, Serialize};

/// Limits the broker announces to clients and enforces (packet size, inflight, aliases), and
/// bounds on everything a client can make it hold (connections, sessions, queues, retained
/// messages, rates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest packet the broker accepts, in bytes (CONNACK Maximum Packet Size). Default 1 MiB.
    pub max_packet_size: u32,
    /// QoS 1/2 PUBLISH packets a client may have unacknowledged toward the broker (CONNACK
    /// Receive Maximum). Default 1024.
    pub receive_maximum: u16,
    /// Largest keep alive the broker allows, seconds; larger requests are lowered with Server
    /// Keep Alive (5.0). 0 means no limit. Default 0.
    pub max_keep_alive: u16,
    /// Topic aliases a client may use toward the broker (CONNACK Topic Alias Maximum). Default 10 (as mosquitto).
    pub topic_alias_maximum: u16,
    /// Messages queued per session (beyond those inflight) before the overflow policy applies:
    /// QoS 0 messages are dropped first, then the oldest QoS 1/2. Default 10_000.
    pub max_queued_messages: usize,
    /// QoS 1/2 messages inflight toward one client when the client sets no Receive Maximum
    /// (always so for 3.1.1). Default 64.
    pub max_inflight: u16,
    /// Seconds a new connection has to send CONNECT. Default 10.
    pub connect_timeout_secs: u64,
    /// Network connections open at once, all listeners together; beyond it CONNECT gets
    /// CONNACK 0x97 (Quota exceeded). Default 100_000.
    pub max_connections: usize,
    /// Connections open at once from one IP address (0: no limit); beyond it CONNACK 0x97.
    /// Default 1000.
    pub max_connections_per_address: usize,
    /// Sessions, connected or not; a CONNECT that would create one more gets CONNACK 0x97.
    /// Default 1_000_000.
    pub max_sessions: usize,
    /// Subscriptions one session may hold; a SUBSCRIBE beyond it gets SUBACK 0x97 (3.1.1: 0x80)
    /// for the new filters. Default 10_000.
    pub max_subscriptions: usize,
    /// Payload and topic bytes queued per session; beyond it the oldest queued messages are
    /// dropped, as for `max_queued_messages` (a message larger than this alone is not
    /// queued). Default 64 MiB.
    pub max_queued_bytes: usize,
    /// Retained messages stored; a retained message for a new topic beyond it is delivered but
    /// not stored. Default 100_000.
    pub max_retained_messages: usize,
    /// Payload and topic bytes of all retained messages; same policy. Default 256 MiB.
    pub max_retained_bytes: usize,
    /// QUIC: streams a client may open per second (burst: as many); beyond it a stream is
    /// refused with STOP_SENDING. 0: no limit. Default 100.
    pub quic_stream_opens_per_sec: u32,
    /// QUIC: datagrams a client may send per second (burst: as many); beyond it they are
    /// dropped and counted. 0: no limit. Default 1000.
    pub quic_datagrams_per_sec: u32,
    /// Levels a topic name or filter may have (`a/b/c` has 3); deeper ones are refused as
    /// invalid (PUBLISH: DISCONNECT 0x90, SUBSCRIBE: SUBACK 0x8F, will: CONNACK 0x90).
    /// Default 128.
    pub max_topic_levels: usize,
    /// Backpressure: a publisher whose message reaches a connection that is behind on writing
    /// (or whose QoS 1/2 queue backed up behind a full window) stops being read until that connection catches up, for at most this many milliseconds;
    /// a connection still behind after that holds no publisher again until it catches up (its
    /// QoS 0 deliveries are then dropped, QoS 1/2 queue). 0: never pause publishers, drop
    /// QoS 0 to connections behind at once. Default 1000.
    pub max_publisher_pause_ms: u64,
    /// New connections one IP address may open per second (burst: as many); beyond it a
    /// CONNECT gets CONNACK 0x9F Connection rate exceeded (3.1.1: return code 3) and the
    /// connection is closed (a QUIC connection is refused before its handshake). 0: no limit. Default 0 (loopback test rigs and load generators
    /// open thousands per second from one address; set it for public listeners).
    pub max_connection_rate_per_address: u32,
    /// PUBLISH packets one connection may send per second (burst: as many); beyond it the
    /// connection is closed, 5.0 clients first getting DISCONNECT 0x96 Message rate too high.
    /// QoS 0 in QUIC datagrams is bounded by `quic_datagrams_per_sec` instead (dropped, never
    /// closing). 0: no limit. Default 0.
    pub max_publish_rate_per_client: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            max_keep_alive: 0,
            topic_alias_maximum: 10,
            max_queued_messages: 10_000,
            max_inflight: 64,
            connect_timeout_secs: 10,
            max_connections: 100_000,
            max_connections_per_address: 1000,
            max_sessions: 1_000_000,
            max_subscriptions: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_retained_messages: 100_000,
            max_retained_bytes: 256 * 1024 * 1024,
            quic_stream_opens_per_sec: 100,
            quic_datagrams_per_sec: 1000,
            max_topic_levels: 128,
            max_publisher_pause_ms: 1000,
            max_connection_rate_per_address: 0,
            max_publish_rate_per_client: 0,
        }
    }
}
