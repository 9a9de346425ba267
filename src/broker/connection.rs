//! Per-connection protocol state: what lives and dies with one network connection.
//!
//! Negotiated limits in both directions, topic aliases (3.3.2.3.4: they are per connection),
//! keep alive, and how many bytes the glue has not written yet (the basis of backpressure).

use std::time::{Duration, Instant};

use ahash::{AHashMap, AHashSet};
use bytestring::ByteString;

use super::session::PendingWill;
use super::types::{SessionId, StreamId};
use crate::codec::{Connect, ProtocolVersion};

#[derive(Debug)]
pub enum ConnState {
    /// Waiting for CONNECT (deadline: the CONNECT timeout).
    AwaitingConnect,
    /// Enhanced authentication in progress (4.12): the CONNECT waits for its outcome.
    Authenticating(Box<Connect>),
    /// In a cluster, a Clean Start 0 CONNECT waits for its session from the other nodes
    /// (cluster_session.rs); packets sent after it wait too.
    Fetching {
        connect: Box<Connect>,
        auth_data: Option<bytes::Bytes>,
        early: Vec<(super::StreamId, crate::codec::Packet)>,
    },
    Connected,
}

#[derive(Debug)]
pub struct Connection {
    pub state: ConnState,
    pub peer: String,
    pub session: Option<SessionId>,
    /// Known after CONNECT; decides the encoding of everything sent.
    pub version: ProtocolVersion,
    pub opened_at: Instant,
    pub last_activity: Instant,
    /// Keep alive in force; zero means none.
    pub keep_alive: Duration,
    /// Client's Receive Maximum (or our max inflight for 3.1.1): QoS 1/2 window toward it.
    pub send_window: usize,
    /// Client's Maximum Packet Size [MQTT-3.1.2-24].
    pub max_packet_size_out: u32,
    /// Client's Topic Alias Maximum: aliases we may assign.
    pub topic_alias_max_out: u16,
    pub aliases_out: AHashMap<ByteString, u16>,
    /// Aliases the client established toward us.
    pub aliases_in: AHashMap<u16, ByteString>,
    /// Request Problem Information (3.1.2.11.7).
    pub problem_info: bool,
    pub auth_method: Option<ByteString>,
    /// The transport's verdict on the credentials of the coming CONNECT (access.rs).
    pub login: Option<crate::auth::Login>,
    /// The user name the connection logged in as (`None`: anonymous).
    pub username: Option<ByteString>,
    /// ACL decisions by topic (access.rs).
    pub acl_cache: super::access::AclCache,
    /// Bytes handed to the glue and not yet reported written.
    pub unwritten: usize,
    /// How many bytes of PUBLISH the previous batch wrote to this connection: the next batch's
    /// transmit starts with that capacity (output.rs), so a fan-out burst is encoded without
    /// growing, and copying, a hundred buffers step by step.
    pub transmit_hint: usize,
    /// PUBLISH packets over time (`limits.max_publish_rate_per_client`); made at the first
    /// PUBLISH when the limit is on.
    pub publish_rate: Option<Box<crate::rate::TokenBucket>>,
    /// The client sent DISCONNECT: skip the will unless asked for (0x04).
    pub clean_disconnect: bool,
    /// Session Expiry Interval requested in CONNECT was zero (3.14.2.2.2 forbids raising it).
    pub connect_expiry_was_zero: bool,
    /// Open data streams besides the control stream (QUIC multi-stream); empty for TCP.
    pub data_streams: AHashSet<StreamId>,
    /// Largest QUIC datagram the peer accepts; `None` when datagrams are unavailable (TCP, or
    /// the peer did not enable them).
    pub datagram_max: Option<usize>,
    /// The client opted in to QoS 0 deliveries in datagrams (CONNECT user property).
    pub datagrams_out: bool,
    /// The connection is QUIC (server streams and datagrams are possible).
    pub quic: bool,
    /// The connection is QUIC and negotiated ALPN MQTT-next.
    pub mqtt_next: bool,
    /// Server-initiated streams for deliveries (topic-to-stream mapping).
    pub flows: super::server_flows::ServerFlows,
    /// QUIC 0-RTT (`safe`): the CONNECT came before the handshake was confirmed, so its will
    /// waits in `held_will` until `Broker::handshake_confirmed`.
    pub will_on_hold: bool,
    pub held_will: Option<PendingWill>,
    /// The broker closed the connection (a packet it could not take); nothing more is sent
    /// and it is forgotten once the current event is handled.
    pub closing: bool,
    /// Over the connection limits: CONNECT is answered with CONNACK and this code.
    pub refused: Option<crate::codec::ReasonCode>,
    /// The IP address this connection counts against `max_connections_per_address`.
    pub counted_ip: Option<std::net::IpAddr>,
    /// Times the client moved to a new address (QUIC migration).
    pub migrations: u32,
}

impl Connection {
    pub fn new(peer: String, now: Instant) -> Connection {
        Connection {
            state: ConnState::AwaitingConnect,
            peer,
            session: None,
            version: ProtocolVersion::V3_1_1,
            opened_at: now,
            last_activity: now,
            keep_alive: Duration::ZERO,
            send_window: 0,
            max_packet_size_out: u32::MAX,
            topic_alias_max_out: 0,
            aliases_out: AHashMap::new(),
            aliases_in: AHashMap::new(),
            problem_info: true,
            auth_method: None,
            login: None,
            username: None,
            acl_cache: Default::default(),
            unwritten: 0,
            transmit_hint: 0,
            publish_rate: None,
            clean_disconnect: false,
            connect_expiry_was_zero: true,
            data_streams: AHashSet::new(),
            datagram_max: None,
            datagrams_out: false,
            quic: false,
            mqtt_next: false,
            flows: Default::default(),
            will_on_hold: false,
            held_will: None,
            closing: false,
            refused: None,
            counted_ip: None,
            migrations: 0,
        }
    }

    /// Where something bound to `stream` goes now: the stream itself while it is open, else
    /// the control stream (a resumed session delivers there).
    pub fn route_stream(&self, stream: StreamId) -> StreamId {
        if stream == StreamId::CONTROL || self.data_streams.contains(&stream) {
            stream
        } else {
            StreamId::CONTROL
        }
    }

    /// The transport, from the peer label the glue gave (`tcp:ADDR`, `quic:ADDR`...).
    pub fn transport(&self) -> &str {
        self.peer.split_once(':').map_or("other", |(t, _)| t)
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, ConnState::Connected)
    }

    /// When this connection times out: 1.5 x keep alive after the last packet [MQTT-3.1.2-24],
    /// or the CONNECT deadline before CONNECT.
    pub fn deadline(&self, connect_timeout: Duration) -> Option<Instant> {
        match self.state {
            ConnState::AwaitingConnect
            | ConnState::Authenticating(_)
            | ConnState::Fetching { .. } => Some(self.opened_at + connect_timeout),
            ConnState::Connected if self.keep_alive.is_zero() => None,
            ConnState::Connected => Some(self.last_activity + self.keep_alive.mul_f32(1.5)),
        }
    }
}
