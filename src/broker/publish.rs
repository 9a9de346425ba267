//! PUBLISH from clients and the QoS 1/2 acknowledgement flows in both directions (3.3 to 3.7,
//! 4.3).

use std::time::Instant;

use super::route::message_from;
use super::session::Inflight;
use super::{Broker, ConnId, StreamId};
use crate::codec::{Ack, Packet, Publish, QoS, ReasonCode};

impl Broker {
    /// A PUBLISH arrived on a stream: past `limits.max_publish_rate_per_client` the connection
    /// is closed (5.0: DISCONNECT 0x96 Message rate too high), else it is handled. Datagrams
    /// skip this (`handle_datagram`): they are bounded by `quic_datagrams_per_sec` and never
    /// close a connection.
    pub(super) fn handle_stream_publish(
        &mut self,
        conn: ConnId,
        stream: StreamId,
        p: Publish,
        now: Instant,
    ) {
        let rate = self.settings.limits.max_publish_rate_per_client;
        if rate > 0 {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let bucket = c
                .publish_rate
                .get_or_insert_with(|| Box::new(crate::rate::TokenBucket::new(rate, now)));
            if !bucket.allow(now) {
                tracing::debug!(conn = conn.0, peer = %c.peer, rate, "closing: publishing faster than the limit");
                self.metrics.publishes_rate_limited += 1;
                self.close_with(conn, ReasonCode::MESSAGE_RATE_TOO_HIGH, now);
                return;
            }
        }
        self.handle_publish(conn, stream, p, now);
    }

    pub(super) fn handle_publish(
        &mut self,
        conn: ConnId,
        stream: StreamId,
        p: Publish,
        now: Instant,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let version = c.version;
        let Some(sid) = c.session else { return };
        // [MQTT-3.3.4-6] a client's PUBLISH must not carry a Subscription Identifier.
        if !p.properties.subscription_identifiers.is_empty() {
            self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now);
            return;
        }

