//! The broker as a sans-IO state machine.
//!
//! [`Broker`] owns every session, the subscription trie and the retained store. The transport
//! glue feeds it events (a connection opened, packets decoded, bytes written, a connection lost,
//! time passed) with the current `Instant`, and drains [`Output`]s: packets to write, connections
//! to close, messages for in-process handlers. It does no I/O and reads no clock, so every
//! protocol rule is tested in memory, deterministically (see `tests.rs`).
//!
//! One owner for all shared state (as in rumqttd's router): no locks on the publish path, and
//! work is naturally batched per wake-up of the task that drives it.

mod access;
mod admin;
mod auth;
mod budget;
mod close;
mod cluster;
mod cluster_session;
mod cluster_shared;
mod cluster_wills;
mod connect;
mod connection;
mod datagram;
pub mod early;
mod invariants;
mod limits;
mod metrics;
mod output;
mod persist;
mod publish;
mod route;
mod server_flows;
mod session;
mod settings;
mod streams;
mod subscribe;
mod sys;
mod throttle;
mod timers;
mod transport_events;
mod types;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytestring::ByteString;

pub use admin::{AdminError, SessionInfo, SubscriptionInfo};
pub use auth::{AuthOutcome, EnhancedAuth};
pub use cluster::{decode_message, encode_message, ClusterAck, ClusterOutput};
pub use cluster_session::StateRecord;
pub use cluster_shared::{SharedOutput, SharedToken};
pub use cluster_wills::{ClusterWill, LivenessEvent};
pub use connect::forwardable as forwardable_properties;
pub use datagram::QuicCaps;
pub use metrics::{
    Histogram, Metrics, PacketCounts, ReasonCounts, LATENCY_BOUNDS_US, PACKET_TYPE_NAMES,
};
pub use output::{CloseKind, HandlerId, Output, Transmit};
pub use persist::{ChangeSet, Loaded, RestoreReport, StoreOp};
pub use sys::SYS_PREFIX;

/// Version of the store's record format (`persist::record`).
pub fn persist_format() -> u8 {
    persist::record::FORMAT
}
pub use server_flows::{FlowEvent, StreamMapping};
pub use settings::Settings;
pub use streams::allowed_on_unidirectional_stream;
pub use transport_events::ClientInfo;
pub use types::{ConnId, Message, SessionId, SharedMessage, StreamId};

use crate::codec::{DecodeError, Packet, QoS, ReasonCode};
use crate::topic::{RetainedStore, SubscriptionTrie};
use connection::{ConnState, Connection};
use output::OutputQueue;
use session::SubEntry;
use timers::{Timer, Timers};

/// How often idle sessions' large inflight tables are looked at: one found empty at two passes
/// in a row is given back (`session::Inflights::sweep`), so within 10 to 20 s.
const INFLIGHT_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Key of a subscription in the trie: one entry per session, stream and filter. A shared
/// subscription (`$share/group/filter`) is a separate entry from a plain one (4.8.2), and the
/// same filter subscribed on two QUIC streams is two subscriptions, delivered on both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SubKey {
    pub session: SessionId,
    pub group: Option<ByteString>,
    pub stream: StreamId,
}

