//! Protocol tests of the broker state machine: packets and instants in, packets out, no
//! sockets and no sleeps.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use super::*;
use crate::codec::*;
use crate::config::Config;

struct Harness {
    broker: Broker,
    now: Instant,
    next_conn: u64,
    next_packet_id: u16,
    inbox: HashMap<ConnId, Vec<Packet>>,
    /// The stream of each packet in `inbox`, in the same order.
    streams: HashMap<ConnId, Vec<StreamId>>,
    closed: HashSet<ConnId>,
    /// Connections whose successful CONNACK came in a transmit marked `accepted`.
    accepted: HashSet<ConnId>,
    closed_streams: HashSet<(ConnId, StreamId)>,
    flows: Vec<(ConnId, FlowEvent)>,
    app: Vec<(HandlerId, SharedMessage)>,
    /// What the broker handed to the cluster (tests_cluster.rs).
    cluster: Vec<ClusterOutput>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_config(Config::default())
    }

    fn with_config(config: Config) -> Harness {
        Harness {
            broker: Broker::new(Settings::from(&config)),
            now: Instant::now(),
            next_conn: 1,
            next_packet_id: 0,
            inbox: HashMap::new(),
            streams: HashMap::new(),
            closed: HashSet::new(),
            accepted: HashSet::new(),
            closed_streams: HashSet::new(),
            flows: Vec::new(),
            app: Vec::new(),
            cluster: Vec::new(),
        }
    }

    fn pump(&mut self) {
        for output in self.broker.take_outputs() {
            match output {
                Output::Transmit(t) => {
                    let packets = t.packets();
                    assert_eq!(packets.len(), t.count, "Transmit::count");
                    let bytes: usize = packets.iter().map(|p| accounted_size(p, t.version)).sum();
                    assert_eq!(bytes, t.accounted, "Transmit::accounted");
                    let connack = packets
                        .iter()
                        .any(|p| matches!(p, Packet::ConnAck(a) if a.code == ReasonCode::SUCCESS));
                    // The glue relies on the mark alone, without decoding.
                    assert_eq!(t.accepted, connack, "Transmit::accepted");
                    if t.accepted {
                        assert_eq!(t.stream, StreamId::CONTROL);
                        assert!(self.accepted.insert(t.conn), "accepted twice");
                    }
                    self.streams
                        .entry(t.conn)
                        .or_default()
                        .extend(packets.iter().map(|_| t.stream));
                    self.inbox.entry(t.conn).or_default().extend(packets);
                    self.broker.handle_written(t.conn, bytes, self.now);
                }
                Output::Close { conn, .. } => {
                    self.closed.insert(conn);
                }
                Output::CloseStream { conn, stream, .. } => {
                    self.closed_streams.insert((conn, stream));
                }
                Output::App { handler, message } => self.app.push((handler, message)),
                Output::ServerFlow { conn, event } => self.flows.push((conn, event)),
                // Backpressure (throttle.rs): this harness writes everything at once, so no
                // connection falls behind; tests_throttle.rs drives the broker directly.
                Output::PauseReading { .. } => {}
                Output::Cluster(c) => self.cluster.push(c),
            }
        }
    }

    fn open(&mut self) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.broker
            .connection_opened(conn, format!("test:{}", conn.0), self.now);
        conn
    }

    fn send(&mut self, conn: ConnId, packet: Packet) {
        self.broker
            .handle_packet(conn, StreamId::CONTROL, packet, self.now);
        self.pump();
    }

    fn recv(&mut self, conn: ConnId) -> Vec<Packet> {
        self.pump();
        self.streams.remove(&conn);
        self.inbox.remove(&conn).unwrap_or_default()
    }

    /// Everything received, with the stream each packet came on.
    fn recv_streams(&mut self, conn: ConnId) -> Vec<(StreamId, Packet)> {
        self.pump();
        let streams = self.streams.remove(&conn).unwrap_or_default();
        streams
            .into_iter()
            .zip(self.inbox.remove(&conn).unwrap_or_default())
            .collect()
    }

    fn send_on(&mut self, conn: ConnId, stream: StreamId, packet: Packet) {
        self.broker.handle_packet(conn, stream, packet, self.now);
        self.pump();
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.broker.handle_timeout(self.now);
        self.pump();
    }

    fn lose(&mut self, conn: ConnId) {
        self.broker.connection_lost(conn, self.now);
        self.pump();
    }

    /// Opens a connection and completes CONNECT; returns it and the CONNACK.
    fn connect_with(&mut self, connect: Connect) -> (ConnId, ConnAck) {
        let conn = self.open();
        self.send(conn, Packet::Connect(Box::new(connect)));
        let mut packets = self.recv_streams(conn);
        match packets.first() {
            Some((_, Packet::ConnAck(ack))) => {
                let ack = ack.clone();
                // What follows the CONNACK (resent and queued messages) stays for recv().
                packets.remove(0);
                let (streams, packets) = packets.into_iter().unzip();
                self.streams.insert(conn, streams);
                self.inbox.insert(conn, packets);
                (conn, ack)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn connect(&mut self, client_id: &str, version: ProtocolVersion) -> ConnId {
        let (conn, ack) = self.connect_with(connect_packet(client_id, version));
        assert_eq!(ack.code, ReasonCode::SUCCESS);
        conn
    }

    fn subscribe(&mut self, conn: ConnId, filter: &str, qos: QoS) -> Vec<ReasonCode> {
        let options = SubscriptionOptions {
            qos,
            ..Default::default()
        };
        self.subscribe_with(conn, filter, options, Properties::default())
    }

    fn subscribe_with(
        &mut self,
        conn: ConnId,
        filter: &str,
        options: SubscriptionOptions,
        properties: Properties,
    ) -> Vec<ReasonCode> {
        let sub = Subscribe {
            packet_id: 7,
            properties,
            filters: vec![(filter.into(), options)],
        };
        self.send(conn, Packet::Subscribe(sub));
        let mut packets = self.recv(conn);
        match packets.first() {
            Some(Packet::SubAck(ack)) => {
                let codes = ack.codes.clone();
                // Retained messages follow the SUBACK; they stay for recv().
                packets.remove(0);
                self.streams
                    .insert(conn, vec![StreamId::CONTROL; packets.len()]);
                self.inbox.insert(conn, packets);
                codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    fn publish(&mut self, conn: ConnId, topic: &str, payload: &str, qos: QoS, retain: bool) {
        self.next_packet_id = self.next_packet_id % 60_000 + 1;
        let packet_id = (qos != QoS::AtMostOnce).then_some(self.next_packet_id);
        self.send(
            conn,
            Packet::Publish(publish(topic, payload, qos, retain, packet_id)),
        );
    }
}

fn connect_packet(client_id: &str, version: ProtocolVersion) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        properties: Properties::default(),
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    }
}

fn publish(topic: &str, payload: &str, qos: QoS, retain: bool, packet_id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: topic.into(),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

fn publishes(packets: &[Packet]) -> Vec<&Publish> {
    packets
        .iter()
        .filter_map(|p| {
            if let Packet::Publish(p) = p {
                Some(p)
            } else {
                None
            }
        })
        .collect()
}

fn disconnect_code(packets: &[Packet]) -> Option<ReasonCode> {
    packets.iter().find_map(|p| {
        if let Packet::Disconnect(d) = p {
            Some(d.code)
        } else {
            None
        }
    })
}

const V5: ProtocolVersion = ProtocolVersion::V5;
const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

#[test]
fn connack_announces_limits_for_v5() {
    let mut h = Harness::new();
    let (_, ack) = h.connect_with(connect_packet("c", V5));
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    assert!(!ack.session_present);
    assert_eq!(ack.properties.receive_maximum, Some(1024));
    assert_eq!(ack.properties.topic_alias_maximum, Some(10));
    assert_eq!(ack.properties.maximum_packet_size, Some(1024 * 1024));
}

#[test]
fn empty_client_id_is_assigned_for_v5_and_refused_for_persistent_v311() {
    let mut h = Harness::new();
    let (_, ack) = h.connect_with(connect_packet("", V5));
    assert!(ack
        .properties
        .assigned_client_identifier
        .clone()
        .is_some_and(|id| !id.is_empty()));

    let mut c = connect_packet("", V4);
    c.clean_start = false;
    let (conn, ack) = h.connect_with(c);
    assert_eq!(ack.code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID); // [MQTT-3.1.3-8]
    assert!(h.closed.contains(&conn));
}

#[test]
fn qos0_qos1_qos2_are_delivered_at_the_lower_of_published_and_granted_qos() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    let publ = h.connect("pub", V5);
    assert_eq!(
        h.subscribe(sub, "a/+", QoS::AtLeastOnce),
        vec![ReasonCode::GRANTED_QOS_1]
    );

    h.publish(publ, "a/b", "zero", QoS::AtMostOnce, false);
    h.publish(publ, "a/b", "two", QoS::ExactlyOnce, false);
    let got = h.recv(sub);
    let got = publishes(&got);
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].qos, &got[0].payload[..]),
        (QoS::AtMostOnce, &b"zero"[..])
    );
    assert_eq!(
        (got[1].qos, &got[1].payload[..]),
        (QoS::AtLeastOnce, &b"two"[..])
    );
    assert!(got[1].packet_id.is_some());
    // The publisher got PUBREC for its QoS 2 message.
    assert!(matches!(h.recv(publ).as_slice(), [Packet::PubRec(_)]));
}

