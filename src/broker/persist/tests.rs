//! Persistence in memory: record encoding, change sets applied to a map standing in for the
//! store, and recovery into a second broker as after a restart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::record::*;
use super::*;
use crate::broker::Settings;
use crate::broker::{ConnId, Message, Output};
use crate::codec::*;

/// The store's three tables, applying [`StoreOp`]s as `store::Store::apply` does.
#[derive(Default, Clone)]
struct FakeStore {
    sessions: BTreeMap<String, Vec<u8>>,
    deliveries: BTreeMap<(String, u64), Vec<u8>>,
    retained: BTreeMap<String, Vec<u8>>,
}

impl FakeStore {
    fn apply(&mut self, ops: ChangeSet) {
        for op in ops {
            match op {
                StoreOp::PutSession { client_id, record } => {
                    self.sessions.insert(client_id.to_string(), record);
                }
                StoreOp::DeleteSession { client_id } => {
                    self.sessions.remove(&*client_id);
                    self.deliveries.retain(|(c, _), _| c != &*client_id);
                }
                StoreOp::PutDelivery {
                    client_id,
                    seq,
                    record,
                } => {
                    self.deliveries.insert((client_id.to_string(), seq), record);
                }
                StoreOp::DeleteDelivery { client_id, seq } => {
                    self.deliveries.remove(&(client_id.to_string(), seq));
                }
                StoreOp::PutRetained { topic, record } => {
                    self.retained.insert(topic.to_string(), record);
                }
                StoreOp::DeleteRetained { topic } => {
                    self.retained.remove(&*topic);
                }
            }
        }
    }

    fn loaded(&self) -> Loaded {
        Loaded {
            sessions: self.sessions.clone().into_iter().collect(),
            deliveries: self
                .deliveries
                .clone()
                .into_iter()
                .map(|((c, s), v)| (c, s, v))
                .collect(),
            retained: self.retained.clone().into_iter().collect(),
        }
    }
}

/// A broker with persistence on; every step's changes go to `store`.
struct Node {
    broker: Broker,
    now: Instant,
    wall: SystemTime,
    store: FakeStore,
    next_conn: u64,
    inbox: BTreeMap<u64, Vec<Packet>>,
}

impl Node {
    fn new() -> Node {
        let mut broker = Broker::new(Settings::default());
        broker.enable_persistence();
        Node {
            broker,
            now: Instant::now(),
            wall: SystemTime::now(),
            store: FakeStore::default(),
            next_conn: 1,
            inbox: BTreeMap::new(),
        }
    }

    /// A new broker on `store` after `gap` of downtime, as after a restart.
    fn restart(store: FakeStore, wall: SystemTime, gap: Duration) -> (Node, RestoreReport) {
        let mut node = Node::new();
        node.broker = Broker::new(Settings::default());
        node.wall = wall + gap;
        node.next_conn = 100;
        let report = node.broker.restore(store.loaded(), node.now, node.wall);
        node.store = store;
        node.flush();
        (node, report)
    }

    fn flush(&mut self) {
        let ops = self.broker.take_changes(self.now, self.wall);
        self.store.apply(ops);
        for output in self.broker.take_outputs() {
            if let Output::Transmit(t) = output {
                let packets = t.packets();
                let bytes: usize = packets
                    .iter()
                    .map(|p| crate::broker::accounted_size(p, t.version))
                    .sum();
                self.broker.handle_written(t.conn, bytes, self.now);
                self.inbox.entry(t.conn.0).or_default().extend(packets);
            }
        }
    }

    fn send(&mut self, conn: ConnId, p: Packet) {
        self.broker
            .handle_packet(conn, StreamId::CONTROL, p, self.now);
        self.flush();
    }

    fn recv(&mut self, conn: ConnId) -> Vec<Packet> {
        self.inbox.remove(&conn.0).unwrap_or_default()
    }

    fn connect(&mut self, c: Connect) -> (ConnId, bool) {
        self.connect_as(c, None)
    }

    /// CONNECT after the transport's login verdict for `username`.
    fn connect_as(&mut self, c: Connect, username: Option<&str>) -> (ConnId, bool) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.broker.connection_opened(conn, "test".into(), self.now);
        self.broker.set_login(
            conn,
            crate::auth::Login::Accepted {
                username: username.map(Into::into),
            },
        );
        self.send(conn, Packet::Connect(Box::new(c)));
        let got = self.recv(conn);
        match got.first() {
            Some(Packet::ConnAck(ack)) => {
                assert_eq!(ack.code, ReasonCode::SUCCESS);
                self.inbox.insert(conn.0, got[1..].to_vec());
                (conn, ack.session_present)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn subscribe(&mut self, conn: ConnId, filter: &str, qos: QoS) {
        let sub = Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![(
                filter.into(),
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            )],
        };
        self.send(conn, Packet::Subscribe(sub));
        self.recv(conn);
    }

    fn lose(&mut self, conn: ConnId) {
        self.broker.connection_lost(conn, self.now);
        self.flush();
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.wall += d;
        self.broker.handle_timeout(self.now);
        self.flush();
    }
}

fn persistent(client_id: &str, expiry: u32) -> Connect {
    Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 0,
        properties: crate::codec::PropertyValues {
            session_expiry_interval: Some(expiry),
            ..Default::default()
        }
        .into(),
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    }
}

