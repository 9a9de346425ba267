//! What the client sends and the acknowledgements it awaits: PUBLISH with the QoS 1/2 flows
//! (4.3.2, 4.3.3), SUBSCRIBE/SUBACK and UNSUBSCRIBE/UNSUBACK (3.8 to 3.11).
//!
//! Requests are checked against what the server announced before anything is sent (maximum
//! QoS, retain, packet size), so a mistake is an error for the caller instead of a DISCONNECT
//! from the server. QoS 1/2 publishes beyond the server's Receive Maximum wait in order.

use std::time::Instant;

use bytestring::ByteString;

use super::{ClientState, Completion, OpId, StreamKey};
use crate::client::error::ClientError;
use crate::client::types::{Acknowledged, Message, PublishOutcome, Subscription};
use crate::codec::{
    self, Ack, Packet, Properties, Publish, QoS, ReasonCode, SubAck, Subscribe, UnsubAck,
    Unsubscribe,
};
use crate::topic;

/// The protocol's largest packet: 1 byte of header, 4 of length, 268,435,455 of body.
const PROTOCOL_MAX_PACKET: usize = 1 + 4 + 268_435_455;

/// An outgoing QoS 1/2 message with a packet identifier.
#[derive(Debug)]
pub(super) struct Inflight {
    /// `None` once the caller stopped waiting (the connection was lost).
    pub op: Option<OpId>,
    pub stream: StreamKey,
    pub seq: u64,
    pub stage: Stage,
}

#[derive(Debug)]
pub(super) enum Stage {
    /// PUBLISH sent; PUBACK (QoS 1) or PUBREC (QoS 2) awaited.
    Published(Box<Publish>),
    /// PUBREC received and PUBREL sent; PUBCOMP awaited.
    Released {
        pubrec: ReasonCode,
        reason_string: Option<ByteString>,
    },
}

impl Inflight {
    /// The packet that resends this stage after a reconnection or a lost stream: the PUBLISH
    /// with DUP set [MQTT-3.3.1-1], or the PUBREL.
    pub fn retransmission(&self, packet_id: u16) -> Packet {
        match &self.stage {
            Stage::Published(p) => {
                let mut p = Publish::clone(p);
                p.dup = true;
                Packet::Publish(p)
            }
            Stage::Released { .. } => Packet::PubRel(Ack::new(packet_id)),
        }
    }
}

/// A QoS 1/2 publish held back by the server's Receive Maximum.
#[derive(Debug)]
pub(super) struct Waiting {
    pub op: Option<OpId>,
    pub stream: StreamKey,
    pub publish: Publish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckKind {
    Subscribe,
    Unsubscribe,
}

/// A SUBSCRIBE or UNSUBSCRIBE awaiting its acknowledgement.
#[derive(Debug)]
pub(super) struct PendingAck {
    pub op: OpId,
    pub stream: StreamKey,
    pub kind: AckKind,
    pub filters: usize,
}

impl ClientState {
    /// Publishes on `stream`. QoS 0 is sent at once and returns `None`; QoS 1/2 returns the
    /// operation that completes with the acknowledgement.
    pub fn publish(
        &mut self,
        stream: StreamKey,
        message: Message,
        now: Instant,
    ) -> Result<Option<OpId>, ClientError> {
        if message.qos == QoS::AtMostOnce {
            self.check_may_pipeline()?;
        } else if !(self.resume_operations && self.session_persists()) {
            self.check_connected()?;
        }
        let given_id = match (message.qos, message.packet_id) {
            (QoS::AtMostOnce, _) | (_, None) => None,
            (_, Some(0)) => return Err(invalid("packet identifier 0 is not valid".into())),
            (_, Some(id)) if !self.ids.is_free(id) => return Err(ClientError::PacketIdInUse(id)),
            (_, Some(id)) => Some(id),
        };
        let v5 = self.version().is_v5();
        if !topic::is_valid_topic_name(&message.topic) {
            // [MQTT-3.3.2-1] [MQTT-3.3.2-2] [MQTT-4.7.3-1]
            return Err(invalid(format!("invalid topic name {:?}", &*message.topic)));
        }
        if message.qos > self.limits.maximum_qos {
            // [MQTT-3.2.2-11]
            return Err(invalid(format!(
                "QoS {} is above the server's maximum QoS {}",
                message.qos as u8, self.limits.maximum_qos as u8
            )));
        }
        if message.retain && !self.limits.retain_available {
            // [MQTT-3.2.2-14]
            return Err(invalid(
                "the server does not support retained messages".into(),
            ));
        }
        let mut properties = if v5 {
            message.properties
        } else {
            Properties::default()
        };
        if properties.topic_alias.is_some() {
            return Err(invalid(
                "this client does not use topic aliases toward the server".into(),
            ));
        }
        if !properties.subscription_identifiers.is_empty() {
            // [MQTT-3.3.4-6] a client never sends a Subscription Identifier in PUBLISH.
            return Err(invalid(
                "a PUBLISH from a client cannot carry subscription identifiers".into(),
            ));
        }
        if properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&message.payload).is_err()
        {
            // [MQTT-3.3.2-4] the payload must be UTF-8 when the indicator says so.
            return Err(invalid(
                "payload format is UTF-8 but the payload is not valid UTF-8".into(),
            ));
        }
        if properties.topic_alias.is_some() {
            properties.topic_alias = None;
        }
        let datagram = message.datagram;
        let publish = Publish {
            dup: false,
            qos: message.qos,
            retain: message.retain,
            topic: message.topic,
            // Sized with an identifier: its value does not change the length.
            packet_id: (message.qos != QoS::AtMostOnce).then_some(1),
            properties,
            payload: message.payload,
        };
        self.check_size(&Packet::Publish(publish.clone()))?;
        if publish.qos == QoS::AtMostOnce {
            // QoS 1/2 never go in a datagram: their flows need ordering and retransmission.
            let stream = if datagram {
                self.datagram_or(stream)
            } else {
                stream
            };
            self.push(stream, Packet::Publish(publish), now);
            return Ok(None);
        }
        let op = self.next_op();
        if let Some(id) = given_id {
            self.ids.reserve(id);
        }
        self.waiting.push_back(Waiting {
            op: Some(op),
            stream,
            publish: Publish {
                packet_id: given_id,
                ..publish
            },
        });
        self.pump_waiting(now);
        Ok(Some(op))
    }