#[test]
fn qos2_inbound_is_delivered_once_even_when_retransmitted() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V4);
    let publ = h.connect("pub", V4);
    h.subscribe(sub, "t", QoS::ExactlyOnce);
    h.send(
        publ,
        Packet::Publish(publish("t", "x", QoS::ExactlyOnce, false, Some(11))),
    );
    let mut dup = publish("t", "x", QoS::ExactlyOnce, false, Some(11));
    dup.dup = true;
    h.send(publ, Packet::Publish(dup));
    assert_eq!(publishes(&h.recv(sub)).len(), 1); // [MQTT-4.3.3-10]
    let acks = h.recv(publ);
    assert_eq!(
        acks.iter()
            .filter(|p| matches!(p, Packet::PubRec(_)))
            .count(),
        2
    );
    h.send(publ, Packet::PubRel(Ack::new(11)));
    assert!(
        matches!(h.recv(publ).as_slice(), [Packet::PubComp(a)] if a.code == ReasonCode::SUCCESS)
    );
    // Unknown id: PUBCOMP 0x92 [MQTT-3.7.2-1], which only 5.0 encodes: a 3.1.1 client gets a
    // plain PUBCOMP.
    h.send(publ, Packet::PubRel(Ack::new(11)));
    assert!(matches!(h.recv(publ).as_slice(), [Packet::PubComp(a)] if a.packet_id == 11));
}

#[test]
fn qos2_outbound_flow_completes_and_frees_the_window() {
    let mut h = Harness::new();
    let mut c = connect_packet("sub", V5);
    c.properties.receive_maximum = Some(1);
    let (sub, _) = h.connect_with(c);
    let publ = h.connect("pub", V5);
    h.subscribe(sub, "t", QoS::ExactlyOnce);
    h.publish(publ, "t", "1", QoS::ExactlyOnce, false);
    h.publish(publ, "t", "2", QoS::ExactlyOnce, false);
    let first = h.recv(sub);
    let first = publishes(&first);
    assert_eq!(
        first.len(),
        1,
        "receive maximum 1 allows one message inflight"
    );
    let id = first[0].packet_id.unwrap();
    h.send(sub, Packet::PubRec(Ack::new(id)));
    assert!(matches!(h.recv(sub).as_slice(), [Packet::PubRel(a)] if a.packet_id == id));
    h.send(sub, Packet::PubComp(Ack::new(id)));
    let second = h.recv(sub);
    assert_eq!(publishes(&second).len(), 1);
    assert_eq!(&publishes(&second)[0].payload[..], b"2");
}

#[test]
fn overlapping_subscriptions_give_one_delivery_with_every_identifier_at_the_highest_qos() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    let publ = h.connect("pub", V5);
    let with_id = |id| {
        Properties::from(crate::codec::PropertyValues {
            subscription_identifiers: vec![id],
            ..Default::default()
        })
    };
    h.subscribe_with(
        sub,
        "a/#",
        SubscriptionOptions {
            qos: QoS::AtMostOnce,
            ..Default::default()
        },
        with_id(1),
    );
    h.subscribe_with(
        sub,
        "a/+",
        SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..Default::default()
        },
        with_id(2),
    );
    h.publish(publ, "a/b", "x", QoS::ExactlyOnce, false);
    let got = h.recv(sub);
    let got = publishes(&got);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    let mut ids = got[0].properties.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
}

