//! The session state machine's part of enhanced authentication (MQTT 5.0, 4.12): the
//! CONNECT's Authentication Method and Data, the server's AUTH challenges answered before the
//! CONNACK, and the CONNACK's final data. The method itself is the application's
//! ([`crate::client::AuthMethod`]).

use std::time::Instant;

use bytes::Bytes;

use super::{ClientState, StreamKey};
use crate::client::auth::AuthExchange;
use crate::client::error::ClientError;
use crate::codec::{Auth, ConnAck, Connect, Packet, Properties, ReasonCode};

/// The exchange of the connection attempt in progress.
pub(super) struct Exchange(Box<dyn AuthExchange>);

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exchange")
    }
}

impl ClientState {
    /// Puts the method's name and a new exchange's first data into `connect`.
    pub(super) fn start_auth(&mut self, connect: &mut Connect) {
        let Some(method) = &self.auth else {
            self.exchange = None;
            return;
        };
        let mut exchange = method.0.start();
        connect.properties.authentication_method = Some(method.0.name().into());
        connect.properties.authentication_data = exchange.initial_data();
        self.exchange = Some(Exchange(exchange));
    }

    /// Whether the CONNECT carried an Authentication Method: until CONNACK the client sends
    /// nothing but AUTH or DISCONNECT [MQTT-3.1.2-30].
    pub(super) fn authenticating(&self) -> bool {
        self.exchange.is_some()
    }

    /// AUTH before CONNACK: the server's challenge, answered with the method's response.
    pub(super) fn handle_auth_challenge(
        &mut self,
        auth: Auth,
        now: Instant,
    ) -> Result<(), ClientError> {
        let expected = self.auth.as_ref().map(|m| m.0.name().to_owned());
        let Some(exchange) = self.exchange.as_mut() else {
            return Err(self.violation(
                ReasonCode::PROTOCOL_ERROR,
                "the server sent AUTH but the CONNECT named no authentication method".into(),
                now,
            ));
        };
        // [MQTT-4.12.0-2] a challenge continues the exchange (0x18) with the same method.
        let method = auth.properties.authentication_method.as_deref();
        if auth.code != ReasonCode::CONTINUE_AUTHENTICATION || method != expected.as_deref() {
            return Err(self.violation(
                ReasonCode::PROTOCOL_ERROR,
                format!(
                    "AUTH with reason 0x{:02X} and method {method:?} during the exchange for {expected:?}",
                    auth.code.0
                ),
                now,
            ));
        }
        match exchange
            .0
            .challenge(auth.properties.authentication_data.as_ref())
        {
            Ok(data) => {
                let answer = Auth {
                    code: ReasonCode::CONTINUE_AUTHENTICATION,
                    properties: Properties::from(crate::codec::PropertyValues {
                        authentication_method: expected.map(Into::into),
                        authentication_data: data,
                        ..crate::codec::PropertyValues::default()
                    }),
                };
                self.push(StreamKey::CONTROL, Packet::Auth(answer), now);
                Ok(())
            }
            Err(reason) => Err(self.violation(
                ReasonCode::NOT_AUTHORIZED,
                format!("authentication abandoned: {reason}"),
                now,
            )),
        }
    }

    /// A successful CONNACK ends the exchange: the method checks the server's final data.
    pub(super) fn finish_auth(&mut self, ack: &ConnAck, now: Instant) -> Result<(), ClientError> {
        let Some(mut exchange) = self.exchange.take() else {
            return Ok(());
        };
        let data: Option<&Bytes> = ack.properties.authentication_data.as_ref();
        match exchange.0.success(data) {
            Ok(()) => Ok(()),
            Err(reason) => Err(self.violation(
                ReasonCode::NOT_AUTHORIZED,
                format!("the server's authentication was not accepted: {reason}"),
                now,
            )),
        }
    }
}