    /// Subscribes on `stream`; completes with the SUBACK codes.
    pub fn subscribe(
        &mut self,
        stream: StreamKey,
        subscription: Subscription,
        now: Instant,
    ) -> Result<OpId, ClientError> {
        self.check_may_pipeline()?;
        if subscription.filters.is_empty() {
            // [MQTT-3.8.3-3]
            return Err(invalid("SUBSCRIBE needs at least one topic filter".into()));
        }
        for (filter, options) in &subscription.filters {
            if !topic::is_valid_filter(filter) {
                return Err(invalid(format!("invalid topic filter {:?}", &**filter)));
            }
            if options.retain_handling > 2 {
                return Err(invalid("retain handling must be 0, 1 or 2".into()));
            }
            if options.no_local && filter.starts_with("$share/") {
                // [MQTT-3.8.3-4]
                return Err(invalid(
                    "No Local cannot be set on a shared subscription".into(),
                ));
            }
        }
        let v5 = self.version().is_v5();
        let properties = if v5 {
            subscription.properties
        } else {
            Properties::default()
        };
        match properties.subscription_identifiers.as_slice() {
            [] => {}
            [id] if (1..=268_435_455).contains(id) => {
                if !self.limits.subscription_identifiers {
                    // 3.2.2.3.12: the server said Subscription Identifier Available = 0.
                    return Err(invalid(
                        "the server does not support subscription identifiers".into(),
                    ));
                }
            }
            [_] => {
                return Err(invalid(
                    "a subscription identifier must be 1 to 268,435,455".into(),
                ))
            }
            _ => {
                return Err(invalid(
                    "a SUBSCRIBE carries at most one subscription identifier".into(),
                ))
            }
        }
        let filters = subscription.filters.len();
        let mut subscribe = Subscribe {
            packet_id: 1,
            properties,
            filters: subscription.filters,
        };
        self.check_size(&Packet::Subscribe(subscribe.clone()))?;
        let id = self.allocate_id()?;
        subscribe.packet_id = id;
        self.send_pending(
            stream,
            id,
            AckKind::Subscribe,
            filters,
            Packet::Subscribe(subscribe),
            now,
        )
    }

    /// Unsubscribes on `stream`; completes with the UNSUBACK codes.
    pub fn unsubscribe(
        &mut self,
        stream: StreamKey,
        filters: Vec<ByteString>,
        properties: Properties,
        now: Instant,
    ) -> Result<OpId, ClientError> {
        self.check_may_pipeline()?;
        if filters.is_empty() {
            // [MQTT-3.10.3-2]
            return Err(invalid(
                "UNSUBSCRIBE needs at least one topic filter".into(),
            ));
        }
        if let Some(bad) = filters.iter().find(|f| !topic::is_valid_filter(f)) {
            return Err(invalid(format!("invalid topic filter {:?}", &**bad)));
        }
        let properties = if self.version().is_v5() {
            properties
        } else {
            Properties::default()
        };
        let count = filters.len();
        let mut unsubscribe = Unsubscribe {
            packet_id: 1,
            properties,
            filters,
        };
        self.check_size(&Packet::Unsubscribe(unsubscribe.clone()))?;
        let id = self.allocate_id()?;
        unsubscribe.packet_id = id;
        self.send_pending(
            stream,
            id,
            AckKind::Unsubscribe,
            count,
            Packet::Unsubscribe(unsubscribe),
            now,
        )
    }