#[test]
fn no_local_skips_the_publishers_own_subscription() {
    let mut h = Harness::new();
    let c = h.connect("c", V5);
    h.subscribe_with(
        c,
        "t",
        SubscriptionOptions {
            no_local: true,
            ..Default::default()
        },
        Properties::default(),
    );
    h.publish(c, "t", "x", QoS::AtMostOnce, false);
    assert!(publishes(&h.recv(c)).is_empty());
}

#[test]
fn retained_messages_follow_retain_handling_and_are_cleared_by_empty_payload() {
    let mut h = Harness::new();
    let publ = h.connect("pub", V5);
    h.publish(publ, "r/1", "kept", QoS::AtLeastOnce, true);
    assert_eq!(h.broker.retained_count(), 1);

    let sub = h.connect("sub", V5);
    h.subscribe(sub, "r/#", QoS::AtLeastOnce);
    let got = h.recv(sub);
    let got = publishes(&got);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].retain,
        "[MQTT-3.3.1-8] retained on subscribe keeps RETAIN"
    );

    // Retain handling 1: not again for an existing subscription.
    let rh1 = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        retain_handling: 1,
        ..Default::default()
    };
    h.subscribe_with(sub, "r/#", rh1, Properties::default());
    assert!(publishes(&h.recv(sub)).is_empty());
    // Retain handling 2: never.
    let rh2 = SubscriptionOptions {
        retain_handling: 2,
        ..Default::default()
    };
    h.subscribe_with(sub, "r/+", rh2, Properties::default());
    assert!(publishes(&h.recv(sub)).is_empty());

    // Live delivery clears RETAIN unless retain-as-published [MQTT-3.3.1-12].
    h.publish(publ, "r/1", "again", QoS::AtMostOnce, true);
    assert!(publishes(&h.recv(sub)).iter().all(|p| !p.retain));

    h.publish(publ, "r/1", "", QoS::AtMostOnce, true);
    assert_eq!(h.broker.retained_count(), 0); // [MQTT-3.3.1-6]
}

#[test]
fn retain_as_published_keeps_the_flag() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    let publ = h.connect("pub", V5);
    let rap = SubscriptionOptions {
        retain_as_published: true,
        ..Default::default()
    };
    h.subscribe_with(sub, "t", rap, Properties::default());
    h.publish(publ, "t", "x", QoS::AtMostOnce, true);
    assert!(publishes(&h.recv(sub))[0].retain);
}

fn with_will(
    client_id: &str,
    version: ProtocolVersion,
    delay: Option<u32>,
    expiry: Option<u32>,
) -> Connect {
    let mut c = connect_packet(client_id, version);
    c.properties.session_expiry_interval = expiry;
    c.will = Some(Will {
        topic: "will/t".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::from(crate::codec::PropertyValues {
            will_delay_interval: delay,
            ..Default::default()
        }),
    });
    c
}

#[test]
fn will_is_published_on_connection_loss_but_not_after_disconnect() {
    let mut h = Harness::new();
    let watcher = h.connect("watcher", V4);
    h.subscribe(watcher, "will/#", QoS::AtLeastOnce);

    let (c, _) = h.connect_with(with_will("w1", V4, None, None));
    h.lose(c);
    assert_eq!(publishes(&h.recv(watcher)).len(), 1);

    let (c, _) = h.connect_with(with_will("w2", V4, None, None));
    h.send(
        c,
        Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
    );
    assert!(publishes(&h.recv(watcher)).is_empty()); // [MQTT-3.1.2-10]

    let (c, _) = h.connect_with(with_will("w3", V5, None, None));
    h.send(
        c,
        Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL)),
    );
    assert_eq!(publishes(&h.recv(watcher)).len(), 1);
}

#[test]
fn delayed_will_waits_and_a_reconnect_cancels_it() {
    let mut h = Harness::new();
    let watcher = h.connect("watcher", V5);
    h.subscribe(watcher, "will/#", QoS::AtMostOnce);

    let (c, _) = h.connect_with(with_will("w", V5, Some(10), Some(100)));
    h.lose(c);
    h.advance(Duration::from_secs(5));
    assert!(publishes(&h.recv(watcher)).is_empty());
    h.advance(Duration::from_secs(6));
    assert_eq!(publishes(&h.recv(watcher)).len(), 1);

    let (c, _) = h.connect_with(with_will("w", V5, Some(10), Some(100)));
    h.lose(c);
    h.advance(Duration::from_secs(5));
    let mut again = connect_packet("w", V5);
    again.clean_start = false;
    again.properties.session_expiry_interval = Some(100);
    h.connect_with(again);
    h.advance(Duration::from_secs(20));
    assert!(publishes(&h.recv(watcher)).is_empty(), "[MQTT-3.1.3-9]");
}

#[test]
fn persistent_session_queues_offline_and_resends_inflight_with_dup() {
    let mut h = Harness::new();
    let mut c = connect_packet("sub", V4);
    c.clean_start = false;
    let (sub, _) = h.connect_with(c.clone());
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    let publ = h.connect("pub", V4);
    h.publish(publ, "t", "inflight", QoS::AtLeastOnce, false);
    assert_eq!(publishes(&h.recv(sub)).len(), 1);
    h.lose(sub);
    h.publish(publ, "t", "queued", QoS::AtLeastOnce, false);
    h.publish(publ, "t", "lost", QoS::AtMostOnce, false);

    let (sub, ack) = h.connect_with(c);
    assert!(ack.session_present);
    let got = h.recv(sub);
    let got = publishes(&got);
    assert_eq!(got.len(), 2);
    assert!(got[0].dup && &got[0].payload[..] == b"inflight"); // [MQTT-4.4.0-1]
    assert!(!got[1].dup && &got[1].payload[..] == b"queued");
}

#[test]
fn session_expires_after_its_interval() {
    let mut h = Harness::new();
    let mut c = connect_packet("s", V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(30);
    let (conn, _) = h.connect_with(c.clone());
    h.lose(conn);
    h.advance(Duration::from_secs(29));
    assert_eq!(h.broker.metrics().sessions, 1);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.broker.metrics().sessions, 0);
    let (_, ack) = h.connect_with(c);
    assert!(!ack.session_present);
}

