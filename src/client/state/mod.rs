//! The client side of an MQTT session as a sans-IO state machine.
//!
//! [`ClientState`] knows the protocol and nothing of sockets or clocks, so every rule (packet
//! identifiers, QoS 1/2 flows, the server's Receive Maximum, topic aliases, keep alive, resuming
//! a session) is tested in memory, deterministically. The tokio glue feeds it:
//!
//! - decoded packets with the stream they came on ([`ClientState::handle_packet`]),
//! - requests from the application ([`ClientState::publish`], [`ClientState::subscribe`], ...),
//! - the passage of time ([`ClientState::handle_timeout`] at [`ClientState::poll_timeout`]),
//! - the end of the connection or of one of its streams,
//!
//! and drains packets to write ([`ClientState::poll_transmit`]) and [`Event`]s: CONNACK,
//! completed operations, received messages. A fatal error (refusal, protocol violation, server
//! DISCONNECT, keep alive timeout) comes back as `Err`; the glue then writes whatever is queued
//! (a DISCONNECT with the reason, in 5.0), closes the connection and calls
//! [`ClientState::connection_lost`].
//!
//! One `ClientState` serves one session across reconnections, and every stream of a connection:
//! TCP has only [`StreamKey::CONTROL`]; a QUIC connection may add data streams, each carrying
//! its own packets (a subscription made on a stream is delivered on it).

mod auth;
mod datagram;
mod ids;
mod incoming;
mod keepalive;
mod outgoing;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ahash::{AHashMap, AHashSet};
use bytestring::ByteString;

use super::error::ClientError;
use super::quic_ext::QuicGrants;
use super::types::{Acknowledged, Connected, PublishOutcome, ReceivedMessage, ServerLimits};
use crate::codec::{
    ConnAck, Connect, DecodeError, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode,
};
use ids::PacketIds;
use incoming::Incoming;
use keepalive::{KeepAlive, KeepAliveAction};
use outgoing::{Inflight, PendingAck, Waiting};

/// One stream of a connection, as numbered by the glue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamKey(pub u64);

impl StreamKey {
    /// The stream that carries CONNECT, keep alive and DISCONNECT: for TCP, the socket itself.
    pub const CONTROL: StreamKey = StreamKey(0);
    /// Not a stream: QUIC DATAGRAM frames (`proto-ext/datagrams.md`). A QoS 0 PUBLISH queued
    /// here goes in a datagram if it fits, else on the control stream.
    pub const DATAGRAM: StreamKey = StreamKey(u64::MAX);
    /// Server-initiated streams (topic-to-stream mapping) are numbered from here on.
    pub const SERVER_BASE: u64 = 1 << 62;

    /// The key of the server-initiated unidirectional stream with this QUIC stream index.
    pub fn server(index: u64) -> StreamKey {
        StreamKey(Self::SERVER_BASE | (index & (Self::SERVER_BASE - 1)))
    }
}

/// Names one application request (publish, subscribe, unsubscribe) until it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

pub use super::types::AckToken;

/// What the state machine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// CONNACK accepted the connection.
    Connected(Connected),
    /// An operation ended.
    Completed {
        op: OpId,
        result: Result<Completion, Failure>,
    },
    /// An application message arrived; `ack` is `Some` for QoS 1/2.
    Message {
        stream: StreamKey,
        message: ReceivedMessage,
        ack: Option<AckToken>,
    },
}

/// How an operation completed (the server answered it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// PUBACK, or PUBREC then PUBCOMP, or a PUBREC with an error code. The code may be an error.
    Published(PublishOutcome),
    Subscribed(Acknowledged),
    Unsubscribed(Acknowledged),
}

/// Why an operation will not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection ended first. A QoS 1/2 message stays in the session and is retransmitted
    /// if the session is resumed, but its outcome is no longer reported.
    ConnectionLost,
    /// The server did not resume the session; the message was discarded.
    SessionLost,
    /// The stream the operation was made on closed before the answer.
    StreamClosed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Disconnected,
    /// CONNECT queued, CONNACK awaited.
    Connecting,
    Connected,
}