/// The sans-IO broker.
pub struct Broker {
    settings: Settings,
    /// How far a connection may fall behind on writing (budget.rs).
    budget: budget::OutputBudget,
    /// When a connected session's QoS 1/2 queue pauses its publishers (budget.rs).
    queue_budget: budget::QueueBudget,
    /// Boxed: a map's table is over-allocated up to 2x, and an idle connection should cost
    /// one `Connection` plus a pointer, not twice its size (issue: memory per idle connection).
    conns: AHashMap<ConnId, Box<Connection>>,
    sessions: persist::SessionMap,
    client_ids: AHashMap<ByteString, SessionId>,
    subscriptions: SubscriptionTrie<SubKey, SubEntry>,
    shared_cursor: AHashMap<(ByteString, ByteString), usize>,
    retained: RetainedStore<SharedMessage>,
    app_subscriptions: SubscriptionTrie<HandlerId, QoS>,
    timers: Timers,
    /// `Timer::SweepInflights` is scheduled.
    inflight_sweep: bool,
    out: OutputQueue,
    next_session: u64,
    next_assigned_id: u64,
    scratch: Option<route::Scratch>,
    /// The publish-to-delivery latency last measured (route.rs `Wire::publish`).
    latency_memo: metrics::LatencyMemo,
    auth: Option<Box<dyn EnhancedAuth>>,
    /// ACL in force (`None`: everything allowed), see access.rs.
    acl: Option<std::sync::Arc<crate::auth::Acl>>,
    /// A CONNECT needs a login verdict from the transport first.
    login_required: bool,
    metrics: Metrics,
    /// Connections closed by `send` (a packet they cannot take): forgotten by `reap` once the
    /// event that caused it is handled.
    doomed: Vec<ConnId>,
    /// Admitted connections per IP address (`limits.max_connections_per_address`).
    per_address: AHashMap<std::net::IpAddr, usize>,
    /// New connections per IP address over time (`limits.max_connection_rate_per_address`).
    connect_rates: crate::rate::RatePerAddress,
    /// Connections over the limits kept only to answer CONNECT with CONNACK 0x97.
    refused_pending: usize,
    /// Payload and topic bytes of the retained store (`limits.max_retained_bytes`).
    retained_bytes: usize,
    persist: persist::Tracker,
    /// Publishers paused for connections behind on writing (throttle.rs).
    throttle: throttle::Throttle,
    /// The `$SYS` tree (sys.rs).
    sys: sys::SysTree,
    /// Set when this broker is a node of a cluster (cluster.rs).
    cluster: Option<Box<cluster::ClusterState>>,
}

impl Broker {
    pub fn new(settings: Settings) -> Broker {
        let budget = budget::OutputBudget::new(settings.limits.max_packet_size);
        let queue_budget = budget::QueueBudget::new(
            settings.limits.max_queued_messages,
            settings.limits.max_queued_bytes,
        );
        let connect_rates =
            crate::rate::RatePerAddress::new(settings.limits.max_connection_rate_per_address);
        Broker {
            settings,
            budget,
            queue_budget,
            conns: AHashMap::new(),
            sessions: persist::SessionMap::default(),
            client_ids: AHashMap::new(),
            subscriptions: SubscriptionTrie::default(),
            shared_cursor: AHashMap::new(),
            retained: RetainedStore::default(),
            app_subscriptions: SubscriptionTrie::default(),
            timers: Timers::default(),
            inflight_sweep: false,
            out: OutputQueue::default(),
            next_session: 1,
            next_assigned_id: 1,
            scratch: None,
            latency_memo: metrics::LatencyMemo::default(),
            auth: None,
            acl: None,
            login_required: false,
            metrics: Metrics::default(),
            doomed: Vec::new(),
            per_address: AHashMap::new(),
            connect_rates,
            refused_pending: 0,
            retained_bytes: 0,
            persist: persist::Tracker::default(),
            throttle: throttle::Throttle::default(),
            sys: sys::SysTree::default(),
            cluster: None,
        }
    }