#[test]
fn keep_alive_closes_after_one_and_a_half_intervals() {
    let mut h = Harness::new();
    let mut c = connect_packet("k", V5);
    c.keep_alive = 10;
    let (conn, _) = h.connect_with(c);
    h.advance(Duration::from_secs(14));
    assert!(!h.closed.contains(&conn));
    h.send(conn, Packet::PingReq);
    assert!(matches!(h.recv(conn).as_slice(), [Packet::PingResp]));
    h.advance(Duration::from_secs(14));
    assert!(!h.closed.contains(&conn));
    h.advance(Duration::from_secs(2));
    assert!(h.closed.contains(&conn));
    assert_eq!(
        disconnect_code(&h.recv(conn)),
        Some(ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
}

#[test]
fn keep_alive_zero_never_times_out_and_connect_must_come_in_time() {
    let mut h = Harness::new();
    let mut c = connect_packet("k", V4);
    c.keep_alive = 0;
    let (conn, _) = h.connect_with(c);
    let idle = h.open();
    h.advance(Duration::from_secs(3600));
    assert!(!h.closed.contains(&conn));
    assert!(h.closed.contains(&idle));
}

#[test]
fn takeover_disconnects_the_old_connection_with_0x8e() {
    let mut h = Harness::new();
    let old = h.connect("same", V5);
    let new = h.connect("same", V5);
    assert!(h.closed.contains(&old));
    assert!(!h.closed.contains(&new));
    assert_eq!(
        disconnect_code(&h.recv(old)),
        Some(ReasonCode::SESSION_TAKEN_OVER)
    );
}

#[test]
fn exceeding_our_receive_maximum_is_0x93() {
    let mut config = Config::default();
    config.limits.receive_maximum = 2;
    let mut h = Harness::with_config(config);
    let c = h.connect("c", V5);
    for id in 1..=3 {
        h.send(
            c,
            Packet::Publish(publish("t", "x", QoS::ExactlyOnce, false, Some(id))),
        );
    }
    assert!(h.closed.contains(&c));
    assert_eq!(
        disconnect_code(&h.recv(c)),
        Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
    );
}

#[test]
fn inbound_topic_alias_is_resolved_and_bad_alias_is_0x94() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "alias/t", QoS::AtMostOnce);
    let c = h.connect("c", V5);
    let mut p = publish("alias/t", "1", QoS::AtMostOnce, false, None);
    p.properties.topic_alias = Some(3);
    h.send(c, Packet::Publish(p));
    let mut p = publish("", "2", QoS::AtMostOnce, false, None);
    p.properties.topic_alias = Some(3);
    h.send(c, Packet::Publish(p));
    let got = h.recv(sub);
    assert_eq!(
        publishes(&got)
            .iter()
            .map(|p| &p.topic[..])
            .collect::<Vec<_>>(),
        ["alias/t", "alias/t"]
    );

    let mut p = publish("x", "3", QoS::AtMostOnce, false, None);
    p.properties.topic_alias = Some(11);
    h.send(c, Packet::Publish(p));
    assert_eq!(
        disconnect_code(&h.recv(c)),
        Some(ReasonCode::TOPIC_ALIAS_INVALID)
    );
}

#[test]
fn outbound_topic_alias_is_assigned_when_the_client_allows() {
    let mut h = Harness::new();
    let mut c = connect_packet("sub", V5);
    c.properties.topic_alias_maximum = Some(1);
    let (sub, _) = h.connect_with(c);
    h.subscribe(sub, "#", QoS::AtMostOnce);
    let publ = h.connect("pub", V5);
    for topic in ["a", "a", "b"] {
        h.publish(publ, topic, "x", QoS::AtMostOnce, false);
    }
    let got = h.recv(sub);
    let got = publishes(&got);
    assert_eq!(
        (&got[0].topic[..], got[0].properties.topic_alias),
        ("a", Some(1))
    );
    assert_eq!(
        (&got[1].topic[..], got[1].properties.topic_alias),
        ("", Some(1))
    );
    assert_eq!(
        (&got[2].topic[..], got[2].properties.topic_alias),
        ("b", None)
    );
}

#[test]
fn messages_larger_than_the_clients_maximum_packet_size_are_not_sent() {
    let mut h = Harness::new();
    let mut c = connect_packet("sub", V5);
    c.properties.maximum_packet_size = Some(64);
    let (sub, _) = h.connect_with(c);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    let publ = h.connect("pub", V5);
    h.publish(publ, "t", &"x".repeat(100), QoS::AtLeastOnce, false);
    h.publish(publ, "t", "small", QoS::AtLeastOnce, false);
    let got = h.recv(sub);
    let got = publishes(&got);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"small");
    assert_eq!(h.broker.metrics().dropped_too_large, 1);
}

#[test]
fn message_expiry_drops_stale_queued_messages_and_reports_the_remaining_time() {
    let mut h = Harness::new();
    let mut c = connect_packet("sub", V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(1000);
    let (sub, _) = h.connect_with(c.clone());
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.lose(sub);
    let publ = h.connect("pub", V5);
    for (payload, expiry) in [("short", 5), ("long", 100)] {
        let mut p = publish("t", payload, QoS::AtLeastOnce, false, Some(11));
        p.properties.message_expiry_interval = Some(expiry);
        h.send(publ, Packet::Publish(p));
    }
    h.advance(Duration::from_secs(10));
    let (sub, _) = h.connect_with(c);
    let got = h.recv(sub);
    let got = publishes(&got);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"long");
    assert_eq!(got[0].properties.message_expiry_interval, Some(90)); // [MQTT-3.3.2-6]
}

#[test]
fn shared_subscription_delivers_each_message_to_one_member() {
    let mut h = Harness::new();
    let a = h.connect("a", V5);
    let b = h.connect("b", V5);
    h.subscribe(a, "$share/g/s/#", QoS::AtMostOnce);
    h.subscribe(b, "$share/g/s/#", QoS::AtMostOnce);
    let publ = h.connect("pub", V5);
    for i in 0..10 {
        h.publish(publ, "s/x", &i.to_string(), QoS::AtMostOnce, false);
    }
    let (na, nb) = (publishes(&h.recv(a)).len(), publishes(&h.recv(b)).len());
    assert_eq!(na + nb, 10);
    assert_eq!((na, nb), (5, 5), "round robin");
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V4);
    h.subscribe(sub, "#", QoS::AtMostOnce);
    h.subscribe(sub, "+/x", QoS::AtMostOnce);
    let publ = h.connect("pub", V4);
    h.publish(publ, "$data/x", "hidden", QoS::AtMostOnce, false);
    assert!(publishes(&h.recv(sub)).is_empty()); // [MQTT-4.7.2-1]
}