    fn send_pending(
        &mut self,
        stream: StreamKey,
        id: u16,
        kind: AckKind,
        filters: usize,
        packet: Packet,
        now: Instant,
    ) -> Result<OpId, ClientError> {
        let op = self.next_op();
        let stream = self.route(stream);
        self.pending.insert(
            id,
            PendingAck {
                op,
                stream,
                kind,
                filters,
            },
        );
        self.push(stream, packet, now);
        Ok(op)
    }

    fn allocate_id(&mut self) -> Result<u16, ClientError> {
        self.ids
            .allocate()
            .ok_or_else(|| invalid("all 65,535 packet identifiers are in use".into()))
    }

    /// Refuses a packet above the server's Maximum Packet Size [MQTT-3.2.2-15] or the
    /// protocol's limit.
    fn check_size(&self, packet: &Packet) -> Result<(), ClientError> {
        let size = codec::encoded_len(packet, self.version());
        let max = self
            .limits
            .maximum_packet_size
            .map_or(PROTOCOL_MAX_PACKET, |m| m as usize);
        if size > max {
            return Err(invalid(format!(
                "the packet would be {size} bytes, above the server's maximum packet size of {max}"
            )));
        }
        Ok(())
    }

    /// Sends held-back QoS 1/2 publishes while the server's Receive Maximum allows
    /// [MQTT-3.3.4-7].
    pub(super) fn pump_waiting(&mut self, now: Instant) {
        if !self.is_connected() {
            return;
        }
        while !self.waiting.is_empty()
            && self.inflight.len() < usize::from(self.limits.receive_maximum)
        {
            let given = self.waiting.front().and_then(|w| w.publish.packet_id);
            let Some(id) = given.or_else(|| self.ids.allocate()) else {
                return;
            };
            let Some(mut w) = self.waiting.pop_front() else {
                self.ids.release(id);
                return;
            };
            w.publish.packet_id = Some(id);
            let stream = self.route(w.stream);
            let packet = Packet::Publish(w.publish.clone());
            let seq = self.next_seq;
            self.next_seq += 1;
            self.inflight.insert(
                id,
                Inflight {
                    op: w.op,
                    stream,
                    seq,
                    stage: Stage::Published(Box::new(w.publish)),
                },
            );
            self.push(stream, packet, now);
        }
    }

    /// PUBACK ends a QoS 1 flow (4.3.2).
    pub(super) fn handle_puback(&mut self, a: Ack, now: Instant) -> Result<(), ClientError> {
        match self.inflight.get(&a.packet_id) {
            Some(Inflight {
                stage: Stage::Published(p),
                ..
            }) if p.qos == QoS::AtLeastOnce => {}
            // An acknowledgement for nothing we sent (a late duplicate): ignored.
            _ => return Ok(()),
        }
        self.finish(a.packet_id, a.code, a.properties.reason_string.clone(), now);
        Ok(())
    }

    /// PUBREC moves a QoS 2 flow to PUBREL [MQTT-4.3.3-3]; an error code ends it (4.3.3).
    pub(super) fn handle_pubrec(
        &mut self,
        stream: StreamKey,
        a: Ack,
        now: Instant,
    ) -> Result<(), ClientError> {
        let Some(f) = self.inflight.get_mut(&a.packet_id) else {
            // 3.6.2.1: PUBREL 0x92 Packet Identifier Not Found (3.1.1: plain PUBREL).
            let mut rel = Ack::new(a.packet_id);
            rel.code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
            self.push(stream, Packet::PubRel(rel), now);
            return Ok(());
        };
        match &f.stage {
            Stage::Published(p) if p.qos == QoS::ExactlyOnce => {
                if a.code.is_error() {
                    // A PUBREC with an error ends the flow: no PUBREL (4.3.3).
                    self.finish(a.packet_id, a.code, a.properties.reason_string.clone(), now);
                    return Ok(());
                }
                f.stage = Stage::Released {
                    pubrec: a.code,
                    reason_string: a.properties.reason_string.clone(),
                };
            }
            // A duplicate PUBREC: answer it again.
            Stage::Released { .. } => {}
            Stage::Published(_) => {
                return Err(self.violation(
                    ReasonCode::PROTOCOL_ERROR,
                    format!(
                        "PUBREC for the QoS 1 message with packet identifier {}",
                        a.packet_id
                    ),
                    now,
                ))
            }
        }
        let stream = f.stream;
        self.push(stream, Packet::PubRel(Ack::new(a.packet_id)), now);
        Ok(())
    }