fn clean(client_id: &str) -> Connect {
    Connect {
        clean_start: true,
        properties: Properties::default(),
        ..persistent(client_id, 0)
    }
}

fn publish(topic: &str, payload: &str, qos: QoS, retain: bool, id: Option<u16>) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: topic.into(),
        packet_id: id,
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    })
}

fn publishes(packets: &[Packet]) -> Vec<(bool, Option<u16>, String)> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((
                p.dup,
                p.packet_id,
                String::from_utf8_lossy(&p.payload).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

fn sample_message() -> Message {
    Message {
        topic: "a/b".into(),
        payload: Bytes::from_static(b"\x00payload\xff"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: crate::codec::PropertyValues {
            payload_format_indicator: Some(1),
            content_type: Some("text/plain".into()),
            response_topic: Some("r/t".into()),
            correlation_data: Some(Bytes::from_static(b"corr")),
            user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
            ..Default::default()
        }
        .into(),
        expires_at: None,
        origin: Some("pub".into()),
        received_at: None,
        cluster_seq: None,
    }
}

fn sample_records() -> (SessionRecord, DeliveryRecord, StoredMessage) {
    let message = StoredMessage {
        message: sample_message(),
        expires_at_ms: Some(1_700_000_000_123),
    };
    let session = SessionRecord {
        version: ProtocolVersion::V5,
        expiry_secs: 3600,
        expires_at_ms: Some(1_700_000_360_000),
        subscriptions: vec![(
            "$share/g/a/+".into(),
            crate::broker::session::SubEntry {
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: 2,
                },
                id: Some(268_435_455),
                stream: StreamId(4),
                datagram: true,
                priority: -3,
            },
        )],
        incoming_qos2: vec![(StreamId::CONTROL, 9), (StreamId(8), 65535)],
        released: vec![(3, StreamId(4))],
        will: Some(WillRecord {
            message: message.clone(),
            delay_secs: 30,
            publish_at_ms: Some(1_700_000_030_000),
        }),
        username: Some("alice".into()),
    };
    let delivery = DeliveryRecord {
        packet_id: Some(17),
        qos: QoS::AtLeastOnce,
        retain: false,
        sub_ids: vec![1, 2],
        stream: StreamId(4),
        datagram: false,
        flow: Some("a/+".into()),
        priority: 7,
        message: message.clone(),
    };
    (session, delivery, message)
}

#[test]
fn records_round_trip() {
    let (session, delivery, message) = sample_records();
    assert_eq!(decode_session(&encode_session(&session)), Ok(session));
    assert_eq!(decode_delivery(&encode_delivery(&delivery)), Ok(delivery));
    assert_eq!(decode_retained(&encode_retained(&message)), Ok(message));
}

#[test]
fn damaged_records_are_errors_never_panics() {
    let (session, delivery, message) = sample_records();
    let records = [
        encode_session(&session),
        encode_delivery(&delivery),
        encode_retained(&message),
    ];
    for bytes in &records {
        for cut in 0..bytes.len() {
            assert!(decode_session(&bytes[..cut]).is_err());
            assert!(decode_delivery(&bytes[..cut]).is_err());
            assert!(decode_retained(&bytes[..cut]).is_err());
        }
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[i] ^= flip;
                let _ = decode_session(&damaged);
                let _ = decode_delivery(&damaged);
                let _ = decode_retained(&damaged);
            }
        }
    }
    // Format 1 had no user name after the will.
    let mut v1 = session.clone();
    v1.username = None;
    let mut v1_bytes = encode_session(&v1);
    v1_bytes.pop();
    v1_bytes[0] = 1;
    assert_eq!(decode_session(&v1_bytes), Ok(v1));
    let mut other_version = records[0].clone();
    other_version[0] = FORMAT + 1;
    assert_eq!(
        decode_session(&other_version),
        Err(RecordError::Version(FORMAT + 1))
    );
    assert!(matches!(
        decode_delivery(&records[0]),
        Err(RecordError::Kind { .. })
    ));
    let mut longer = records[2].clone();
    longer.push(0);
    assert_eq!(decode_retained(&longer), Err(RecordError::Trailing(1)));
}