#[test]
fn slow_connection_drops_qos0_and_queues_qos1_until_written() {
    // Without publisher backpressure (tests_throttle.rs has it on).
    let mut config = Config::default();
    config.limits.max_publisher_pause_ms = 0;
    let mut h = Harness::with_config(config);
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    let publ = h.connect("pub", V5);
    let big = "x".repeat(600 * 1024);
    // Do not report writes for the subscriber: drive the broker directly.
    let p = |qos, id| Packet::Publish(publish("t", &big, qos, false, id));
    let now = h.now;
    for i in 0..8 {
        h.broker.handle_packet(
            publ,
            StreamId::CONTROL,
            p(QoS::AtLeastOnce, Some(i + 1)),
            now,
        );
    }
    h.broker
        .handle_packet(publ, StreamId::CONTROL, p(QoS::AtMostOnce, None), now);
    let outputs = h.broker.take_outputs();
    let sent: usize = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Transmit(t) if t.conn == sub => Some(publishes(&t.packets()).len()),
            _ => None,
        })
        .sum();
    assert!(
        sent < 8,
        "a slow connection gets no more than its buffer allows, got {sent}"
    );
    assert_eq!(h.broker.metrics().dropped_qos0, 1);
    // Report everything written: the queue drains.
    h.broker.handle_written(sub, usize::MAX / 2, now);
    let more: usize = h
        .broker
        .take_outputs()
        .iter()
        .filter_map(|o| match o {
            Output::Transmit(t) if t.conn == sub => Some(publishes(&t.packets()).len()),
            _ => None,
        })
        .sum();
    assert!(more > 0);
}

#[test]
fn full_session_queue_drops_the_oldest_messages_and_counts_them() {
    let mut config = Config::default();
    config.limits.max_queued_messages = 2;
    let mut h = Harness::with_config(config);
    let mut c = connect_packet("sub", V4);
    c.clean_start = false;
    let (sub, _) = h.connect_with(c);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.lose(sub);
    let publ = h.connect("pub", V4);
    for i in 0..5 {
        h.publish(publ, "t", &i.to_string(), QoS::AtLeastOnce, false);
    }
    assert_eq!(h.broker.metrics().dropped_queue_full, 3);
    let mut c = connect_packet("sub", V4);
    c.clean_start = false;
    let (sub, _) = h.connect_with(c);
    let got = h.recv(sub);
    let payloads: Vec<&[u8]> = publishes(&got).iter().map(|p| &p.payload[..]).collect();
    assert_eq!(payloads, [b"3", b"4"], "the newest messages are kept");
}