    /// PUBCOMP ends a QoS 2 flow (4.3.3).
    pub(super) fn handle_pubcomp(&mut self, a: Ack, now: Instant) -> Result<(), ClientError> {
        let Some(Inflight {
            stage:
                Stage::Released {
                    pubrec,
                    reason_string,
                },
            ..
        }) = self.inflight.get(&a.packet_id)
        else {
            return Ok(());
        };
        // The outcome is the PUBCOMP's error if any, else the PUBREC's code (which tells
        // whether anyone subscribed).
        let (code, reason) = if a.code.is_error() {
            (a.code, a.properties.reason_string.clone())
        } else {
            (
                *pubrec,
                a.properties
                    .reason_string
                    .clone()
                    .or_else(|| reason_string.clone()),
            )
        };
        self.finish(a.packet_id, code, reason, now);
        Ok(())
    }

    /// Ends an outgoing flow: frees its identifier and its Receive Maximum slot.
    fn finish(
        &mut self,
        packet_id: u16,
        code: ReasonCode,
        reason_string: Option<ByteString>,
        now: Instant,
    ) {
        let Some(f) = self.inflight.remove(&packet_id) else {
            return;
        };
        self.ids.release(packet_id);
        self.complete(
            f.op,
            Completion::Published(PublishOutcome {
                packet_id: Some(packet_id),
                code,
                reason_string,
            }),
        );
        self.pump_waiting(now);
    }

    pub(super) fn handle_suback(&mut self, a: SubAck, now: Instant) -> Result<(), ClientError> {
        let Some(pending) = self.take_pending(a.packet_id, AckKind::Subscribe, now)? else {
            return Ok(());
        };
        if a.codes.len() != pending.filters {
            // [MQTT-3.9.3-1] one reason code per topic filter.
            return Err(self.violation(
                ReasonCode::PROTOCOL_ERROR,
                format!(
                    "SUBACK has {} codes for {} topic filters",
                    a.codes.len(),
                    pending.filters
                ),
                now,
            ));
        }
        let done = Acknowledged {
            codes: a.codes,
            properties: a.properties,
        };
        self.complete(Some(pending.op), Completion::Subscribed(done));
        Ok(())
    }

    pub(super) fn handle_unsuback(&mut self, a: UnsubAck, now: Instant) -> Result<(), ClientError> {
        let Some(pending) = self.take_pending(a.packet_id, AckKind::Unsubscribe, now)? else {
            return Ok(());
        };
        let codes = if self.version().is_v5() {
            if a.codes.len() != pending.filters {
                // [MQTT-3.11.3-1] one reason code per topic filter.
                return Err(self.violation(
                    ReasonCode::PROTOCOL_ERROR,
                    format!(
                        "UNSUBACK has {} codes for {} topic filters",
                        a.codes.len(),
                        pending.filters
                    ),
                    now,
                ));
            }
            a.codes
        } else {
            // 3.1.1 UNSUBACK carries no codes: it means success for every filter.
            vec![ReasonCode::SUCCESS; pending.filters]
        };
        let done = Acknowledged {
            codes,
            properties: a.properties,
        };
        self.complete(Some(pending.op), Completion::Unsubscribed(done));
        Ok(())
    }

    /// The pending SUBSCRIBE/UNSUBSCRIBE `packet_id` names, if it is of `kind`. An unknown
    /// identifier is ignored; one of the other kind is a protocol error.
    fn take_pending(
        &mut self,
        packet_id: u16,
        kind: AckKind,
        now: Instant,
    ) -> Result<Option<PendingAck>, ClientError> {
        match self.pending.get(&packet_id) {
            None => Ok(None),
            Some(p) if p.kind == kind => {
                self.ids.release(packet_id);
                Ok(self.pending.remove(&packet_id))
            }
            Some(_) => Err(self.violation(
                ReasonCode::PROTOCOL_ERROR,
                format!("acknowledgement of the wrong type for packet identifier {packet_id}"),
                now,
            )),
        }
    }
}

fn invalid(message: String) -> ClientError {
    ClientError::InvalidRequest(message)
}