/// The client session.
#[derive(Debug)]
pub struct ClientState {
    /// The CONNECT to send (its clean start flag is set per connection attempt).
    connect: Connect,
    phase: Phase,
    /// Bumped by every connection attempt.
    epoch: u64,
    /// Clean start of the CONNECT in flight.
    clean_start_sent: bool,
    /// Session Expiry Interval in force (the server may lower it in CONNACK).
    session_expiry: u32,
    limits: ServerLimits,
    keep_alive: KeepAlive,
    ids: PacketIds,
    next_op: u64,
    /// Sending order of inflight messages, for retransmission in order [MQTT-4.6.0-1].
    next_seq: u64,
    /// Outgoing QoS 1/2 by packet identifier.
    inflight: AHashMap<u16, Inflight>,
    /// QoS 1/2 publishes held back by the server's Receive Maximum.
    waiting: VecDeque<Waiting>,
    /// SUBSCRIBE / UNSUBSCRIBE awaiting their acknowledgement.
    pending: AHashMap<u16, PendingAck>,
    /// Incoming QoS 1/2 by packet identifier, until acknowledged (QoS 2: until PUBREL).
    incoming: AHashMap<u16, Incoming>,
    /// Topic aliases the server established (3.3.2.3.4); they live as long as the connection.
    aliases: AHashMap<u16, ByteString>,
    /// Data streams of the current connection.
    streams: AHashSet<StreamKey>,
    /// Server-initiated streams of the current connection (deliveries only; answers go on the
    /// control stream).
    server_streams: AHashSet<StreamKey>,
    transmits: VecDeque<(StreamKey, Packet)>,
    events: VecDeque<Event>,
    /// The application acknowledges received messages itself ([`ClientState::set_manual_acks`]).
    manual_acks: bool,
    /// Publishes outlive a lost connection ([`ClientState::set_resume_operations`]).
    resume_operations: bool,
    /// Bumped whenever the session is discarded: manual acknowledgement tokens carry it.
    session_generation: u64,
    /// Enhanced authentication ([`ClientState::set_auth`]) and the exchange of the connection
    /// attempt in progress.
    auth: Option<crate::client::auth::EnhancedAuth>,
    exchange: Option<auth::Exchange>,
}

impl ClientState {
    /// A session that will connect with `connect` (its `protocol` decides the version).
    pub fn new(connect: Connect, now: Instant) -> ClientState {
        let session_expiry = connect.properties.session_expiry_interval.unwrap_or(0);
        let keep_alive = Duration::from_secs(u64::from(connect.keep_alive));
        ClientState {
            clean_start_sent: connect.clean_start,
            connect,
            phase: Phase::Disconnected,
            epoch: 0,
            session_expiry,
            limits: ServerLimits::default(),
            keep_alive: KeepAlive::new(keep_alive, now),
            ids: PacketIds::default(),
            next_op: 1,
            next_seq: 0,
            inflight: AHashMap::new(),
            waiting: VecDeque::new(),
            pending: AHashMap::new(),
            incoming: AHashMap::new(),
            aliases: AHashMap::new(),
            streams: AHashSet::new(),
            server_streams: AHashSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            manual_acks: false,
            resume_operations: false,
            session_generation: 0,
            auth: None,
            exchange: None,
        }
    }

    /// Enhanced authentication (MQTT 5.0, 4.12) with `method` at every connection attempt.
    pub fn set_auth(&mut self, method: Option<crate::client::auth::EnhancedAuth>) {
        self.auth = method;
    }

    /// The application acknowledges each received QoS 1/2 message itself, when it is done with
    /// it ([`ClientState::acknowledge`] with [`ReceivedMessage::ack`]), instead of the glue
    /// doing it when the message is queued. A message not acknowledged yet when the connection
    /// drops stays owed: the server's retransmission (DUP) is not delivered again, and the
    /// late acknowledgement goes on the next connection [MQTT-4.3.2-4] [MQTT-4.3.3-9]. A bridge
    /// acknowledges only once the other side has the message.
    pub fn set_manual_acks(&mut self, on: bool) {
        self.manual_acks = on;
    }

    /// QoS 1/2 publishes outlive a lost connection: instead of failing with
    /// [`Failure::ConnectionLost`] they complete when their flow does on a later connection
    /// that resumes the session (they are retransmitted with DUP [MQTT-4.4.0-1]), and new ones
    /// made while disconnected wait for the next connection. If the server did not keep the
    /// session, those already sent fail with [`Failure::SessionLost`] (the server may or may
    /// not have them) and those never sent are sent on the new session. For a client that
    /// reconnects by itself.
    pub fn set_resume_operations(&mut self, on: bool) {
        self.resume_operations = on;
    }