    /// Installs an enhanced authentication hook (4.12). Without one, a CONNECT carrying an
    /// Authentication Method is refused with 0x8C.
    pub fn set_enhanced_auth(&mut self, auth: Box<dyn EnhancedAuth>) {
        self.auth = Some(auth);
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A snapshot of the counters, with the gauges counted now (metrics.rs).
    pub fn metrics(&self) -> Metrics {
        let mut m = self.metrics.clone();
        m.connections = self.conns.len() as u64;
        m.sessions = self.sessions.len() as u64;
        m.sent = self.out.sent.clone();
        m.retained_messages = self.retained.len() as u64;
        m.retained_bytes = self.retained_bytes as u64;
        let mut by_transport: Vec<(String, u64)> = Vec::new();
        for c in self.conns.values() {
            let transport = c.transport();
            match by_transport.iter_mut().find(|(t, _)| t == transport) {
                Some((_, n)) => *n += 1,
                None => by_transport.push((transport.to_string(), 1)),
            }
        }
        by_transport.sort();
        m.connections_by_transport = by_transport;
        for (_, s) in self.sessions.iter() {
            m.sessions_connected += u64::from(s.conn.is_some());
            m.subscriptions += s.subscriptions.len() as u64;
            m.shared_subscriptions += s
                .subscriptions
                .keys()
                .filter(|(filter, _)| filter.starts_with("$share/"))
                .count() as u64;
            m.inflight_messages += s.inflight.len() as u64;
            m.queued_messages += s.queue.len() as u64;
            m.queued_bytes += s.queued_bytes as u64;
        }
        m
    }

    /// Number of retained messages stored.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// The outputs produced since the last call.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        let mut outputs = self.out.take();
        for output in &mut outputs {
            if let Output::Transmit(t) = output {
                if let Some(hint) = output::settle(t) {
                    if let Some(c) = self.conns.get_mut(&t.conn) {
                        c.transmit_hint = hint;
                    }
                }
            }
        }
        outputs
    }

    /// The earliest instant at which [`Broker::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// A new network connection; it must send CONNECT within the configured timeout.
    ///
    /// Over `max_connections` or `max_connections_per_address` it is kept only to answer its
    /// CONNECT with CONNACK 0x97 (see `limits.rs`).
    pub fn connection_opened(&mut self, conn: ConnId, peer: String, now: Instant) {
        self.metrics.connections_opened += 1;
        let ip = limits::peer_ip(&peer);
        let mut c = Connection::new(peer, now);
        match self.admit(ip, now) {
            Ok(()) => {
                if let Some(ip) = ip {
                    *self.per_address.entry(ip).or_default() += 1;
                }
                c.counted_ip = ip;
            }
            Err(code) => {
                self.metrics.connections_refused += 1;
                tracing::debug!(conn = conn.0, peer = %c.peer, "connection over the limits");
                if self.refused_pending >= limits::MAX_REFUSED_PENDING {
                    self.out.close(conn, CloseKind::Abnormal(code));
                    return;
                }
                self.refused_pending += 1;
                c.refused = Some(code);
            }
        }
        self.conns.insert(conn, Box::new(c));
        let at = now + self.connect_timeout();
        self.timers.schedule(at, Timer::Connection(conn));
    }

    /// The transport wrote `bytes` of what it was given for `conn`.
    pub fn handle_written(&mut self, conn: ConnId, bytes: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let was_behind = self.budget.is_behind(c.unwritten);
        c.unwritten = c.unwritten.saturating_sub(bytes);
        if was_behind && !self.budget.is_behind(c.unwritten) {
            // The publishers it holds go on unless its QoS 1/2 queue is still backed up (then
            // the queue's pump lets them go at its low mark); then the queue goes out.
            match c.session {
                Some(sid) => {
                    self.release_if_drained(sid, conn);
                    self.pump_queue(sid, now);
                }
                None => self.release_publishers(conn),
            }
        }
        self.reap(now);
    }

    /// The network connection is gone (EOF, reset, I/O error) without a DISCONNECT packet.
    /// A Close output follows, so the glue releases what it holds for the connection.
    pub fn connection_lost(&mut self, conn: ConnId, now: Instant) {
        if self.conns.contains_key(&conn) {
            self.metrics.connections_lost += 1;
            self.out
                .close(conn, CloseKind::Abnormal(ReasonCode::UNSPECIFIED_ERROR));
            self.drop_connection(conn, now);
        }
        self.reap(now);
    }

    /// The transport could not decode what `conn` sent.
    pub fn handle_decode_error(&mut self, conn: ConnId, err: &DecodeError, now: Instant) {
        self.decode_error(conn, err, now);
        self.reap(now);
    }

