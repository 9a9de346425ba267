//! QUIC multi-stream: the data streams of a connection (see `proto-ext/multi-stream.md`).
//!
//! A subscription made on a data stream is bound to it: SUBACK and deliveries go there, and
//! the acknowledgements come back there. A data stream that ends, or breaks a rule, takes only
//! its own subscriptions with it; what it had inflight moves to the control stream, so no QoS
//! 1/2 message is lost. When the whole connection is lost, the session keeps every
//! subscription and a resumed connection receives them on its control stream.

use std::time::Instant;

use super::session::Inflight;
use super::{Broker, ConnId, SessionId, StreamId};
use crate::codec::{DecodeError, Packet, ReasonCode};

impl Broker {
    /// The client opened a data stream.
    pub fn stream_opened(&mut self, conn: ConnId, stream: StreamId) {
        if stream == StreamId::CONTROL {
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.data_streams.insert(stream);
        }
    }

    /// The client ended a data stream (FIN or reset): we finish our side too. The connection
    /// lives on.
    pub fn stream_closed(&mut self, conn: ConnId, stream: StreamId, now: Instant) {
        self.end_stream(conn, stream, ReasonCode::SUCCESS, now);
        self.reap(now);
    }

    /// Finishes our side of a data stream (FIN after what was queued) and drops what it owned.
    fn end_stream(&mut self, conn: ConnId, stream: StreamId, code: ReasonCode, now: Instant) {
        if stream == StreamId::CONTROL {
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.data_streams.remove(&stream) {
            return;
        }
        self.out.close_stream(conn, stream, code);
        let Some(sid) = c.session else { return };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let gone: Vec<_> = session
            .subscriptions
            .keys()
            .filter(|(_, s)| *s == stream)
            .cloned()
            .collect();
        for key in &gone {
            session.subscriptions.remove(key);
        }
        session.incoming_qos2.retain(|(s, _)| *s != stream);
        for (filter, _) in &gone {
            self.remove_from_trie(sid, filter, stream);
        }
        // Inflight messages of the stream continue on the control stream, as retransmissions.
        let moved = self.rebind_inflight(sid, |s| s == stream);
        for (packet_id, inflight) in moved {
            self.retransmit(sid, conn, packet_id, inflight, now);
        }
    }

    /// A data stream sent something that cannot be decoded: that stream ends, nothing else.
    pub fn handle_stream_error(
        &mut self,
        conn: ConnId,
        stream: StreamId,
        err: &DecodeError,
        now: Instant,
    ) {
        if stream == StreamId::CONTROL {
            self.handle_decode_error(conn, err, now);
        } else {
            self.stream_violation(conn, stream, err.reason_code(), now);
            self.reap(now);
        }
    }

    /// Ends one data stream with a graceful FIN after what was queued for it.
    pub(super) fn stream_violation(
        &mut self,
        conn: ConnId,
        stream: StreamId,
        code: ReasonCode,
        now: Instant,
    ) {
        tracing::debug!(conn = conn.0, stream = stream.0, %code, "closing data stream");
        self.end_stream(conn, stream, code, now);
    }

    /// Packets a data stream may carry (EMQX multi-stream rules); PINGREQ is answered there too.
    pub(super) fn allowed_on_data_stream(packet: &Packet) -> bool {
        matches!(
            packet,
            Packet::Publish(_)
                | Packet::PubAck(_)
                | Packet::PubRec(_)
                | Packet::PubRel(_)
                | Packet::PubComp(_)
                | Packet::Subscribe(_)
                | Packet::Unsubscribe(_)
                | Packet::PingReq
        )
    }

    /// On resume: streams of the old connection mean nothing on the new one, so everything
    /// bound to a data stream moves to the control stream.
    pub(super) fn rebind_session_to_control(&mut self, sid: SessionId) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let data_keys: Vec<_> = session
            .subscriptions
            .keys()
            .filter(|(_, s)| *s != StreamId::CONTROL)
            .cloned()
            .collect();
        let mut to_insert = Vec::new();
        for key in &data_keys {
            let Some(mut entry) = session.subscriptions.remove(key) else {
                continue;
            };
            let control_key = (key.0.clone(), StreamId::CONTROL);
            if !session.subscriptions.contains_key(&control_key) {
                entry.stream = StreamId::CONTROL;
                session.subscriptions.insert(control_key, entry.clone());
                to_insert.push((key.0.clone(), entry));
            }
        }
        session.incoming_qos2 = session
            .incoming_qos2
            .iter()
            .map(|(_, id)| (StreamId::CONTROL, *id))
            .collect();
        for delivery in session.queue.iter_mut() {
            delivery.stream = StreamId::CONTROL;
        }
        for (filter, stream) in data_keys {
            self.remove_from_trie(sid, &filter, stream);
        }
        for (filter, entry) in to_insert {
            self.insert_into_trie(sid, &filter, entry);
        }
        self.rebind_inflight(sid, |s| s != StreamId::CONTROL);
    }

