//! What the server sends: application messages and their QoS 1/2 flows (4.3), topic aliases
//! (3.3.2.3.4).
//!
//! A QoS 1/2 message is acknowledged only when the glue says it is queued for the application
//! ([`ClientState::acknowledge`]): until then the server keeps it, so a client that is killed
//! before queuing it gets it again. QoS 2 uses delivery on PUBLISH ("method B" of 4.3.3): the
//! message is delivered once, and its identifier is kept until PUBREL so a retransmission is
//! answered without being delivered again.

use std::time::Instant;

use super::{AckToken, ClientState, Event, StreamKey};
use crate::client::error::ClientError;
use crate::client::types::ReceivedMessage;
use crate::codec::{Ack, Packet, Publish, QoS, ReasonCode};

/// An incoming QoS 1/2 message by packet identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Incoming {
    /// Handed to the application, acknowledgement not sent yet.
    Queued(QoS),
    /// QoS 2: PUBREC sent, PUBREL awaited.
    AwaitingRelease,
    /// Manual acknowledgements: acknowledged by the application while disconnected; the
    /// acknowledgement answers the server's retransmission.
    AcknowledgedOffline(QoS),
}

impl ClientState {
    pub(super) fn handle_publish(
        &mut self,
        stream: StreamKey,
        p: Publish,
        now: Instant,
    ) -> Result<(), ClientError> {
        let mut properties = p.properties;
        let alias = properties.topic_alias;
        if alias.is_some() {
            properties.topic_alias = None;
        }
        let topic = match alias {
            None => p.topic,
            Some(alias) => {
                let maximum = self.connect.properties.topic_alias_maximum.unwrap_or(0);
                if alias == 0 || alias > maximum {
                    // [MQTT-3.3.2-11]: the server must stay within our Topic Alias Maximum;
                    // 0 is never valid (3.3.2.3.4).
                    return Err(self.violation(
                        ReasonCode::TOPIC_ALIAS_INVALID,
                        format!("topic alias {alias} is outside 1..={maximum}"),
                        now,
                    ));
                }
                if p.topic.is_empty() {
                    match self.aliases.get(&alias) {
                        Some(topic) => topic.clone(),
                        None => {
                            // 3.3.2.3.4: an alias must be set before it is used alone.
                            return Err(self.violation(
                                ReasonCode::PROTOCOL_ERROR,
                                format!("topic alias {alias} was never set"),
                                now,
                            ));
                        }
                    }
                } else {
                    self.aliases.insert(alias, p.topic.clone());
                    p.topic
                }
            }
        };
        let ack = match (p.qos, p.packet_id) {
            (QoS::AtMostOnce, _) | (_, None) => None,
            (qos, Some(id)) => match self.incoming.get(&id) {
                None => {
                    self.check_receive_maximum(now)?;
                    self.incoming.insert(id, Incoming::Queued(qos));
                    Some(self.token(stream, id, qos))
                }
                // A retransmission of a message the application has not taken yet: it will
                // be acknowledged once, when it is.
                Some(Incoming::Queued(_)) => return Ok(()),
                Some(Incoming::AcknowledgedOffline(QoS::ExactlyOnce)) => {
                    self.incoming.insert(id, Incoming::AwaitingRelease);
                    self.push(stream, Packet::PubRec(Ack::new(id)), now);
                    return Ok(());
                }
                Some(Incoming::AcknowledgedOffline(_)) => {
                    self.incoming.remove(&id);
                    self.push(stream, Packet::PubAck(Ack::new(id)), now);
                    return Ok(());
                }
                Some(Incoming::AwaitingRelease) if qos == QoS::ExactlyOnce => {
                    // [MQTT-4.3.3-10] acknowledge again, do not deliver again.
                    self.push(stream, Packet::PubRec(Ack::new(id)), now);
                    return Ok(());
                }
                Some(Incoming::AwaitingRelease) => {
                    return Err(self.violation(
                        ReasonCode::PACKET_IDENTIFIER_IN_USE,
                        format!(
                            "QoS 1 PUBLISH reuses packet identifier {id}, still awaiting PUBREL"
                        ),
                        now,
                    ))
                }
            },
        };
        let message = ReceivedMessage {
            topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            dup: p.dup,
            properties,
            ack,
        };
        self.events.push_back(Event::Message {
            stream,
            message,
            ack,
        });
        Ok(())
    }

    /// [MQTT-3.3.4-9] (toward the client): the server must not exceed our Receive Maximum;
    /// 0x93 Receive Maximum Exceeded otherwise. Only 5.0 announces one.
    fn check_receive_maximum(&mut self, now: Instant) -> Result<(), ClientError> {
        let Some(maximum) = self
            .connect
            .properties
            .receive_maximum
            .filter(|_| self.version().is_v5())
        else {
            return Ok(());
        };
        if self.incoming.len() < usize::from(maximum) {
            return Ok(());
        }
        Err(self.violation(
            ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
            format!("the server sent more than {maximum} unacknowledged QoS 1/2 messages"),
            now,
        ))
    }

    /// The message `token` names is queued for the application (with manual acknowledgements:
    /// the application is done with it): send its PUBACK [MQTT-4.3.2-4] or PUBREC
    /// [MQTT-4.3.3-9]. A token of an earlier connection (manual: of a lost session) is ignored
    /// (the server will retransmit that message). Manual: while disconnected the
    /// acknowledgement waits for the next connection, which the server's retransmission of
    /// the message prompts.
    pub fn acknowledge(&mut self, token: AckToken, now: Instant) {
        if token.epoch != self.token_epoch() {
            return;
        }
        if !self.is_connected() {
            if let Some(Incoming::Queued(qos)) = self.incoming.get(&token.packet_id).copied() {
                self.incoming
                    .insert(token.packet_id, Incoming::AcknowledgedOffline(qos));
            }
            return;
        }
        let id = token.packet_id;
        match self.incoming.get(&id) {
            Some(Incoming::Queued(QoS::AtLeastOnce)) => {
                self.incoming.remove(&id);
                self.push(token.stream, Packet::PubAck(Ack::new(id)), now);
            }
            Some(Incoming::Queued(QoS::ExactlyOnce)) => {
                self.incoming.insert(id, Incoming::AwaitingRelease);
                self.push(token.stream, Packet::PubRec(Ack::new(id)), now);
            }
            _ => {}
        }
    }

    /// PUBREL: answer PUBCOMP and free the identifier [MQTT-4.3.3-11] [MQTT-4.3.3-12].
    pub(super) fn handle_pubrel(
        &mut self,
        stream: StreamKey,
        a: Ack,
        now: Instant,
    ) -> Result<(), ClientError> {
        let mut comp = Ack::new(a.packet_id);
        match self.incoming.get(&a.packet_id) {
            Some(Incoming::AwaitingRelease) => {
                self.incoming.remove(&a.packet_id);
            }
            Some(Incoming::Queued(_) | Incoming::AcknowledgedOffline(_)) => {
                return Err(self.violation(
                    ReasonCode::PROTOCOL_ERROR,
                    format!("PUBREL before PUBREC for packet identifier {}", a.packet_id),
                    now,
                ))
            }
            // 3.7.2.1: 0x92 Packet Identifier Not Found (3.1.1 has no codes: plain PUBCOMP).
            None => comp.code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        }
        self.push(stream, Packet::PubComp(comp), now);
        Ok(())
    }
}
