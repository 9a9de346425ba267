//! CONNECT handling: validation, session creation or resumption, takeover, CONNACK (3.1, 3.2).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use super::auth::AuthOutcome;
use super::connection::ConnState;
use super::output::CloseKind;
use super::session::{Inflight, PendingWill, Session};
use super::timers::Timer;
use super::{Broker, ConnId, Message, SessionId, StreamId};
use crate::codec::PropertyValues;
use crate::codec::{ConnAck, Connect, Packet, Properties, ProtocolVersion, QoS, ReasonCode, Will};
use crate::topic;

impl Broker {
    pub(super) fn handle_connect(&mut self, conn: ConnId, connect: Connect, now: Instant) {
        let version = connect.protocol;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.version = version;
        }
        // Over the connection limits (limits.rs): CONNACK 0x97.
        if let Some(code) = self.conns.get(&conn).and_then(|c| c.refused) {
            self.refuse_connect(conn, version, code, now);
            return;
        }
        // A clustered node that lost NATS takes no new client (cluster_wills.rs).
        if self.cluster_refuses_connect() {
            self.refuse_connect(conn, version, ReasonCode::SERVER_UNAVAILABLE, now);
            return;
        }
        if let Err(code) = self.check_connect(&connect) {
            self.refuse_connect(conn, version, code, now);
            return;
        }
        // The transport's verdict on the credentials (access.rs) [MQTT-3.1.4-2].
        match self.take_login(conn) {
            Ok(username) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.username = username;
                }
            }
            Err(code) => {
                self.refuse_connect(conn, version, code, now);
                return;
            }
        }
        let method = connect.properties.authentication_method.clone();
        let Some(method) = method.filter(|_| version.is_v5()) else {
            self.accept_connect(conn, connect, None, now);
            return;
        };
        let client_id = connect.client_id.clone();
        let data = connect.properties.authentication_data.clone();
        match self.auth_start(conn, &client_id, &method, data.as_ref()) {
            AuthOutcome::Success(data) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.auth_method = Some(method);
                }
                self.accept_connect(conn, connect, data, now)
            }
            AuthOutcome::Continue(data) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.auth_method = Some(method.clone());
                    c.state = ConnState::Authenticating(Box::new(connect));
                }
                self.send_auth_challenge(conn, &method, data);
            }
            AuthOutcome::Fail(code) => self.refuse_connect(conn, version, code, now),
        }
    }

    /// Checks that do not depend on existing sessions; `Err` is the CONNACK reason code.
    fn check_connect(&self, connect: &Connect) -> Result<(), ReasonCode> {
        if connect.client_id.is_empty() {
            // [MQTT-3.1.3-8] 3.1.1: a zero-byte ClientId requires CleanSession = 1.
            // MQTT 3.1 requires 1 to 23 characters.
            match connect.protocol {
                ProtocolVersion::V3_1 => return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
                ProtocolVersion::V3_1_1 if !connect.clean_start => {
                    return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID)
                }
                _ => {}
            }
        }
        if let Some(will) = &connect.will {
            if !topic::is_valid_topic_name(&will.topic) || self.too_deep(&will.topic) {
                return Err(ReasonCode::TOPIC_NAME_INVALID);
            }
            // [MQTT-3.2.2-12] will QoS above Maximum QoS.
            if will.qos as u8 > self.settings.session.max_qos {
                return Err(ReasonCode::QOS_NOT_SUPPORTED);
            }
            // [MQTT-3.2.2-13] will retain when retain is not available.
            if will.retain && !self.settings.session.retain_available {
                return Err(ReasonCode::RETAIN_NOT_SUPPORTED);
            }
        }
        Ok(())
    }

    /// CONNACK with a failure code, then close [MQTT-3.2.2-6] [MQTT-3.2.2-7].
    pub(super) fn refuse_connect(
        &mut self,
        conn: ConnId,
        version: ProtocolVersion,
        code: ReasonCode,
        now: Instant,
    ) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.version = version;
            tracing::info!(conn = conn.0, peer = %c.peer, %code, "CONNECT refused");
        }
        let connack = ConnAck {
            session_present: false,
            code,
            properties: Properties::default(),
        };
        self.send(conn, StreamId::CONTROL, Packet::ConnAck(connack));
        self.out.close(conn, CloseKind::Abnormal(code));
        self.forget_connection(conn, now);
    }

    /// Binds the connection to a session and answers CONNACK (3.2).
    pub(super) fn accept_connect(
        &mut self,
        conn: ConnId,
        connect: Connect,
        auth_data: Option<Bytes>,
        now: Instant,
    ) {
        let version = connect.protocol;
        let assigned = connect.client_id.is_empty();
        let client_id = if assigned {
            // [MQTT-3.1.3-6] [MQTT-3.1.3-7] unique: never the id of a session that exists,
            // including one restored from the store (the counter restarts with the process).
            loop {
                // In a cluster the node's name keeps it unique across nodes (cluster.rs).
                let id = match self.cluster_node() {
                    Some(node) => format!("mqttd-{node}-{:x}-{}", self.next_assigned_id, conn.0),
                    None => format!("mqttd-{:x}-{}", self.next_assigned_id, conn.0),
                };
                self.next_assigned_id += 1;
                if !self.client_ids.contains_key(id.as_str()) {
                    break ByteString::from(id);
                }
            }
        } else {
            // A copy: the decoded id points into the connection's read buffer, which the
            // session (and the client-id map) would otherwise keep alive for its lifetime.
            ByteString::from(&*connect.client_id)
        };
        let username = self.conns.get(&conn).and_then(|c| c.username.clone());
        let rules = self.rules_for(username.as_deref(), &client_id);
        // A will the client could not publish itself is refused with the CONNECT (as
        // mosquitto does), rather than accepted and silently never published.
        if let (Some(rules), Some(will)) = (&rules, &connect.will) {
            if !rules.may_publish(&will.topic) {
                tracing::info!(conn = conn.0, client = %client_id, topic = %will.topic, "will topic not authorized");
                self.refuse_connect(conn, version, ReasonCode::NOT_AUTHORIZED, now);
                return;
            }
        }

        // In a cluster a session held by another node (or lost with it) is fetched first
        // (cluster_session.rs); the CONNECT comes back here once it is installed.
        let fetched = self.cluster_take_fetched(conn);
        let (connect, auth_data) = if fetched || assigned {
            (connect, auth_data)
        } else {
            match self.cluster_park_connect(conn, &client_id, connect, auth_data) {
                Some(back) => back,
                None => return,
            }
        };

        // A new session beyond `max_sessions` is refused (a clean start replaces one: no more).
        if !self.client_ids.contains_key(&client_id)
            && self.sessions.len() >= self.settings.limits.max_sessions
        {
            self.metrics.sessions_refused += 1;
            self.refuse_connect(conn, version, ReasonCode::QUOTA_EXCEEDED, now);
            return;
        }

        // Session takeover [MQTT-3.1.4-3]: close the existing connection of this client id.
        if let Some(old_conn) = self
            .client_ids
            .get(&client_id)
            .and_then(|sid| self.sessions.get(sid))
            .and_then(|s| s.conn)
        {
            tracing::info!(client = %client_id, old = old_conn.0, new = conn.0, "session taken over");
            self.metrics.sessions_taken_over += 1;
            self.close_with(old_conn, ReasonCode::SESSION_TAKEN_OVER, now);
        }

        // Clean start discards any existing session [MQTT-3.1.2-4]; otherwise resume it
        // [MQTT-3.1.2-5].
        let existing = self.client_ids.get(&client_id).copied();
        let (sid, session_present) = match existing {
            Some(sid) if !connect.clean_start => {
                self.metrics.sessions_resumed += 1;
                (sid, true)
            }
            other => {
                if let Some(old) = other {
                    self.end_session(old, now);
                }
                self.metrics.sessions_created += 1;
                (self.create_session(client_id.clone(), version), false)
            }
        };

        let limits = &self.settings.limits;
        let requested_expiry = if version.is_v5() {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            u32::MAX
        };
        let max_expiry = self.settings.session.max_session_expiry_secs;
        let expiry = requested_expiry.min(max_expiry);

        let (keep_alive, server_keep_alive) = match limits.max_keep_alive {
            0 => (connect.keep_alive, None),
            max if connect.keep_alive == 0 || connect.keep_alive > max => {
                if version.is_v5() {
                    // [MQTT-3.2.2-21]: the client must use the Server Keep Alive.
                    (max, Some(max))
                } else {
                    (connect.keep_alive, None)
                }
            }
            _ => (connect.keep_alive, None),
        };
        let send_window = if version.is_v5() {
            usize::from(connect.properties.receive_maximum.unwrap_or(u16::MAX))
        } else {
            usize::from(limits.max_inflight)
        };

        let mut will = connect
            .will
            .as_ref()
            .map(|w| self.will_message(w, &client_id, now));
        let connect_timeout = self.connect_timeout();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.will_on_hold {
            // QUIC 0-RTT: registered once the handshake is confirmed (transport_events.rs).
            c.held_will = will.take();
        }
        c.state = ConnState::Connected;
        c.version = version;
        c.session = Some(sid);
        c.keep_alive = Duration::from_secs(u64::from(keep_alive));
        c.send_window = send_window.max(1);
        c.max_packet_size_out = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
        c.topic_alias_max_out = connect.properties.topic_alias_maximum.unwrap_or(0);
        c.problem_info = connect.properties.request_problem_information != Some(0);
        c.connect_expiry_was_zero = expiry == 0;
        c.last_activity = now;
        let peer = c.peer.clone();
        if let Some(deadline) = c.deadline(connect_timeout) {
            self.timers.schedule(deadline, Timer::Connection(conn));
        }

        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        session.conn = Some(conn);
        session.version = version;
        session.username = username.clone();
        session.rules = rules;
        session.expiry_secs = expiry;
        session.expires_at = None;
        // A new connection to the session cancels a delayed will [MQTT-3.1.3-9].
        session.will = will;
        let has_will = session.will.is_some();
        self.filter_queue(sid);
        // One live connection per client id in a cluster too (cluster.rs); a fetched
        // session's claim was made with the fetch.
        if !fetched {
            self.cluster_claim(&client_id);
        }
        if has_will {
            self.cluster_will_changed(sid);
        }
        self.cluster_shared_presence(sid);

        tracing::info!(
            conn = conn.0, %peer, client = %client_id, version = version.level(),
            user = username.as_deref().unwrap_or(""), clean_start = connect.clean_start, session_present, keep_alive, "client connected"
        );

        let mut properties = Properties::default();
        if version.is_v5() {
            properties = self.connack_properties(&connect, expiry, requested_expiry);
            if assigned {
                properties.assigned_client_identifier = Some(client_id.clone());
            }
            properties.server_keep_alive = server_keep_alive;
            if let Some(method) = connect.properties.authentication_method.clone() {
                properties.authentication_method = Some(method);
                properties.authentication_data = auth_data;
            }
            let wants = super::datagram::wants_datagrams(&connect.properties);
            self.negotiate_datagrams(conn, wants, &mut properties);
        }
        self.negotiate_stream_mapping(conn, &connect.properties, &mut properties);
        let connack = ConnAck {
            session_present,
            code: ReasonCode::SUCCESS,
            properties,
        };
        if self.queue_packet(conn, StreamId::CONTROL, Packet::ConnAck(connack)) {
            // An explicit output: the glue never decodes what it writes to find the CONNACK.
            self.out.accepted(conn);
        }
        if session_present {
            self.rebind_session_to_control(sid);
            self.resend_inflight(sid, conn, now);
        }
        self.pump_queue(sid, now);
    }

    fn connack_properties(&self, connect: &Connect, expiry: u32, requested: u32) -> Properties {
        let limits = &self.settings.limits;
        let session = &self.settings.session;
        let mut p = Properties::from(PropertyValues {
            receive_maximum: Some(limits.receive_maximum),
            maximum_packet_size: Some(limits.max_packet_size),
            topic_alias_maximum: Some(limits.topic_alias_maximum).filter(|&m| m > 0),
            ..PropertyValues::default()
        });
        if session.max_qos < 2 {
            p.maximum_qos = Some(session.max_qos);
        }
        if !session.retain_available {
            p.retain_available = Some(0);
        }
        // [MQTT-3.2.2-...] tell the client when we lowered its Session Expiry Interval.
        if expiry != requested {
            p.session_expiry_interval = Some(expiry);
        }
        if connect.properties.request_response_information == Some(1) {
            p.response_information =
                Some(ByteString::from(format!("$response/{}", connect.client_id)));
        }
        p
    }

    pub(super) fn create_session(
        &mut self,
        client_id: ByteString,
        version: ProtocolVersion,
    ) -> SessionId {
        let sid = SessionId(self.next_session);
        self.next_session += 1;
        self.client_ids.insert(client_id.clone(), sid);
        self.sessions.insert(sid, Session::new(client_id, version));
        sid
    }

    fn will_message(&self, will: &Will, client_id: &ByteString, now: Instant) -> PendingWill {
        let mut properties = will.properties.clone();
        let expiry = properties.message_expiry_interval.take();
        let delay_secs = properties.will_delay_interval.take().unwrap_or(0);
        let message = Message {
            topic: will.topic.clone(),
            payload: will.payload.clone(),
            qos: will.qos,
            retain: will.retain,
            properties: forwardable(properties),
            expires_at: expiry.map(|s| now + Duration::from_secs(u64::from(s))),
            origin: Some(client_id.clone()),
            received_at: None,
            cluster_seq: None,
        };
        PendingWill {
            message: Arc::new(message),
            delay_secs,
            publish_at: None,
        }
    }

    /// On resume: retransmit unacknowledged PUBLISH with DUP and PUBREL [MQTT-4.4.0-1].
    fn resend_inflight(&mut self, sid: SessionId, conn: ConnId, now: Instant) {
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        let pending: Vec<(u16, Inflight)> = session
            .inflight
            .iter()
            .map(|(id, f)| (*id, f.clone()))
            .collect();
        for (packet_id, inflight) in pending {
            self.retransmit(sid, conn, packet_id, inflight, now);
        }
    }

    /// Sends one inflight entry again: the PUBLISH with DUP set, or the PUBREL.
    pub(super) fn retransmit(
        &mut self,
        sid: SessionId,
        conn: ConnId,
        packet_id: u16,
        inflight: Inflight,
        now: Instant,
    ) {
        match inflight {
            Inflight::Published(delivery) => {
                self.transmit_publish(sid, conn, delivery.outgoing(), Some(packet_id), true, now);
            }
            Inflight::Released { stream } => {
                let stream = self
                    .conns
                    .get(&conn)
                    .map_or(StreamId::CONTROL, |c| c.route_stream(stream));
                self.send(
                    conn,
                    stream,
                    Packet::PubRel(crate::codec::Ack::new(packet_id)),
                );
            }
        }
    }
}

/// The properties a broker forwards with an application message [MQTT-3.3.2-17]
/// [MQTT-3.3.2-18] [MQTT-3.3.2-20]: everything else is per hop.
pub fn forwardable(p: Properties) -> Properties {
    if p.is_empty() {
        return p;
    }
    let p = p.into_values();
    Properties::from(PropertyValues {
        payload_format_indicator: p.payload_format_indicator,
        content_type: p.content_type,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data,
        user_properties: p.user_properties,
        ..PropertyValues::default()
    })
}

/// QoS granted for a requested QoS given the configured maximum.
pub(super) fn cap_qos(requested: QoS, max: u8) -> QoS {
    QoS::from_u8((requested as u8).min(max)).unwrap_or(QoS::AtMostOnce)
}