        // Topic alias from the client (3.3.2.3.4).
        let mut topic = p.topic.clone();
        if let Some(alias) = p.properties.topic_alias {
            // [MQTT-3.3.2-9] [MQTT-3.3.2-10]: 0 or above our maximum is an error.
            if alias == 0 || alias > self.settings.limits.topic_alias_maximum {
                self.protocol_violation(conn, ReasonCode::TOPIC_ALIAS_INVALID, now);
                return;
            }
            if topic.is_empty() {
                match c.aliases_in.get(&alias) {
                    Some(t) => topic = t.clone(),
                    // An alias that was never established.
                    None => {
                        self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now);
                        return;
                    }
                }
            } else {
                c.aliases_in.insert(alias, topic.clone());
            }
        }
        if !crate::topic::is_valid_topic_name(&topic) || self.too_deep(&topic) {
            // [MQTT-3.3.2-1] [MQTT-3.3.2-2]; deeper than `max_topic_levels` (limits.rs).
            let code = if topic.is_empty() {
                ReasonCode::PROTOCOL_ERROR
            } else {
                ReasonCode::TOPIC_NAME_INVALID
            };
            self.protocol_violation(conn, code, now);
            return;
        }
        // [MQTT-3.2.2-11]: QoS above the Maximum QoS we announced.
        if p.qos as u8 > self.settings.session.max_qos {
            self.protocol_violation(conn, ReasonCode::QOS_NOT_SUPPORTED, now);
            return;
        }
        // [MQTT-3.2.2-14]: RETAIN when we announced Retain Available = 0.
        if p.retain && !self.settings.session.retain_available {
            self.protocol_violation(conn, ReasonCode::RETAIN_NOT_SUPPORTED, now);
            return;
        }
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let packet_id = p.packet_id.unwrap_or(0);
        if p.qos == QoS::ExactlyOnce {
            if session.incoming_qos2.contains(&(stream, packet_id)) {
                // A retransmission of a QoS 2 message already received: acknowledge, do not
                // deliver again [MQTT-4.3.3-10]. In a cluster the PUBREC may still wait for
                // the stream (cluster.rs): it follows then.
                if !self.cluster_waits_for(conn, stream, packet_id) {
                    self.send(conn, stream, Packet::PubRec(Ack::new(packet_id)));
                }
                return;
            }
            // [MQTT-3.3.4-9]: more unacknowledged QoS 2 than our Receive Maximum.
            if session.incoming_qos2.len() >= usize::from(self.settings.limits.receive_maximum) {
                self.protocol_violation(conn, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, now);
                return;
            }
        }
        let origin = session.client_id.clone();

        // Payload Format Indicator 1 promises UTF-8 [MQTT-3.3.2-4]; we check it.
        let bad_payload = version.is_v5()
            && p.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&p.payload).is_err();
        let qos = p.qos;
        let denied = !self.may_publish(conn, sid, &topic);
        let mut held = None;
        let code = if bad_payload {
            ReasonCode::PAYLOAD_FORMAT_INVALID
        } else if denied {
            self.metrics.acl_denied += 1;
            self.metrics.dropped_acl += 1;
            tracing::debug!(conn = conn.0, client = %origin, %topic, "PUBLISH not authorized, dropped");
            // 5.0: PUBACK/PUBREC 0x87. 3.1.1 has no code for it: the message is acknowledged
            // and dropped (as mosquitto does), so the client does not retry it forever. QoS 0
            // is dropped silently.
            if version.is_v5() {
                ReasonCode::NOT_AUTHORIZED
            } else {
                ReasonCode::SUCCESS
            }
        } else {
            self.metrics.messages_received += 1;
            let msg = message_from(p, topic, origin, now);
            // In a cluster the acknowledgement waits until the stream holds the message.
            held = match qos {
                QoS::AtMostOnce => None,
                _ => self.cluster_hold_ack(conn, stream, qos, packet_id),
            };
            let reached = self.publish_message_acked(msg, Some(sid), held, now);
            // 0x10 only in PUBACK: a PUBREC promises the QoS 2 handshake, not a delivery. In a
            // cluster other nodes may have subscribers: no 0x10.
            if reached == 0 && version.is_v5() && qos == QoS::AtLeastOnce && held.is_none() {
                ReasonCode::NO_MATCHING_SUBSCRIBERS
            } else {
                ReasonCode::SUCCESS
            }
        };
        let ack = Ack {
            packet_id,
            code,
            properties: Default::default(),
        };
        if held.is_none()
            && qos != QoS::AtMostOnce
            && self.cluster_queue_answer(conn, stream, qos, packet_id, code)
        {
            // Behind acknowledgements that wait for the cluster (cluster.rs), in order.
            held = Some(super::ClusterAck(0));
        }
        match qos {
            QoS::AtMostOnce => {}
            // Sent by `cluster_stored` (cluster.rs).
            QoS::AtLeastOnce if held.is_some() => {}
            QoS::AtLeastOnce => self.send(conn, stream, Packet::PubAck(ack)),
            QoS::ExactlyOnce => {
                if !code.is_error() {
                    if let Some(s) = self.sessions.get_mut(&sid) {
                        s.incoming_qos2.insert((stream, packet_id));
                    }
                }
                if held.is_none() {
                    self.send(conn, stream, Packet::PubRec(ack));
                }
            }
        }
    }

    /// PUBREL from the client completes an incoming QoS 2 flow (4.3.3).
    pub(super) fn handle_pubrel(&mut self, conn: ConnId, stream: StreamId, a: Ack, _now: Instant) {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.session) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let known = session.incoming_qos2.remove(&(stream, a.packet_id));
        let mut comp = Ack::new(a.packet_id);
        if !known {
            // [MQTT-3.7.2-1] 0x92 for an unknown packet identifier.
            comp.code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        self.send(conn, stream, Packet::PubComp(comp));
    }

    /// PUBACK ends an outgoing QoS 1 flow (4.3.2). A PUBACK for a QoS 2 message is a protocol
    /// error; one for an unknown id is ignored (it may be a late duplicate).
    pub(super) fn handle_puback(&mut self, conn: ConnId, a: Ack, now: Instant) {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.session) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let ends = |f: &Inflight| matches!(f, Inflight::Published(d) if d.qos == QoS::AtLeastOnce);
        match session.inflight.take_if(a.packet_id, ends) {
            Some(Ok(flow)) => {
                if let Inflight::Published(d) = flow {
                    self.cluster_shared_acked(sid, d.seq);
                }
                self.pump_queue(sid, now)
            }
            Some(Err(())) => self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now),
            None => {}
        }
    }

    /// PUBREC moves an outgoing QoS 2 flow to PUBREL (4.3.3); an error code ends it.
    pub(super) fn handle_pubrec(&mut self, conn: ConnId, stream: StreamId, a: Ack, now: Instant) {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.session) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let mut rel = Ack::new(a.packet_id);
        match session.inflight.get(&a.packet_id) {
            Some(Inflight::Published(d)) if d.qos == QoS::ExactlyOnce => {
                // The member holds the message now (or refused it): done in the cluster.
                let seq = d.seq;
                if a.code.is_error() {
                    // 4.3.3: an error PUBREC ends the flow; no PUBREL.
                    session.inflight.remove(&a.packet_id);
                    self.cluster_shared_acked(sid, seq);
                    self.pump_queue(sid, now);
                    return;
                }
                session
                    .inflight
                    .insert(a.packet_id, Inflight::Released { stream });
                self.cluster_shared_acked(sid, seq);
            }
            Some(Inflight::Released { .. }) => {}
            // PUBREC for a QoS 1 message: the wrong handshake.
            Some(Inflight::Published(_)) => {
                self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now);
                return;
            }
            // An error PUBREC for an unknown id ends nothing and needs no answer.
            None if a.code.is_error() => return,
            // 3.6.2.1: PUBREL 0x92 for an unknown packet identifier.
            None => rel.code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        }
        self.send(conn, stream, Packet::PubRel(rel));
    }

    /// PUBCOMP ends an outgoing QoS 2 flow (4.3.3). A PUBCOMP before PUBREL was sent (or for a
    /// QoS 1 message) is a protocol error; one for an unknown id is ignored.
    pub(super) fn handle_pubcomp(&mut self, conn: ConnId, a: Ack, now: Instant) {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.session) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        match session.inflight.get(&a.packet_id) {
            Some(Inflight::Released { .. }) => {
                session.inflight.remove(&a.packet_id);
                self.pump_queue(sid, now);
            }
            Some(Inflight::Published(_)) => {
                self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now)
            }
            None => {}
        }
    }
}