    pub fn version(&self) -> ProtocolVersion {
        self.connect.protocol
    }

    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// The client identifier (the assigned one once the server chose it).
    pub fn client_id(&self) -> &ByteString {
        &self.connect.client_id
    }

    /// Outgoing QoS 1/2 messages not yet completed (inflight and held back).
    pub fn unacknowledged(&self) -> usize {
        self.inflight.len() + self.waiting.len()
    }

    /// Starts a connection: queues CONNECT on the control stream. `clean_start: false` asks the
    /// server to resume the session.
    pub fn begin_connect(&mut self, clean_start: bool, now: Instant) {
        self.reset_connection();
        self.epoch += 1;
        self.phase = Phase::Connecting;
        self.clean_start_sent = clean_start;
        let mut connect = self.connect.clone();
        connect.clean_start = clean_start;
        self.start_auth(&mut connect);
        let interval = Duration::from_secs(u64::from(connect.keep_alive));
        self.keep_alive = KeepAlive::new(interval, now);
        self.push(StreamKey::CONTROL, Packet::Connect(Box::new(connect)), now);
    }

    /// Registers a data stream of the current connection.
    pub fn open_stream(&mut self, stream: StreamKey) -> Result<(), ClientError> {
        self.check_connected()?;
        if stream != StreamKey::CONTROL {
            self.streams.insert(stream);
        }
        Ok(())
    }

    /// Registers a server-initiated stream (its flow header already checked by the glue):
    /// only PUBLISH may arrive on it, and what answers them goes on the control stream
    /// (`proto-ext/flows.md` section 7).
    pub fn open_server_stream(&mut self, stream: StreamKey) -> Result<(), ClientError> {
        self.check_connected()?;
        self.server_streams.insert(stream);
        Ok(())
    }