#[test]
fn authentication_method_without_a_hook_is_refused_with_0x8c() {
    let mut h = Harness::new();
    let mut c = connect_packet("c", V5);
    c.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let (conn, ack) = h.connect_with(c);
    assert_eq!(ack.code, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert!(h.closed.contains(&conn));
    assert!(!h.accepted.contains(&conn), "a refusal accepts nothing");
}

struct Challenge;

impl EnhancedAuth for Challenge {
    fn start(&mut self, _: ConnId, _: &str, method: &str, _: Option<&Bytes>) -> AuthOutcome {
        if method == "toy" {
            AuthOutcome::Continue(Bytes::from_static(b"nonce"))
        } else {
            AuthOutcome::Fail(ReasonCode::BAD_AUTHENTICATION_METHOD)
        }
    }
    fn continue_auth(&mut self, _: ConnId, _: &str, data: Option<&Bytes>) -> AuthOutcome {
        if data.map(|d| &d[..]) == Some(b"nonce-signed") {
            AuthOutcome::Success(Some(Bytes::from_static(b"welcome")))
        } else {
            AuthOutcome::Fail(ReasonCode::NOT_AUTHORIZED)
        }
    }
}

#[test]
fn enhanced_authentication_challenge_then_connack() {
    let mut h = Harness::new();
    h.broker.set_enhanced_auth(Box::new(Challenge));
    let conn = h.open();
    let mut c = connect_packet("c", V5);
    c.properties.authentication_method = Some("toy".into());
    h.send(conn, Packet::Connect(Box::new(c)));
    assert!(
        matches!(h.recv(conn).as_slice(), [Packet::Auth(a)] if a.code == ReasonCode::CONTINUE_AUTHENTICATION)
    );
    assert!(
        !h.accepted.contains(&conn),
        "not accepted before the CONNACK"
    );
    let answer = Auth {
        code: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: Properties::from(crate::codec::PropertyValues {
            authentication_method: Some("toy".into()),
            authentication_data: Some(Bytes::from_static(b"nonce-signed")),
            ..Default::default()
        }),
    };
    h.send(conn, Packet::Auth(answer));
    match h.recv(conn).as_slice() {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.code, ReasonCode::SUCCESS);
            assert_eq!(
                ack.properties.authentication_data.as_deref(),
                Some(&b"welcome"[..])
            );
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(h.accepted.contains(&conn), "accepted with the CONNACK");
}

#[test]
fn only_a_successful_connack_accepts_the_connection() {
    let mut h = Harness::new();
    let c = h.connect("c", V4);
    assert!(h.accepted.contains(&c));
    // The same client id again: the new connection is accepted, the old one is taken over.
    let again = h.connect("c", V5);
    assert!(h.accepted.contains(&again));
    // A refused CONNECT (3.1.1: an empty client id without clean session, identifier
    // rejected [MQTT-3.1.3-8]) is not.
    let mut refused = connect_packet("", V4);
    refused.clean_start = false;
    let (conn, ack) = h.connect_with(refused);
    assert_ne!(ack.code, ReasonCode::SUCCESS);
    assert!(!h.accepted.contains(&conn));
}

#[test]
fn packets_from_the_server_side_are_protocol_errors() {
    let mut h = Harness::new();
    let c = h.connect("c", V5);
    h.send(c, Packet::PingResp);
    assert_eq!(
        disconnect_code(&h.recv(c)),
        Some(ReasonCode::PROTOCOL_ERROR)
    );
    assert!(h.closed.contains(&c));
}

#[test]
fn a_bad_client_never_affects_another() {
    let mut h = Harness::new();
    let good = h.connect("good", V5);
    h.subscribe(good, "t", QoS::AtMostOnce);
    let bad = h.connect("bad", V5);
    h.broker
        .handle_decode_error(bad, &DecodeError::Malformed("test"), h.now);
    h.pump();
    assert_eq!(
        disconnect_code(&h.recv(bad)),
        Some(ReasonCode::MALFORMED_PACKET)
    );
    let publ = h.connect("pub", V5);
    h.publish(publ, "t", "still here", QoS::AtMostOnce, false);
    assert_eq!(publishes(&h.recv(good)).len(), 1);
}

#[test]
fn app_handlers_receive_matching_messages_with_the_publisher_id() {
    let mut h = Harness::new();
    h.broker
        .app_subscribe(HandlerId(1), "sensors/#", QoS::AtLeastOnce)
        .unwrap();
    let publ = h.connect("thermo", V5);
    h.publish(publ, "sensors/kitchen", "21.5", QoS::AtLeastOnce, false);
    h.publish(publ, "other", "x", QoS::AtLeastOnce, false);
    assert_eq!(h.app.len(), 1);
    assert_eq!(h.app[0].1.origin.as_deref(), Some("thermo"));
    let reached = h
        .broker
        .app_publish(
            Message {
                topic: ByteString::from("sensors/app"),
                payload: Bytes::new(),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Properties::default(),
                expires_at: None,
                origin: None,
                received_at: None,
                cluster_seq: None,
            },
            h.now,
        )
        .unwrap();
    assert_eq!(reached, 1);
}

#[test]
fn request_response_information_is_answered() {
    let mut h = Harness::new();
    let mut c = connect_packet("rr", V5);
    c.properties.request_response_information = Some(1);
    let (_, ack) = h.connect_with(c);
    assert!(ack.properties.response_information.is_some());
}

// QUIC multi-stream rules (proto-ext/multi-stream.md), driven in memory.

const S4: StreamId = StreamId(4);
const S8: StreamId = StreamId(8);

fn sub_on(h: &mut Harness, conn: ConnId, stream: StreamId, filter: &str, qos: QoS) {
    let options = SubscriptionOptions {
        qos,
        ..Default::default()
    };
    let sub = Subscribe {
        packet_id: 3,
        properties: Properties::default(),
        filters: vec![(filter.into(), options)],
    };
    h.send_on(conn, stream, Packet::Subscribe(sub));
}

#[test]
fn subscription_on_a_data_stream_answers_and_delivers_there() {
    let mut h = Harness::new();
    let c = h.connect("ms", V5);
    h.broker.stream_opened(c, S4);
    sub_on(&mut h, c, S4, "t", QoS::AtLeastOnce);
    assert!(matches!(
        h.recv_streams(c).as_slice(),
        [(S4, Packet::SubAck(_))]
    ));
    let publ = h.connect("pub", V5);
    h.publish(publ, "t", "x", QoS::AtLeastOnce, false);
    let got = h.recv_streams(c);
    assert!(
        matches!(got.as_slice(), [(S4, Packet::Publish(_))]),
        "{got:?}"
    );
    // PINGREQ on a data stream is answered on that stream.
    h.send_on(c, S4, Packet::PingReq);
    assert!(matches!(
        h.recv_streams(c).as_slice(),
        [(S4, Packet::PingResp)]
    ));
}

#[test]
fn the_same_filter_on_two_streams_is_delivered_on_both_and_unsubscribe_is_per_stream() {
    let mut h = Harness::new();
    let c = h.connect("ms", V5);
    h.broker.stream_opened(c, S4);
    h.broker.stream_opened(c, S8);
    sub_on(&mut h, c, S4, "t", QoS::AtMostOnce);
    sub_on(&mut h, c, S8, "t", QoS::AtMostOnce);
    h.recv(c);
    let publ = h.connect("pub", V5);
    h.publish(publ, "t", "x", QoS::AtMostOnce, false);
    let mut streams: Vec<StreamId> = h.recv_streams(c).into_iter().map(|(s, _)| s).collect();
    streams.sort();
    assert_eq!(streams, vec![S4, S8]);

    let unsub = Unsubscribe {
        packet_id: 5,
        properties: Properties::default(),
        filters: vec!["t".into()],
    };
    h.send_on(c, StreamId::CONTROL, Packet::Unsubscribe(unsub.clone()));
    assert!(
        matches!(h.recv(c).as_slice(), [Packet::UnsubAck(a)] if a.codes == [ReasonCode::NO_SUBSCRIPTION_EXISTED])
    );
    h.send_on(c, S4, Packet::Unsubscribe(unsub));
    assert!(
        matches!(h.recv(c).as_slice(), [Packet::UnsubAck(a)] if a.codes == [ReasonCode::SUCCESS])
    );
}

#[test]
fn a_connect_on_a_data_stream_ends_that_stream_only() {
    let mut h = Harness::new();
    let watcher = h.connect("watcher", V5);
    h.subscribe(watcher, "will/#", QoS::AtMostOnce);
    let (c, _) = h.connect_with(with_will("ms", V5, None, None));
    h.broker.stream_opened(c, S4);
    sub_on(&mut h, c, S4, "t", QoS::AtMostOnce);
    h.send_on(c, S4, Packet::Connect(Box::new(connect_packet("x", V5))));
    assert!(h.closed_streams.contains(&(c, S4)));
    assert!(!h.closed.contains(&c));
    assert!(
        publishes(&h.recv(watcher)).is_empty(),
        "a data stream error never publishes the will"
    );
    // Its subscription went with it; the connection still works.
    let publ = h.connect("pub", V5);
    h.publish(publ, "t", "x", QoS::AtMostOnce, false);
    assert!(publishes(&h.recv(c)).is_empty());
    h.send_on(c, StreamId::CONTROL, Packet::PingReq);
    assert!(matches!(
        h.recv(c).as_slice(),
        [Packet::SubAck(_), Packet::PingResp] | [Packet::PingResp]
    ));
}

#[test]
fn a_decode_error_on_a_data_stream_ends_that_stream_only() {
    let mut h = Harness::new();
    let c = h.connect("ms", V5);
    h.broker.stream_opened(c, S4);
    h.broker
        .handle_stream_error(c, S4, &DecodeError::Malformed("test"), h.now);
    h.pump();
    assert!(h.closed_streams.contains(&(c, S4)));
    assert!(!h.closed.contains(&c));
}

#[test]
fn inflight_messages_of_a_closed_stream_continue_on_the_control_stream() {
    let mut h = Harness::new();
    let c = h.connect("ms", V5);
    h.broker.stream_opened(c, S4);
    sub_on(&mut h, c, S4, "t", QoS::AtLeastOnce);
    h.recv(c);
    let publ = h.connect("pub", V5);
    h.publish(publ, "t", "x", QoS::AtLeastOnce, false);
    let first = h.recv_streams(c);
    let id = match first.as_slice() {
        [(S4, Packet::Publish(p))] => p.packet_id.unwrap(),
        other => panic!("{other:?}"),
    };
    h.broker.stream_closed(c, S4, h.now);
    assert!(
        h.closed_streams.contains(&(c, S4)) || {
            h.pump();
            h.closed_streams.contains(&(c, S4))
        },
        "our side is finished too"
    );
    let again = h.recv_streams(c);
    assert!(
        matches!(again.as_slice(), [(StreamId::CONTROL, Packet::Publish(p))] if p.dup && p.packet_id == Some(id))
    );
    h.send(c, Packet::PubAck(Ack::new(id)));
}

#[test]
fn data_stream_subscriptions_survive_connection_loss_and_resume_on_the_control_stream() {
    let mut h = Harness::new();
    let mut connect = connect_packet("ms", V5);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(60);
    let (c, _) = h.connect_with(connect.clone());
    h.broker.stream_opened(c, S4);
    sub_on(&mut h, c, S4, "t", QoS::AtLeastOnce);
    h.lose(c);
    let publ = h.connect("pub", V5);
    h.publish(publ, "t", "offline", QoS::AtLeastOnce, false);
    let (c, ack) = h.connect_with(connect);
    assert!(ack.session_present);
    let got = h.recv_streams(c);
    assert!(
        matches!(got.as_slice(), [(StreamId::CONTROL, Packet::Publish(_))]),
        "{got:?}"
    );
    h.publish(publ, "t", "online", QoS::AtLeastOnce, false);
    let got = h.recv_streams(c);
    assert!(
        matches!(got.as_slice(), [(StreamId::CONTROL, Packet::Publish(_))]),
        "{got:?}"
    );
}

#[test]
fn a_connack_larger_than_the_clients_maximum_packet_size_is_not_sent() {
    let mut h = Harness::new();
    let conn = h.open();
    let mut c = connect_packet("tiny", V5);
    c.properties.maximum_packet_size = Some(2);
    h.send(conn, Packet::Connect(Box::new(c)));
    assert!(h.recv(conn).is_empty()); // [MQTT-3.1.2-24]
    assert!(h.closed.contains(&conn));
}

// QUIC datagrams (proto-ext/datagrams.md).

fn datagram_prop() -> (ByteString, ByteString) {
    ("quic-datagrams".into(), "on".into())
}

fn user_prop<'a>(p: &'a Properties, key: &str) -> Option<&'a str> {
    p.user_properties
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| &v[..])
}

