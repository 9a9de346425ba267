//! Enhanced authentication (MQTT 5.0 section 4.12): the hook and the AUTH exchange.
//!
//! Without a hook, a CONNECT carrying an Authentication Method is refused with 0x8C (Bad
//! authentication method) and an AUTH packet is a protocol error [MQTT-3.15.0-1]... the broker
//! never pretends to authenticate.

use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;

use super::connection::ConnState;
use super::{Broker, ConnId};
use crate::codec::PropertyValues;
use crate::codec::{Auth, Packet, Properties, ReasonCode};

/// What the hook decides at each step of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Authenticated; the data, if any, goes to the client in CONNACK (or AUTH 0x00 on re-auth).
    Success(Option<Bytes>),
    /// Send this data to the client in AUTH 0x18 and wait for its answer.
    Continue(Bytes),
    /// Refuse with this reason code (e.g. 0x87 Not authorized, 0x8C Bad authentication method).
    Fail(ReasonCode),
}

/// An enhanced authentication method (SASL-style challenge/response) plugged into the broker.
pub trait EnhancedAuth: Send {
    /// Starts an exchange for `client_id` with `method` and the client's initial data.
    fn start(
        &mut self,
        conn: ConnId,
        client_id: &str,
        method: &str,
        data: Option<&Bytes>,
    ) -> AuthOutcome;
    /// Continues an exchange with the data of the client's AUTH packet.
    fn continue_auth(&mut self, conn: ConnId, method: &str, data: Option<&Bytes>) -> AuthOutcome;
}

impl Broker {
    /// Runs the first step for a CONNECT with an Authentication Method. Returns the outcome,
    /// or the failure reason when no hook is installed.
    pub(super) fn auth_start(
        &mut self,
        conn: ConnId,
        client_id: &str,
        method: &str,
        data: Option<&Bytes>,
    ) -> AuthOutcome {
        match self.auth.as_mut() {
            Some(hook) => hook.start(conn, client_id, method, data),
            None => AuthOutcome::Fail(ReasonCode::BAD_AUTHENTICATION_METHOD),
        }
    }

    /// AUTH from a client whose CONNECT is waiting on enhanced authentication.
    pub(super) fn handle_auth_continue(&mut self, conn: ConnId, auth: Auth, now: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let method = c.auth_method.clone().unwrap_or_default();
        // [MQTT-4.12.0-2]: the client answers with AUTH 0x18 and the same method.
        if auth.code != ReasonCode::CONTINUE_AUTHENTICATION
            || auth.properties.authentication_method.as_deref() != Some(&*method)
        {
            self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now);
            return;
        }
        let outcome = match self.auth.as_mut() {
            Some(hook) => {
                hook.continue_auth(conn, &method, auth.properties.authentication_data.as_ref())
            }
            None => AuthOutcome::Fail(ReasonCode::PROTOCOL_ERROR),
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match outcome {
            AuthOutcome::Continue(data) => self.send_auth_challenge(conn, &method, data),
            AuthOutcome::Success(data) => {
                let ConnState::Authenticating(connect) =
                    std::mem::replace(&mut c.state, ConnState::AwaitingConnect)
                else {
                    return;
                };
                self.accept_connect(conn, *connect, data, now);
            }
            AuthOutcome::Fail(code) => {
                let version = c.version;
                self.refuse_connect(conn, version, code, now);
            }
        }
    }

    /// AUTH after CONNACK: re-authentication (4.12.1), or a protocol error when the connection
    /// did not authenticate with a method [MQTT-4.12.0-7]... or changes it [MQTT-4.12.1-1].
    pub(super) fn handle_reauth(&mut self, conn: ConnId, auth: Auth, now: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let method = match &c.auth_method {
            Some(m) if auth.properties.authentication_method.as_ref() == Some(m) => m.clone(),
            _ => {
                self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now);
                return;
            }
        };
        let data = auth.properties.authentication_data.as_ref();
        let client_id = self.client_id_of(conn).unwrap_or_default();
        let outcome = match (auth.code, self.auth.as_mut()) {
            (ReasonCode::RE_AUTHENTICATE, Some(hook)) => {
                hook.start(conn, &client_id, &method, data)
            }
            (ReasonCode::CONTINUE_AUTHENTICATION, Some(hook)) => {
                hook.continue_auth(conn, &method, data)
            }
            _ => AuthOutcome::Fail(ReasonCode::PROTOCOL_ERROR),
        };
        match outcome {
            AuthOutcome::Continue(data) => self.send_auth_challenge(conn, &method, data),
            AuthOutcome::Success(data) => {
                let properties = Properties::from(PropertyValues {
                    authentication_method: Some(method),
                    authentication_data: data,
                    ..PropertyValues::default()
                });
                self.send(
                    conn,
                    super::StreamId::CONTROL,
                    Packet::Auth(Auth {
                        code: ReasonCode::SUCCESS,
                        properties,
                    }),
                );
            }
            // [MQTT-4.12.1-2]: a failed re-authentication ends the connection.
            AuthOutcome::Fail(code) => self.close_with(conn, code, now),
        }
    }

    pub(super) fn send_auth_challenge(&mut self, conn: ConnId, method: &ByteString, data: Bytes) {
        let properties = Properties::from(PropertyValues {
            authentication_method: Some(method.clone()),
            authentication_data: Some(data),
            ..PropertyValues::default()
        });
        let packet = Packet::Auth(Auth {
            code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties,
        });
        self.send(conn, super::StreamId::CONTROL, packet);
    }

    fn client_id_of(&self, conn: ConnId) -> Option<ByteString> {
        let sid = self.conns.get(&conn)?.session?;
        Some(self.sessions.get(&sid)?.client_id.clone())
    }
}