    /// A data stream ended: its pending SUBSCRIBE / UNSUBSCRIBE fail, and its messages still
    /// inflight move to the control stream and are retransmitted there (DUP), since the server
    /// may not have read them.
    pub fn stream_closed(&mut self, stream: StreamKey, now: Instant) {
        if self.server_streams.remove(&stream) {
            return;
        }
        if stream == StreamKey::CONTROL || !self.streams.remove(&stream) {
            return;
        }
        let failed: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.stream == stream)
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            if let Some(p) = self.pending.remove(&id) {
                self.ids.release(id);
                self.fail(p.op, Failure::StreamClosed);
            }
        }
        for w in self.waiting.iter_mut().filter(|w| w.stream == stream) {
            w.stream = StreamKey::CONTROL;
        }
        let moved: Vec<u16> = self
            .inflight
            .iter()
            .filter(|(_, f)| f.stream == stream)
            .map(|(id, _)| *id)
            .collect();
        for id in self.in_sending_order(moved) {
            if let Some(f) = self.inflight.get_mut(&id) {
                f.stream = StreamKey::CONTROL;
                let packet = f.retransmission(id);
                if self.phase == Phase::Connected {
                    self.push(StreamKey::CONTROL, packet, now);
                }
            }
        }
    }

    /// Queues a DISCONNECT (normal disconnection); nothing more is sent or accepted.
    pub fn disconnect(&mut self, now: Instant) {
        if self.phase != Phase::Disconnected {
            let packet = Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION));
            self.push(StreamKey::CONTROL, packet, now);
        }
        self.phase = Phase::Disconnected;
    }

    /// The connection ended (after an error, a DISCONNECT, or the network). Pending operations
    /// fail with [`Failure::ConnectionLost`]; inflight messages stay in the session for
    /// retransmission if it persists [MQTT-4.4.0-1], else they are discarded.
    pub fn connection_lost(&mut self) {
        self.phase = Phase::Disconnected;
        self.reset_connection();
        let pending: Vec<(u16, PendingAck)> = self.pending.drain().collect();
        for (id, p) in pending {
            self.ids.release(id);
            self.fail(p.op, Failure::ConnectionLost);
        }
        if !self.resume_operations {
            let ops: Vec<OpId> = self
                .inflight
                .values_mut()
                .filter_map(|f| f.op.take())
                .chain(self.waiting.iter_mut().filter_map(|w| w.op.take()))
                .collect();
            for op in ops {
                self.fail(op, Failure::ConnectionLost);
            }
        }
        for f in self.inflight.values_mut() {
            f.stream = StreamKey::CONTROL;
        }
        for w in self.waiting.iter_mut() {
            w.stream = StreamKey::CONTROL;
        }
        // Messages not acknowledged yet will be sent again by the server: forget them so the
        // retransmission is delivered. QoS 2 messages already acknowledged with PUBREC stay:
        // their PUBREL is still to come, and a retransmission must not be delivered twice
        // [MQTT-4.3.3-10]. With manual acknowledgements the application holds the messages
        // not acknowledged yet: they stay owed, and their retransmission is not delivered again.
        if !self.manual_acks {
            self.incoming
                .retain(|_, i| matches!(i, Incoming::AwaitingRelease));
        }
        if !self.session_persists() {
            self.discard_session(Failure::ConnectionLost);
        }
    }

    /// When [`ClientState::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Connected => self.keep_alive.deadline(),
            _ => None,
        }
    }

    /// Keep alive: queues PINGREQ when due [MQTT-3.1.2-23]; fails when the server is overdue.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        if self.phase != Phase::Connected {
            return Ok(());
        }
        match self.keep_alive.poll(now) {
            KeepAliveAction::Nothing => Ok(()),
            KeepAliveAction::SendPing => {
                self.push(StreamKey::CONTROL, Packet::PingReq, now);
                Ok(())
            }
            KeepAliveAction::ServerOverdue(after) => {
                self.phase = Phase::Disconnected;
                Err(ClientError::KeepAliveTimeout { after })
            }
        }
    }

    /// The next packet to write, with its stream.
    pub fn poll_transmit(&mut self) -> Option<(StreamKey, Packet)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A packet from the server.
    pub fn handle_packet(
        &mut self,
        stream: StreamKey,
        packet: Packet,
        now: Instant,
    ) -> Result<(), ClientError> {
        match self.phase {
            // Anything after the end (a late packet of a closed connection) is ignored.
            Phase::Disconnected => Ok(()),
            Phase::Connecting => match packet {
                Packet::ConnAck(ack) if stream == StreamKey::CONTROL => {
                    self.handle_connack(ack, now)
                }
                Packet::Disconnect(d) => Err(self.server_disconnect(d)),
                Packet::Auth(auth) if stream == StreamKey::CONTROL => {
                    self.handle_auth_challenge(auth, now)
                }
                other => Err(self.violation(
                    ReasonCode::PROTOCOL_ERROR,
                    format!("expected CONNACK, got packet type {}", other.packet_type()),
                    now,
                )),
            },
            Phase::Connected => self.handle_connected(stream, packet, now),
        }
    }

    fn handle_connected(
        &mut self,
        stream: StreamKey,
        packet: Packet,
        now: Instant,
    ) -> Result<(), ClientError> {
        if self.server_streams.contains(&stream) {
            return self.handle_server_stream(stream, packet, now);
        }
        match packet {
            Packet::Publish(p) => self.handle_publish(stream, p, now),
            Packet::PubAck(a) => self.handle_puback(a, now),
            Packet::PubRec(a) => self.handle_pubrec(stream, a, now),
            Packet::PubRel(a) => self.handle_pubrel(stream, a, now),
            Packet::PubComp(a) => self.handle_pubcomp(a, now),
            Packet::SubAck(a) => self.handle_suback(a, now),
            Packet::UnsubAck(a) => self.handle_unsuback(a, now),
            Packet::PingResp => {
                self.keep_alive.pong_received();
                Ok(())
            }
            Packet::Disconnect(d) => Err(self.server_disconnect(d)),
            Packet::Auth(_) => Err(self.violation(
                ReasonCode::PROTOCOL_ERROR,
                "unexpected AUTH (re-authentication is not supported)".into(),
                now,
            )),
            // CONNECT, CONNACK, SUBSCRIBE, UNSUBSCRIBE, PINGREQ: a server never sends these
            // once connected [MQTT-3.2.0-2: one CONNACK per connection].
            other => Err(self.violation(
                ReasonCode::PROTOCOL_ERROR,
                format!(
                    "unexpected packet type {} from the server",
                    other.packet_type()
                ),
                now,
            )),
        }
    }

    /// CONNACK (3.2): refusal, or the start of the session with the server's limits.
    fn handle_connack(&mut self, ack: ConnAck, now: Instant) -> Result<(), ClientError> {
        if ack.code.is_error() {
            // [MQTT-3.2.2-7] (3.1.1: [MQTT-3.2.2-5]) the server closes after a refusal.
            self.phase = Phase::Disconnected;
            self.exchange = None;
            return Err(ClientError::Refused {
                code: ack.code,
                reason_string: ack.properties.reason_string.clone(),
            });
        }
        if ack.session_present && self.clean_start_sent {
            // [MQTT-3.2.2-2] (3.1.1: [MQTT-3.2.2-1]) clean start means Session Present 0.
            return Err(self.violation(
                ReasonCode::PROTOCOL_ERROR,
                "CONNACK has session present after a clean start".into(),
                now,
            ));
        }
        self.finish_auth(&ack, now)?;
        let p = &ack.properties;
        self.limits = ServerLimits::from_properties(p);
        if let Some(expiry) = p.session_expiry_interval {
            self.session_expiry = expiry;
        }
        let assigned = match &p.assigned_client_identifier {
            Some(id) if self.connect.client_id.is_empty() => {
                // Reconnections resume the session under the assigned identifier.
                self.connect.client_id = id.clone();
                true
            }
            _ => false,
        };
        // [MQTT-3.2.2-21] the client uses the Server Keep Alive.
        let keep_alive = match p.server_keep_alive {
            Some(secs) => Duration::from_secs(u64::from(secs)),
            None => Duration::from_secs(u64::from(self.connect.keep_alive)),
        };
        self.keep_alive = KeepAlive::new(keep_alive, now);
        self.phase = Phase::Connected;

        if ack.session_present {
            // [MQTT-4.4.0-1] resend unacknowledged PUBLISH (DUP) and PUBREL, in order.
            let ids: Vec<u16> = self.inflight.keys().copied().collect();
            for id in self.in_sending_order(ids) {
                if let Some(f) = self.inflight.get(&id) {
                    let packet = f.retransmission(id);
                    self.push(StreamKey::CONTROL, packet, now);
                }
            }
        } else {
            // [MQTT-3.2.2-5] (3.1.1: [MQTT-3.2.2-4]) no session on the server: discard ours.
            // A fresh client that asked to resume has no state to discard, which is how
            // `clean_start: false` on a new process resumes a session kept by the server.
            self.discard_session(Failure::SessionLost);
        }
        self.pump_waiting(now);
        self.events.push_back(Event::Connected(Connected {
            session_present: ack.session_present,
            client_id: self.connect.client_id.clone(),
            assigned_client_id: assigned,
            keep_alive,
            limits: self.limits.clone(),
            quic: QuicGrants::from_connack(&ack.properties),
            properties: ack.properties,
            zero_rtt: super::types::ZeroRtt::NotAttempted,
        }));
        Ok(())
    }

    /// The server sent bytes that do not decode: 5.0 answers DISCONNECT with the matching
    /// reason code (0x81 malformed packet, 0x82 protocol error...) [MQTT-4.13.1-1].
    pub fn decode_error(&mut self, error: DecodeError, now: Instant) -> ClientError {
        let _ = self.violation(error.reason_code(), error.to_string(), now);
        ClientError::Decode(error)
    }

    /// DISCONNECT from the server (5.0, 3.14): the connection ends with its reason.
    fn server_disconnect(&mut self, d: Disconnect) -> ClientError {
        self.phase = Phase::Disconnected;
        ClientError::ServerDisconnected {
            code: d.code,
            reason_string: d.properties.reason_string.clone(),
        }
    }

    /// A protocol violation by the server: 5.0 answers DISCONNECT with `code` [MQTT-4.13.1-1];
    /// either way the connection must close.
    fn violation(&mut self, code: ReasonCode, message: String, now: Instant) -> ClientError {
        if self.version().is_v5() {
            self.transmits.clear();
            let packet = Packet::Disconnect(Disconnect::new(code));
            self.push(StreamKey::CONTROL, packet, now);
        }
        self.phase = Phase::Disconnected;
        ClientError::Protocol { code, message }
    }

    fn check_connected(&self) -> Result<(), ClientError> {
        match self.phase {
            Phase::Connected => Ok(()),
            _ => Err(ClientError::NotConnected),
        }
    }

    /// Like `check_connected`, but also allows the time between CONNECT and CONNACK: MQTT lets
    /// a client send packets right after CONNECT (3.1.4), which is what goes into QUIC 0-RTT
    /// early data with it. Used for SUBSCRIBE, UNSUBSCRIBE and QoS 0 PUBLISH, whose packets
    /// need nothing the CONNACK says.
    fn check_may_pipeline(&self) -> Result<(), ClientError> {
        match self.phase {
            Phase::Connected => Ok(()),
            // [MQTT-3.1.2-30] only AUTH or DISCONNECT until CONNACK when authenticating.
            Phase::Connecting if !self.authenticating() => Ok(()),
            Phase::Connecting | Phase::Disconnected => Err(ClientError::NotConnected),
        }
    }

    /// Whether the server keeps the session after this connection: Session Expiry Interval
    /// above 0 (5.0), Clean Session 0 (3.1.1).
    fn session_persists(&self) -> bool {
        if self.version().is_v5() {
            self.session_expiry > 0
        } else {
            !self.clean_start_sent
        }
    }

    /// Forgets every outgoing and incoming QoS flow; pending operations fail with `why`.
    fn discard_session(&mut self, why: Failure) {
        self.session_generation += 1;
        // Publishes never sent belong to no session: a client that resumes its operations
        // sends them on the new one.
        let unsent = if self.resume_operations {
            std::mem::take(&mut self.waiting)
        } else {
            VecDeque::new()
        };
        let ops: Vec<OpId> = self
            .inflight
            .drain()
            .filter_map(|(_, f)| f.op)
            .chain(self.waiting.drain(..).filter_map(|w| w.op))
            .collect();
        for op in ops {
            self.fail(op, why);
        }
        self.waiting = unsent;
        // Pending SUBSCRIBE/UNSUBSCRIBE belong to the connection, not the session: those
        // pipelined after CONNECT keep their identifiers.
        self.ids.clear();
        for id in self.pending.keys() {
            self.ids.reserve(*id);
        }
        for w in &self.waiting {
            if let Some(id) = w.publish.packet_id {
                self.ids.reserve(id);
            }
        }
        self.incoming.clear();
    }

    /// State that lives and dies with one network connection.
    fn reset_connection(&mut self) {
        self.aliases.clear();
        self.streams.clear();
        self.server_streams.clear();
        self.transmits.clear();
        self.keep_alive.pong_received();
    }

    /// Where a packet bound to `stream` goes: the stream while it is open, else the control
    /// stream.
    fn route(&self, stream: StreamKey) -> StreamKey {
        if self.streams.contains(&stream) {
            stream
        } else {
            StreamKey::CONTROL
        }
    }

    fn push(&mut self, stream: StreamKey, packet: Packet, now: Instant) {
        if stream == StreamKey::DATAGRAM {
            // Not counted for keep alive: a datagram may be lost.
            self.transmits.push_back((stream, packet));
            return;
        }
        let stream = self.route(stream);
        self.keep_alive.packet_sent(now);
        self.transmits.push_back((stream, packet));
    }

    fn next_op(&mut self) -> OpId {
        let op = OpId(self.next_op);
        self.next_op += 1;
        op
    }

    fn fail(&mut self, op: OpId, why: Failure) {
        self.events.push_back(Event::Completed {
            op,
            result: Err(why),
        });
    }

    fn complete(&mut self, op: Option<OpId>, completion: Completion) {
        if let Some(op) = op {
            self.events.push_back(Event::Completed {
                op,
                result: Ok(completion),
            });
        }
    }

    fn in_sending_order(&self, mut ids: Vec<u16>) -> Vec<u16> {
        ids.sort_by_key(|id| self.inflight.get(id).map_or(0, |f| f.seq));
        ids
    }

    fn token(&self, stream: StreamKey, packet_id: u16, qos: QoS) -> AckToken {
        AckToken {
            stream,
            packet_id,
            qos,
            epoch: self.token_epoch(),
        }
    }

    /// What a token must carry to acknowledge: the connection, or with manual
    /// acknowledgements the session.
    fn token_epoch(&self) -> u64 {
        if self.manual_acks {
            self.session_generation
        } else {
            self.epoch
        }
    }
}