#[test]
fn datagram_opt_in_is_confirmed_in_connack_and_qos0_goes_in_datagrams() {
    let mut h = Harness::new();
    let conn = h.open();
    h.broker.set_quic_caps(
        conn,
        QuicCaps {
            datagram_max: Some(200),
            mqtt_next: false,
        },
    );
    let mut c = connect_packet("dg", V5);
    c.properties.user_properties.push(datagram_prop());
    c.properties.topic_alias_maximum = Some(5);
    h.send(conn, Packet::Connect(Box::new(c)));
    let ack = match h.recv(conn).first() {
        Some(Packet::ConnAck(a)) => a.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(user_prop(&ack.properties, "quic-datagrams"), Some("on"));
    assert_eq!(
        user_prop(&ack.properties, "quic-datagram-max-size"),
        Some("200")
    );
    h.subscribe(conn, "t", QoS::AtLeastOnce);
    let publ = h.connect("pub", V5);
    h.publish(publ, "t", "small", QoS::AtMostOnce, false);
    h.publish(publ, "t", "small again", QoS::AtMostOnce, false);
    h.publish(publ, "t", &"x".repeat(300), QoS::AtMostOnce, false);
    h.publish(publ, "t", "reliable", QoS::AtLeastOnce, false);
    let got = h.recv_streams(conn);
    let streams: Vec<StreamId> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        streams,
        [
            StreamId::DATAGRAM,
            StreamId::DATAGRAM,
            StreamId::CONTROL,
            StreamId::CONTROL
        ]
    );
    for (stream, p) in &got {
        if let (&StreamId::DATAGRAM, Packet::Publish(p)) = (stream, p) {
            assert_eq!(
                (&p.topic[..], p.properties.topic_alias),
                ("t", None),
                "no alias in datagrams"
            );
        }
    }
    assert_eq!(h.broker.metrics().datagrams_sent, 2);
}

#[test]
fn datagrams_requested_without_quic_support_are_reported_off() {
    let mut h = Harness::new();
    let mut c = connect_packet("tcp", V5);
    c.properties.user_properties.push(datagram_prop());
    let (_, ack) = h.connect_with(c);
    assert_eq!(user_prop(&ack.properties, "quic-datagrams"), Some("off"));
}

#[test]
fn a_subscription_can_ask_for_datagrams_on_its_own() {
    let mut h = Harness::new();
    let conn = h.open();
    h.broker.set_quic_caps(
        conn,
        QuicCaps {
            datagram_max: Some(1200),
            mqtt_next: false,
        },
    );
    h.send(conn, Packet::Connect(Box::new(connect_packet("dg", V5))));
    h.recv(conn);
    let props = Properties::from(crate::codec::PropertyValues {
        user_properties: vec![datagram_prop()],
        ..Default::default()
    });
    h.subscribe_with(conn, "fast/#", SubscriptionOptions::default(), props);
    h.subscribe(conn, "slow/#", QoS::AtMostOnce);
    let publ = h.connect("pub", V5);
    h.publish(publ, "fast/1", "x", QoS::AtMostOnce, false);
    h.publish(publ, "slow/1", "x", QoS::AtMostOnce, false);
    let streams: Vec<StreamId> = h.recv_streams(conn).into_iter().map(|(s, _)| s).collect();
    assert_eq!(streams, [StreamId::DATAGRAM, StreamId::CONTROL]);
}