    fn decode_error(&mut self, conn: ConnId, err: &DecodeError, now: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        tracing::debug!(conn = conn.0, peer = %c.peer, error = %err, "bad packet");
        if let (DecodeError::UnsupportedProtocolVersion(_), ConnState::AwaitingConnect) =
            (err, &c.state)
        {
            // [MQTT-3.1.2-2]: CONNACK 0x84 (3.1.1: return code 1), then close. The level is
            // unknown, so the answer uses the 3.1.1 encoding every client version understands.
            self.refuse_connect(
                conn,
                crate::codec::ProtocolVersion::V3_1_1,
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                now,
            );
            return;
        }
        self.protocol_violation(conn, err.reason_code(), now);
    }

    /// A decoded packet from `conn`, received on `stream`.
    pub fn handle_packet(&mut self, conn: ConnId, stream: StreamId, packet: Packet, now: Instant) {
        self.dispatch_packet(conn, stream, packet, now);
        self.reap(now);
    }

    fn dispatch_packet(&mut self, conn: ConnId, stream: StreamId, packet: Packet, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if stream == StreamId::DATAGRAM && !c.is_connected() {
            // Never fatal: a datagram before CONNACK is dropped.
            self.metrics.datagrams_dropped += 1;
            return;
        }
        c.last_activity = now;
        let version = match &packet {
            Packet::Connect(connect) => connect.protocol,
            _ => c.version,
        };
        self.metrics.received.add(
            packet.packet_type(),
            crate::codec::encoded_len(&packet, version),
        );
        match (&c.state, packet) {
            (ConnState::AwaitingConnect, Packet::Connect(connect)) => {
                self.handle_connect(conn, *connect, now)
            }
            (ConnState::Authenticating(_), Packet::Auth(auth)) => {
                self.handle_auth_continue(conn, auth, now)
            }
            (ConnState::Connected, packet) => self.handle_connected(conn, stream, packet, now),
            (ConnState::Fetching { .. }, packet) => {
                self.cluster_early_packet(conn, stream, packet, now)
            }
            // [MQTT-3.1.0-1] first packet must be CONNECT; [MQTT-3.1.0-2] a second CONNECT is
            // a protocol violation; during enhanced authentication only AUTH may be sent.
            _ => self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now),
        }
    }

    fn handle_connected(&mut self, conn: ConnId, stream: StreamId, packet: Packet, now: Instant) {
        if stream == StreamId::DATAGRAM {
            self.handle_datagram(conn, packet, now);
            return;
        }
        if stream != StreamId::CONTROL && !Self::allowed_on_data_stream(&packet) {
            // A CONNECT, DISCONNECT or AUTH on a data stream ends that stream only.
            self.stream_violation(conn, stream, ReasonCode::PROTOCOL_ERROR, now);
            return;
        }
        match packet {
            Packet::Publish(p) => self.handle_stream_publish(conn, stream, p, now),
            Packet::PubAck(a) => self.handle_puback(conn, a, now),
            Packet::PubRec(a) => self.handle_pubrec(conn, stream, a, now),
            Packet::PubRel(a) => self.handle_pubrel(conn, stream, a, now),
            Packet::PubComp(a) => self.handle_pubcomp(conn, a, now),
            Packet::Subscribe(s) => self.handle_subscribe(conn, stream, s, now),
            Packet::Unsubscribe(u) => self.handle_unsubscribe(conn, stream, u, now),
            Packet::PingReq => self.send(conn, stream, Packet::PingResp),
            Packet::Disconnect(d) => self.handle_disconnect(conn, d, now),
            Packet::Auth(a) => self.handle_reauth(conn, a, now),
            // Server-to-client packets and a second CONNECT [MQTT-3.1.0-2].
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp => self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now),
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Connection(conn) => self.check_connection_deadline(conn, now),
                Timer::Will(sid) => self.check_will(sid, now),
                Timer::SessionExpiry(sid) => self.check_session_expiry(sid, now),
                Timer::PublisherPause(conn) => self.check_publisher_pause(conn, now),
                Timer::Sys => self.sys_tick(now),
                Timer::ClusterCheckpoint => self.cluster_checkpoint_due(),
                Timer::SweepInflights => {
                    self.inflight_sweep = false;
                    for session in self.sessions.values_mut_untracked() {
                        session.inflight.sweep();
                    }
                }
            }
        }
        if !self.inflight_sweep {
            self.inflight_sweep = true;
            self.timers
                .schedule(now + INFLIGHT_SWEEP_EVERY, Timer::SweepInflights);
        }
        self.reap(now);
    }

    /// Forgets the connections `send` closed while handling the last event.
    pub(super) fn reap(&mut self, now: Instant) {
        while let Some(conn) = self.doomed.pop() {
            self.drop_connection(conn, now);
        }
    }

    fn check_connection_deadline(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let Some(deadline) = c.deadline(self.connect_timeout()) else {
            return;
        };
        if deadline > now {
            self.timers.schedule(deadline, Timer::Connection(conn));
            return;
        }
        if c.is_connected() {
            tracing::debug!(conn = conn.0, peer = %c.peer, "keep alive timeout");
            // [MQTT-3.1.2-24] close the connection; 5.0 may say why first.
            self.close_with(conn, ReasonCode::KEEP_ALIVE_TIMEOUT, now);
        } else {
            tracing::debug!(conn = conn.0, peer = %c.peer, "no CONNECT in time");
            self.metrics
                .server_disconnects
                .add(ReasonCode::MAXIMUM_CONNECT_TIME);
            self.out
                .close(conn, CloseKind::Abnormal(ReasonCode::MAXIMUM_CONNECT_TIME));
            self.drop_connection(conn, now);
        }
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.limits.connect_timeout_secs)
    }

    /// Queues one packet for `conn` on `stream`.
    ///
    /// A control packet larger than the client's Maximum Packet Size cannot be sent
    /// [MQTT-3.1.2-24] and the connection cannot go on without it: it is closed (PUBLISH packets
    /// are checked, and dropped, before they get here).
    fn send(&mut self, conn: ConnId, stream: StreamId, packet: Packet) {
        self.queue_packet(conn, stream, packet);
    }

    /// Queues `packet`; false when it was not (the connection is gone, closing, or the packet
    /// is too large for the client, which closes the connection).
    fn queue_packet(&mut self, conn: ConnId, stream: StreamId, packet: Packet) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if c.closing {
            return false;
        }
        if c.max_packet_size_out != u32::MAX
            && !matches!(packet, Packet::Publish(_))
            && crate::codec::encoded_len(&packet, c.version) > c.max_packet_size_out as usize
        {
            tracing::debug!(
                conn = conn.0,
                packet = packet.packet_type(),
                "packet exceeds the client's maximum packet size; closing"
            );
            self.out
                .close(conn, CloseKind::Abnormal(ReasonCode::PACKET_TOO_LARGE));
            c.closing = true;
            self.doomed.push(conn);
            return false;
        }
        if let Packet::ConnAck(ack) = &packet {
            self.metrics.connacks.add(ack.code);
        }
        let size = accounted_size(&packet, c.version);
        c.unwritten += size;
        self.out.packet(conn, stream, c.version, packet, size);
        if self.budget.standing(c.unwritten) == budget::Standing::Over {
            // The client does not read what it is sent (deliveries stopped long before: these
            // are answers to its own packets). No DISCONNECT: it would not be read either.
            tracing::info!(conn = conn.0, peer = %c.peer, "closing: the client does not read what it is sent");
            self.metrics.output_overflows += 1;
            self.out
                .close(conn, CloseKind::Abnormal(ReasonCode::QUOTA_EXCEEDED));
            c.closing = true;
            self.doomed.push(conn);
        }
        true
    }
}

/// Bytes a packet counts for in the output budget (budget.rs): exact for PUBLISH (the packets
/// that matter), what holding one costs for the small control packets. The glue reports
/// written packets with the same measure.
pub fn accounted_size(packet: &Packet, version: crate::codec::ProtocolVersion) -> usize {
    match packet {
        Packet::Publish(_) => crate::codec::encoded_len(packet, version),
        _ => budget::CONTROL_PACKET_COST,
    }
}