#[test]
fn wall_clock_deadlines_survive_the_conversion() {
    let now = Instant::now();
    let clock = WallClock {
        now,
        unix_ms: 1_000_000,
    };
    let later = now + Duration::from_millis(2500);
    assert_eq!(clock.to_unix_ms(later), 1_002_500);
    assert_eq!(clock.to_instant(1_002_500), later);
    assert_eq!(clock.to_unix_ms(now - Duration::from_secs(1)), 999_000);
    assert_eq!(clock.to_instant(10), now, "a deadline already past is now");
}

#[test]
fn clean_sessions_write_nothing_and_persistent_ones_are_stored_and_removed() {
    let mut n = Node::new();
    let (publ, _) = n.connect(clean("pub"));
    let (sub, _) = n.connect(clean("sub"));
    n.subscribe(sub, "t", QoS::AtLeastOnce);
    n.send(publ, publish("t", "x", QoS::AtLeastOnce, false, Some(1)));
    assert!(n.store.sessions.is_empty() && n.store.deliveries.is_empty());
    assert!(n.broker.take_changes(n.now, n.wall).is_empty());

    let (p, _) = n.connect(persistent("p", 60));
    n.subscribe(p, "t", QoS::AtLeastOnce);
    assert!(n.store.sessions.contains_key("p"));
    n.send(publ, publish("t", "y", QoS::AtLeastOnce, false, Some(2)));
    assert_eq!(n.store.deliveries.len(), 1, "inflight to p");
    let id = publishes(&n.recv(p))[0].1.unwrap();
    n.send(p, Packet::PubAck(Ack::new(id)));
    assert!(n.store.deliveries.is_empty(), "acknowledged: deleted");
    n.lose(p);
    n.advance(Duration::from_secs(61));
    assert!(n.store.sessions.is_empty(), "expired: deleted");
}

#[test]
fn restart_restores_sessions_queues_inflight_qos2_state_retained_and_wills() {
    let mut n = Node::new();
    let (publ, _) = n.connect(clean("pub"));
    let (sub, _) = n.connect_as(persistent("sub", 3600), Some("alice"));
    n.subscribe(sub, "t/#", QoS::ExactlyOnce);
    n.send(publ, publish("t/1", "q1", QoS::AtLeastOnce, false, Some(1)));
    n.send(publ, publish("t/2", "q2", QoS::ExactlyOnce, false, Some(2)));
    let got = publishes(&n.recv(sub));
    assert_eq!(got.len(), 2);
    let q2_id = got[1].1.unwrap();
    // The QoS 2 delivery is past PUBREC: the broker owes PUBREL.
    n.send(sub, Packet::PubRec(Ack::new(q2_id)));
    n.recv(sub);
    n.send(publ, publish("r/x", "kept", QoS::AtMostOnce, true, None));
    n.lose(sub);
    n.send(
        publ,
        publish("t/3", "queued", QoS::AtLeastOnce, false, Some(3)),
    );
    // A persistent QoS 2 publisher with a PUBLISH awaiting PUBREL.
    let (p2, _) = n.connect(persistent("p2", 3600));
    n.send(p2, publish("t/4", "once", QoS::ExactlyOnce, false, Some(9)));
    // A will delayed 30 s on a session that lost its connection 10 s before the stop.
    let mut w = persistent("w", 600);
    w.will = Some(Will {
        topic: "will/w".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: crate::codec::PropertyValues {
            will_delay_interval: Some(30),
            ..Default::default()
        }
        .into(),
    });
    let (wc, _) = n.connect(w);
    n.lose(wc);
    n.advance(Duration::from_secs(10));

    // Stop (the broker is dropped, as by kill -9) and start again 5 s later.
    let (mut m, report) = Node::restart(n.store.clone(), n.wall, Duration::from_secs(5));
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!((report.sessions, report.retained), (3, 1));
    assert_eq!(report.deliveries, 3, "t/1 inflight, t/3 queued, t/4 queued");
    let sid = m.broker.client_ids["sub"];
    assert_eq!(
        m.broker.sessions.get(&sid).unwrap().username.as_deref(),
        Some("alice"),
        "the ACL identity of the offline session"
    );

    let (watcher, _) = m.connect(clean("watcher"));
    m.subscribe(watcher, "will/#", QoS::AtLeastOnce);
    let (sub, present) = m.connect(persistent("sub", 3600));
    assert!(present);
    let got = m.recv(sub);
    let pubs = publishes(&got);
    assert_eq!(
        pubs[0],
        (true, Some(1), "q1".into()),
        "inflight, resent with DUP"
    );
    assert!(
        got.iter()
            .any(|p| matches!(p, Packet::PubRel(a) if a.packet_id == q2_id)),
        "PUBREL resent: {got:?}"
    );
    let payloads: Vec<_> = pubs.iter().map(|p| p.2.as_str()).collect();
    assert_eq!(payloads, ["q1", "queued", "once"]);

    // The QoS 2 publisher retransmits: not delivered again, then PUBREL completes it.
    let (p2, present) = m.connect(persistent("p2", 3600));
    assert!(present);
    let mut dup = publish("t/4", "once", QoS::ExactlyOnce, false, Some(9));
    if let Packet::Publish(p) = &mut dup {
        p.dup = true;
    }
    m.send(p2, dup);
    assert!(matches!(m.recv(p2)[..], [Packet::PubRec(_)]));
    assert!(publishes(&m.recv(sub)).is_empty(), "exactly once");
    m.send(p2, Packet::PubRel(Ack::new(9)));
    assert!(matches!(m.recv(p2)[..], [Packet::PubComp(_)]));

    assert_eq!(m.broker.retained_count(), 1);
    // The will: 30 s delay, 10 s had passed before the stop, the 5 s downtime counts too.
    m.advance(Duration::from_secs(14));
    assert!(publishes(&m.recv(watcher)).is_empty());
    m.advance(Duration::from_secs(2));
    assert_eq!(publishes(&m.recv(watcher))[0].2, "gone");
}