#[test]
fn datagrams_from_clients_are_qos0_publish_only_and_never_fatal() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "d", QoS::AtMostOnce);
    let early = h.open();
    h.broker.handle_packet(
        early,
        StreamId::DATAGRAM,
        Packet::Publish(publish("d", "early", QoS::AtMostOnce, false, None)),
        h.now,
    );
    let c = h.connect("dg", V5);
    let dg = |h: &mut Harness, p: Packet| {
        h.broker.handle_packet(c, StreamId::DATAGRAM, p, h.now);
        h.pump();
    };
    dg(
        &mut h,
        Packet::Publish(publish("d", "ok", QoS::AtMostOnce, false, None)),
    );
    dg(
        &mut h,
        Packet::Publish(publish("d", "qos1", QoS::AtLeastOnce, false, Some(1))),
    );
    let mut aliased = publish("d", "alias", QoS::AtMostOnce, false, None);
    aliased.properties.topic_alias = Some(1);
    dg(&mut h, Packet::Publish(aliased));
    dg(&mut h, Packet::PingReq);
    h.broker.datagram_malformed(c);
    assert!(!h.closed.contains(&c) && !h.closed.contains(&early));
    let got = h.recv(sub);
    assert_eq!(
        publishes(&got)
            .iter()
            .map(|p| &p.payload[..])
            .collect::<Vec<_>>(),
        [&b"ok"[..]]
    );
    let m = h.broker.metrics();
    assert_eq!((m.datagrams_received, m.datagrams_dropped), (1, 5));
    assert!(h.recv(c).is_empty(), "nothing answers a datagram");
}

// Topic-to-stream mapping (proto-ext/flows.md).

fn quic_connect(
    h: &mut Harness,
    id: &str,
    caps: QuicCaps,
    mapping: Option<&str>,
) -> (ConnId, ConnAck) {
    let conn = h.open();
    h.broker.set_quic_caps(conn, caps);
    let mut c = connect_packet(id, V5);
    c.properties.topic_alias_maximum = Some(10);
    if let Some(m) = mapping {
        c.properties
            .user_properties
            .push(("quic-stream-mapping".into(), m.into()));
    }
    h.send(conn, Packet::Connect(Box::new(c)));
    match h.recv(conn).first() {
        Some(Packet::ConnAck(a)) => (conn, a.clone()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn mqtt_next_clients_get_one_server_stream_per_subscription() {
    let mut h = Harness::new();
    let next = QuicCaps {
        datagram_max: None,
        mqtt_next: true,
    };
    let (c, ack) = quic_connect(&mut h, "flows", next, None);
    assert_eq!(
        user_prop(&ack.properties, "quic-stream-mapping"),
        Some("subscription")
    );
    let prio = |p: &str| {
        Properties::from(crate::codec::PropertyValues {
            user_properties: vec![("quic-priority".into(), p.into())],
            ..Default::default()
        })
    };
    h.subscribe_with(
        c,
        "a/#",
        SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..Default::default()
        },
        prio("7"),
    );
    h.subscribe(c, "b/#", QoS::AtMostOnce);
    let publ = h.connect("pub", V5);
    for topic in ["a/1", "b/1", "a/2", "a/1"] {
        h.publish(publ, topic, "x", QoS::AtLeastOnce, false);
    }
    let got = h.recv_streams(c);
    let streams: Vec<StreamId> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(streams.len(), 4);
    assert!(streams.iter().all(|s| *s != StreamId::CONTROL));
    assert_eq!(streams[0], streams[2]);
    assert_eq!(streams[0], streams[3]);
    assert_ne!(streams[0], streams[1]);
    for (_, p) in &got {
        if let Packet::Publish(p) = p {
            assert_eq!(p.properties.topic_alias, None, "no aliases across streams");
            assert!(!p.topic.is_empty());
        }
    }
    let opens: Vec<_> = h
        .flows
        .iter()
        .filter(|(conn, _)| *conn == c)
        .map(|(_, e)| e.clone())
        .collect();
    assert!(matches!(
        &opens[..],
        [
            FlowEvent::Open {
                flow_id: 1,
                priority: 7,
                ..
            },
            FlowEvent::Open {
                flow_id: 3,
                priority: 0,
                ..
            }
        ]
    ));
    // Acknowledgements come back on the control stream.
    for (_, p) in got {
        if let Packet::Publish(Publish {
            packet_id: Some(id),
            ..
        }) = p
        {
            h.send(c, Packet::PubAck(Ack::new(id)));
        }
    }
    assert!(!h.closed.contains(&c));
}

#[test]
fn per_topic_mapping_and_opt_out() {
    let mut h = Harness::new();
    let plain = QuicCaps {
        datagram_max: None,
        mqtt_next: false,
    };
    let (c, ack) = quic_connect(&mut h, "topics", plain, Some("topic"));
    assert_eq!(
        user_prop(&ack.properties, "quic-stream-mapping"),
        Some("topic")
    );
    h.subscribe(c, "t/#", QoS::AtMostOnce);
    let publ = h.connect("pub", V5);
    for topic in ["t/1", "t/2", "t/1"] {
        h.publish(publ, topic, "x", QoS::AtMostOnce, false);
    }
    let streams: Vec<StreamId> = h.recv_streams(c).into_iter().map(|(s, _)| s).collect();
    assert_eq!(streams[0], streams[2]);
    assert_ne!(streams[0], streams[1]);

    let next = QuicCaps {
        datagram_max: None,
        mqtt_next: true,
    };
    let (off, ack) = quic_connect(&mut h, "off", next, Some("off"));
    assert_eq!(
        user_prop(&ack.properties, "quic-stream-mapping"),
        Some("off")
    );
    h.subscribe(off, "t/#", QoS::AtMostOnce);
    h.publish(publ, "t/3", "x", QoS::AtMostOnce, false);
    assert!(h
        .recv_streams(off)
        .iter()
        .all(|(s, _)| *s == StreamId::CONTROL));

    // Over TCP the property is answered with off and changes nothing.
    let mut tcp = connect_packet("tcp", V5);
    tcp.properties
        .user_properties
        .push(("quic-stream-mapping".into(), "topic".into()));
    let (_, ack) = h.connect_with(tcp);
    assert_eq!(
        user_prop(&ack.properties, "quic-stream-mapping"),
        Some("off")
    );
}
#[path = "tests_access.rs"]
mod access;
#[path = "tests_transport_events.rs"]
mod transport_events;

#[path = "tests_fuzz.rs"]
mod tests_fuzz;

#[path = "tests_limits.rs"]
mod tests_limits;

#[path = "tests_throttle.rs"]
mod tests_throttle;

#[path = "tests_ops.rs"]
mod tests_ops;

#[path = "tests_cluster.rs"]
mod tests_cluster;

#[path = "tests_cluster_wills.rs"]
mod tests_cluster_wills;

#[path = "tests_cluster_session.rs"]
mod tests_cluster_session;

#[path = "tests_cluster_shared.rs"]
mod tests_cluster_shared;