    /// Moves inflight entries whose stream matches `which` to the control stream; returns them.
    fn rebind_inflight(
        &mut self,
        sid: SessionId,
        which: impl Fn(StreamId) -> bool,
    ) -> Vec<(u16, Inflight)> {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return Vec::new();
        };
        let mut moved = Vec::new();
        for (id, inflight) in session.inflight.iter_mut() {
            match inflight {
                Inflight::Published(d) if which(d.stream) => {
                    d.stream = StreamId::CONTROL;
                    moved.push((*id, inflight.clone()));
                }
                Inflight::Released { stream } if which(*stream) => {
                    *stream = StreamId::CONTROL;
                    moved.push((*id, inflight.clone()));
                }
                _ => {}
            }
        }
        moved
    }
}

/// Packets a client-initiated unidirectional QUIC stream may carry (the `mqtt5` crate publishes
/// this way): PUBLISH, SUBSCRIBE, UNSUBSCRIBE and PINGREQ, whose answers and deliveries go on the
/// control stream (the client cannot read a stream it only writes). Anything else stops that
/// stream only; the connection lives on (`transport::quic` applies it while it reads).
pub fn allowed_on_unidirectional_stream(packet: &Packet) -> bool {
    matches!(
        packet,
        Packet::Publish(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) | Packet::PingReq
    )
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::{
        Ack, Auth, ConnAck, Connect, Disconnect, Properties, ProtocolVersion, Publish, QoS, SubAck,
        Subscribe, UnsubAck, Unsubscribe,
    };

    /// One packet of every type, in type order (1..=15).
    fn every_packet_type() -> Vec<Packet> {
        let props = Properties::default;
        vec![
            Packet::Connect(Box::new(Connect {
                protocol: ProtocolVersion::V5,
                clean_start: true,
                keep_alive: 30,
                properties: props(),
                client_id: "c".into(),
                will: None,
                username: None,
                password: None,
            })),
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: ReasonCode::SUCCESS,
                properties: props(),
            }),
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: "t".into(),
                packet_id: Some(1),
                properties: props(),
                payload: Bytes::from_static(b"p"),
            }),
            Packet::PubAck(Ack::new(1)),
            Packet::PubRec(Ack::new(1)),
            Packet::PubRel(Ack::new(1)),
            Packet::PubComp(Ack::new(1)),
            Packet::Subscribe(Subscribe {
                packet_id: 2,
                properties: props(),
                filters: vec![("t".into(), Default::default())],
            }),
            Packet::SubAck(SubAck {
                packet_id: 2,
                properties: props(),
                codes: vec![ReasonCode::SUCCESS],
            }),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 3,
                properties: props(),
                filters: vec!["t".into()],
            }),
            Packet::UnsubAck(UnsubAck {
                packet_id: 3,
                properties: props(),
                codes: vec![ReasonCode::SUCCESS],
            }),
            Packet::PingReq,
            Packet::PingResp,
            Packet::Disconnect(Disconnect {
                code: ReasonCode::SUCCESS,
                properties: props(),
            }),
            Packet::Auth(Auth {
                code: ReasonCode::CONTINUE_AUTHENTICATION,
                properties: props(),
            }),
        ]
    }

    fn allowed_types(rule: impl Fn(&Packet) -> bool) -> Vec<u8> {
        let packets = every_packet_type();
        let types: Vec<u8> = packets.iter().map(Packet::packet_type).collect();
        assert_eq!(
            types,
            (1..=15).collect::<Vec<u8>>(),
            "one packet of each type"
        );
        packets
            .iter()
            .filter(|p| rule(p))
            .map(Packet::packet_type)
            .collect()
    }

    #[test]
    fn a_unidirectional_stream_carries_publish_subscribe_unsubscribe_and_pingreq() {
        assert_eq!(
            allowed_types(allowed_on_unidirectional_stream),
            [3, 8, 10, 12]
        );
    }

    #[test]
    fn a_data_stream_carries_publish_its_acknowledgements_subscriptions_and_pingreq() {
        assert_eq!(
            allowed_types(Broker::allowed_on_data_stream),
            [3, 4, 5, 6, 7, 8, 10, 12]
        );
    }
}