#[test]
fn retained_messages_survive_and_clearing_removes_them() {
    let mut n = Node::new();
    let (publ, _) = n.connect(clean("pub"));
    n.send(publ, publish("r/a", "A", QoS::AtMostOnce, true, None));
    n.send(publ, publish("r/b", "B", QoS::AtLeastOnce, true, Some(1)));
    n.send(publ, publish("r/a", "", QoS::AtMostOnce, true, None));
    let (mut m, report) = Node::restart(n.store.clone(), n.wall, Duration::from_secs(1));
    assert_eq!(report.retained, 1);
    let (sub, _) = m.connect(clean("s"));
    let sub_packet = Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![("r/#".into(), SubscriptionOptions::default())],
    };
    m.send(sub, Packet::Subscribe(sub_packet));
    let got = publishes(&m.recv(sub));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].2, "B");
}

#[test]
fn undecodable_records_are_reported_with_their_key_and_skipped() {
    let mut n = Node::new();
    let (publ, _) = n.connect(clean("pub"));
    let (a, _) = n.connect(persistent("a", 60));
    n.subscribe(a, "t", QoS::AtLeastOnce);
    n.lose(a);
    n.send(publ, publish("t", "m", QoS::AtLeastOnce, false, Some(1)));
    let mut store = n.store.clone();
    store.sessions.insert("broken".into(), vec![FORMAT, 1, 4]);
    store.deliveries.insert(("orphan".into(), 1), vec![0xff]);
    store.retained.insert("bad".into(), vec![]);
    let (mut m, report) = Node::restart(store, n.wall, Duration::from_secs(1));
    assert_eq!(report.sessions, 1);
    assert_eq!(report.deliveries, 1);
    assert_eq!(report.skipped.len(), 3, "{:?}", report.skipped);
    assert!(report.skipped.iter().any(|s| s.contains("\"broken\"")));
    assert!(report.skipped.iter().any(|s| s.contains("\"orphan\"/1")));
    let (a, present) = m.connect(persistent("a", 60));
    assert!(present);
    assert_eq!(publishes(&m.recv(a))[0].2, "m");
}

#[test]
fn a_session_connected_at_the_crash_gets_its_will_and_expiry_from_the_restart() {
    let mut n = Node::new();
    let mut c = persistent("w", 20);
    c.will = Some(Will {
        topic: "will/w".into(),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: Properties::default(),
    });
    n.connect(c);
    // Crash while connected: no DISCONNECT, no connection loss seen.
    let (mut m, report) = Node::restart(n.store.clone(), n.wall, Duration::from_secs(3));
    assert_eq!(report.sessions, 1);
    m.advance(Duration::from_millis(1));
    // Will Delay 0: published (retained) at once; the session lives on for 20 s.
    assert!(m.store.retained.contains_key("will/w"));
    assert!(m.store.sessions.contains_key("w"));
    m.advance(Duration::from_secs(21));
    assert!(!m.store.sessions.contains_key("w"));
}

#[test]
fn assigned_client_ids_never_reuse_a_restored_session() {
    let mut n = Node::new();
    let mut c = persistent("", 600);
    c.clean_start = true;
    let conn = ConnId(n.next_conn);
    let (first, _) = n.connect(c.clone());
    assert_eq!(first, conn);
    let first_id = n.broker.client_ids.keys().next().unwrap().clone();
    let (mut m, report) = Node::restart(n.store.clone(), n.wall, Duration::from_secs(1));
    assert_eq!(report.sessions, 1);
    // The restarted broker counts connections from the same number again.
    m.next_conn = conn.0;
    m.connect(c);
    assert_eq!(m.broker.client_ids.len(), 2, "a new id, not {first_id}");
}
