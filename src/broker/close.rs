//! Ending connections and sessions: DISCONNECT in both directions, wills (3.1.2.5, 3.1.3.2.2)
//! and session expiry (3.1.2.11.2).

use std::time::{Duration, Instant};

use super::output::CloseKind;
use super::timers::Timer;
use super::{Broker, ConnId, SessionId, StreamId};
use crate::codec::{Disconnect, Packet, ReasonCode};

impl Broker {
    /// The client broke a protocol rule: 5.0 gets DISCONNECT with `code` [MQTT-4.13.2-1],
    /// 3.1.1 just the close [MQTT-4.8.0-1]; the will is published.
    pub(super) fn protocol_violation(&mut self, conn: ConnId, code: ReasonCode, now: Instant) {
        if let Some(c) = self.conns.get(&conn) {
            tracing::debug!(conn = conn.0, peer = %c.peer, %code, "closing: protocol violation");
        }
        self.close_with(conn, code, now);
    }

    /// Server-initiated close: DISCONNECT with `code` for 5.0 clients past CONNECT, then close.
    pub(super) fn close_with(&mut self, conn: ConnId, code: ReasonCode, now: Instant) {
        if matches!(
            code,
            ReasonCode::MALFORMED_PACKET | ReasonCode::PROTOCOL_ERROR
        ) {
            self.metrics.protocol_errors += 1;
        }
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        self.metrics.server_disconnects.add(code);
        let connected = !matches!(c.state, super::connection::ConnState::AwaitingConnect);
        if connected && c.version.is_v5() {
            // [MQTT-3.14.0-1] only after CONNACK... or during AUTH; reason string only if the
            // client did not turn problem information off [MQTT-3.1.2-29] (DISCONNECT may).
            self.send(
                conn,
                StreamId::CONTROL,
                Packet::Disconnect(Disconnect::new(code)),
            );
        }
        self.out.close(conn, CloseKind::Abnormal(code));
        self.drop_connection(conn, now);
    }

    /// DISCONNECT from the client (3.14.4).
    pub(super) fn handle_disconnect(&mut self, conn: ConnId, d: Disconnect, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(expiry) = d.properties.session_expiry_interval {
            // [MQTT-3.14.2-2] a zero interval from CONNECT cannot be raised at DISCONNECT.
            if c.connect_expiry_was_zero && expiry != 0 {
                self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now);
                return;
            }
            let max = self.settings.session.max_session_expiry_secs;
            if let Some(s) = c.session.and_then(|sid| self.sessions.get_mut(&sid)) {
                s.expiry_secs = expiry.min(max);
            }
        }
        // [MQTT-3.14.4-3] only 0x00 (normal disconnection) discards the will; 0x04 asks for it
        // and an error code (the client ending on a failure) leaves it to be published
        // [MQTT-3.1.2-8].
        c.clean_disconnect = d.code == ReasonCode::NORMAL_DISCONNECTION;
        let (clean, session) = (c.clean_disconnect, c.session);
        self.metrics.client_disconnects.add(d.code);
        if clean {
            if let Some(sid) = session {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.will = None;
                }
                self.cluster_will_changed(sid);
            }
        }
        self.out.close(conn, CloseKind::Normal);
        self.drop_connection(conn, now);
    }

    /// Forgets a connection that never got a session (refused CONNECT).
    pub(super) fn forget_connection(&mut self, conn: ConnId, now: Instant) {
        self.drop_connection(conn, now);
    }

    /// The connection is gone: detach its session, trigger the will unless the client ended
    /// cleanly [MQTT-3.1.2-8], and start the session expiry clock.
    pub(super) fn drop_connection(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.release(&c);
        self.forget_publisher(conn);
        self.cluster_forget_connection(conn);
        let Some(sid) = c.session else { return };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if session.conn != Some(conn) {
            return;
        }
        session.conn = None;
        tracing::info!(conn = conn.0, peer = %c.peer, client = %session.client_id, "client disconnected");
        let expiry = session.expiry_secs;
        if expiry == 0 {
            // The session ends now; ending it publishes a pending will.
            if c.clean_disconnect {
                session.will = None;
            }
            self.end_session(sid, now);
            self.cluster_shared_presence(sid);
            return;
        }
        if expiry != u32::MAX {
            let at = now + Duration::from_secs(u64::from(expiry));
            session.expires_at = Some(at);
            self.timers.schedule(at, Timer::SessionExpiry(sid));
        }
        if let Some(will) = session.will.as_mut() {
            // [MQTT-3.1.3-9] delayed until Will Delay Interval or session end, whichever first.
            let delay = will.delay_secs.min(expiry);
            if delay == 0 {
                self.publish_will(sid, now);
            } else {
                let at = now + Duration::from_secs(u64::from(delay));
                will.publish_at = Some(at);
                self.timers.schedule(at, Timer::Will(sid));
            }
        }
        self.cluster_shared_presence(sid);
    }

    /// Removes a session with its subscriptions; a will still pending is published now.
    pub(super) fn end_session(&mut self, sid: SessionId, now: Instant) {
        if self.sessions.get(&sid).is_some_and(|s| s.will.is_some()) {
            self.publish_will(sid, now);
        }
        let Some(session) = self.sessions.remove(&sid) else {
            return;
        };
        if let Some(conn) = session.conn {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.session = None;
            }
        }
        for (filter, stream) in session.subscriptions.keys() {
            self.remove_from_trie(sid, filter, *stream);
        }
        if self.client_ids.get(&session.client_id) == Some(&sid) {
            self.client_ids.remove(&session.client_id);
            self.cluster_release(&session.client_id);
        }
        tracing::debug!(client = %session.client_id, "session ended");
    }

    fn publish_will(&mut self, sid: SessionId, now: Instant) {
        let Some(will) = self.sessions.get_mut(&sid).and_then(|s| s.will.take()) else {
            return;
        };
        tracing::debug!(topic = %will.message.topic, "publishing will");
        self.publish_message(will.message, Some(sid), now);
        self.cluster_will_changed(sid);
    }

    pub(super) fn check_will(&mut self, sid: SessionId, now: Instant) {
        let due = self
            .sessions
            .get(&sid)
            .and_then(|s| s.will.as_ref().filter(|_| s.conn.is_none()))
            .and_then(|w| w.publish_at)
            .is_some_and(|at| at <= now);
        if due {
            self.publish_will(sid, now);
        }
    }

    pub(super) fn check_session_expiry(&mut self, sid: SessionId, now: Instant) {
        let expired = self
            .sessions
            .get(&sid)
            .is_some_and(|s| s.conn.is_none() && s.expires_at.is_some_and(|at| at <= now));
        if expired {
            self.metrics.sessions_expired += 1;
            self.end_session(sid, now);
        }
    }
}

impl Broker {
    /// Closes every connection with 0x8B Server shutting down (5.0) before the process exits.
    pub fn shutdown(&mut self, now: Instant) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.close_with(conn, ReasonCode::SERVER_SHUTTING_DOWN, now);
        }
        self.reap(now);
    }
}
