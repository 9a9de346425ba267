//! Limits against abuse (`limits.rs`, `config/sections/limits.rs`): each limit, what is refused
//! with which code, and that the rest goes on.

use super::*;

fn limited(f: impl FnOnce(&mut crate::config::Limits)) -> Harness {
    let mut config = Config::default();
    f(&mut config.limits);
    Harness::with_config(config)
}

/// Opens a connection from `peer` (a transport label with an address).
fn open_from(h: &mut Harness, peer: &str) -> ConnId {
    let conn = ConnId(h.next_conn);
    h.next_conn += 1;
    h.broker.connection_opened(conn, peer.into(), h.now);
    h.pump();
    conn
}

/// Sends CONNECT on `conn` and returns the CONNACK code.
fn connack(h: &mut Harness, conn: ConnId, client_id: &str, version: ProtocolVersion) -> ReasonCode {
    h.send(
        conn,
        Packet::Connect(Box::new(connect_packet(client_id, version))),
    );
    match h.recv(conn).first() {
        Some(Packet::ConnAck(ack)) => ack.code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[test]
fn connections_beyond_max_connections_get_connack_quota_exceeded() {
    let mut h = limited(|l| l.max_connections = 2);
    let a = h.connect("a", V5);
    let _b = h.connect("b", V4);
    let c = h.open();
    assert_eq!(connack(&mut h, c, "c", V5), ReasonCode::QUOTA_EXCEEDED);
    assert!(h.closed.contains(&c));
    // 3.1.1 gets the same refusal, encoded as return code 3 (server unavailable), which is
    // what a 3.1.1 client reads back.
    let d = h.open();
    assert_eq!(connack(&mut h, d, "d", V4), ReasonCode::SERVER_UNAVAILABLE);
    let mut bytes = bytes::BytesMut::new();
    encode(
        &Packet::ConnAck(ConnAck {
            session_present: false,
            code: ReasonCode::QUOTA_EXCEEDED,
            properties: Properties::default(),
        }),
        V4,
        &mut bytes,
    );
    assert_eq!(&bytes[..], &[0x20, 0x02, 0x00, 0x03]);
    assert_eq!(h.broker.metrics().connections_refused, 2);
    // A slot frees up when a connection ends.
    h.lose(a);
    let e = h.open();
    assert_eq!(connack(&mut h, e, "e", V5), ReasonCode::SUCCESS);
    assert_eq!(h.broker.check_invariants(), Ok(()));
}

#[test]
fn connections_beyond_the_per_address_limit_are_refused_others_are_not() {
    let mut h = limited(|l| l.max_connections_per_address = 2);
    let a1 = open_from(&mut h, "tcp:10.0.0.1:1000");
    let a2 = open_from(&mut h, "quic:10.0.0.1:1001");
    let a3 = open_from(&mut h, "mqtts:10.0.0.1:1002");
    let b1 = open_from(&mut h, "tcp:10.0.0.2:1000");
    let v6 = open_from(&mut h, "quic:[::1]:1000");
    assert_eq!(connack(&mut h, a1, "a1", V5), ReasonCode::SUCCESS);
    assert_eq!(connack(&mut h, a2, "a2", V5), ReasonCode::SUCCESS);
    assert_eq!(connack(&mut h, a3, "a3", V5), ReasonCode::QUOTA_EXCEEDED);
    assert_eq!(connack(&mut h, b1, "b1", V5), ReasonCode::SUCCESS);
    assert_eq!(connack(&mut h, v6, "v6", V5), ReasonCode::SUCCESS);
    // Connections that do not (yet) send CONNECT count too, until the CONNECT timeout.
    h.lose(a1);
    let idle = open_from(&mut h, "tcp:10.0.0.1:1003");
    let a4 = open_from(&mut h, "tcp:10.0.0.1:1004");
    assert_eq!(connack(&mut h, a4, "a4", V5), ReasonCode::QUOTA_EXCEEDED);
    h.advance(Duration::from_secs(11));
    assert!(h.closed.contains(&idle));
    let a5 = open_from(&mut h, "tcp:10.0.0.1:1005");
    assert_eq!(connack(&mut h, a5, "a5", V5), ReasonCode::SUCCESS);
    assert_eq!(h.broker.check_invariants(), Ok(()));
}

#[test]
fn a_flood_of_refused_connections_is_bounded() {
    let mut h = limited(|l| l.max_connections = 1);
    let _first = h.open();
    let refused: Vec<ConnId> = (0..limits::MAX_REFUSED_PENDING + 10)
        .map(|_| h.open())
        .collect();
    h.pump();
    // Beyond the pending bound they are closed at once, without waiting for CONNECT.
    let closed_at_once = refused.iter().filter(|c| h.closed.contains(c)).count();
    assert_eq!(closed_at_once, 10);
    let m = h.broker.metrics();
    assert_eq!(m.connections as usize, 1 + limits::MAX_REFUSED_PENDING);
    assert_eq!(
        m.connections_refused as usize,
        limits::MAX_REFUSED_PENDING + 10
    );
    // The CONNECT timeout clears them all.
    h.advance(Duration::from_secs(11));
    assert_eq!(h.broker.metrics().connections, 0);
    assert_eq!(h.broker.check_invariants(), Ok(()));
}

#[test]
fn a_new_session_beyond_max_sessions_is_refused_existing_ones_resume() {
    let mut h = limited(|l| l.max_sessions = 2);
    let mut keep = connect_packet("kept", V5);
    keep.clean_start = false;
    keep.properties.session_expiry_interval = Some(600);
    let (kept, ack) = h.connect_with(keep.clone());
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    h.lose(kept); // the session stays
    let _b = h.connect("b", V5);
    let c = h.open();
    assert_eq!(connack(&mut h, c, "c", V5), ReasonCode::QUOTA_EXCEEDED);
    assert_eq!(h.broker.metrics().sessions_refused, 1);
    let (_, ack) = h.connect_with(keep);
    assert_eq!((ack.code, ack.session_present), (ReasonCode::SUCCESS, true));
    assert_eq!(h.broker.check_invariants(), Ok(()));
}

#[test]
fn subscriptions_beyond_max_subscriptions_get_suback_quota_exceeded() {
    let mut h = limited(|l| l.max_subscriptions = 2);
    let conn = h.connect("s", V5);
    assert_eq!(h.subscribe(conn, "a", QoS::AtLeastOnce), [ReasonCode(1)]);
    assert_eq!(h.subscribe(conn, "b", QoS::AtMostOnce), [ReasonCode(0)]);
    assert_eq!(
        h.subscribe(conn, "c", QoS::AtMostOnce),
        [ReasonCode::QUOTA_EXCEEDED]
    );
    // Replacing an existing subscription is not a new one.
    assert_eq!(h.subscribe(conn, "a", QoS::AtMostOnce), [ReasonCode(0)]);
    h.send(
        conn,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 3,
            properties: Properties::default(),
            filters: vec!["b".into()],
        }),
    );
    h.recv(conn);
    assert_eq!(h.subscribe(conn, "c", QoS::AtMostOnce), [ReasonCode(0)]);
    assert!(!h.closed.contains(&conn));
    assert_eq!(h.broker.metrics().subscriptions_refused, 1);
    // 3.1.1: the failure return code 0x80.
    let old = h.connect("old", V4);
    h.subscribe(old, "x", QoS::AtMostOnce);
    h.subscribe(old, "y", QoS::AtMostOnce);
    assert_eq!(
        h.subscribe(old, "z", QoS::AtMostOnce),
        [ReasonCode::UNSPECIFIED_ERROR]
    );
    let mut bytes = bytes::BytesMut::new();
    let suback = SubAck {
        packet_id: 7,
        properties: Properties::default(),
        codes: vec![ReasonCode::QUOTA_EXCEEDED],
    };
    encode(&Packet::SubAck(suback), V4, &mut bytes);
    assert_eq!(&bytes[..], &[0x90, 0x03, 0x00, 0x07, 0x80]);
    assert_eq!(h.broker.check_invariants(), Ok(()));
}

#[test]
fn the_session_queue_is_bounded_in_bytes_dropping_the_oldest() {
    let mut h = limited(|l| l.max_queued_bytes = 100);
    let mut c = connect_packet("slow", V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(600);
    let (sub, _) = h.connect_with(c.clone());
    h.subscribe(sub, "q", QoS::AtLeastOnce);
    h.lose(sub);
    let publisher = h.connect("p", V5);
    for i in 0..5 {
        // 30 bytes of payload + 1 of topic each: three fit in 100 bytes.
        h.publish(
            publisher,
            "q",
            &format!("{i}{}", "x".repeat(29)),
            QoS::AtLeastOnce,
            false,
        );
    }
    // One message larger than the whole queue is not queued at all.
    h.publish(publisher, "q", &"y".repeat(200), QoS::AtLeastOnce, false);
    assert_eq!(h.broker.metrics().dropped_queue_full, 3);
    assert_eq!(h.broker.check_invariants(), Ok(()));
    let (sub, _) = h.connect_with(c);
    let got: Vec<String> = publishes(&h.recv(sub))
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload[..1]).into_owned())
        .collect();
    assert_eq!(got, ["2", "3", "4"], "the newest three, in order");
}

#[test]
fn the_retained_store_is_bounded_and_never_serves_a_stale_value() {
    let mut h = limited(|l| {
        l.max_retained_messages = 2;
        l.max_retained_bytes = 400;
    });
    let publisher = h.connect("p", V5);
    let sub = h.connect("s", V5);
    h.subscribe(sub, "r/#", QoS::AtMostOnce);
    h.publish(publisher, "r/a", "1", QoS::AtMostOnce, true);
    h.publish(publisher, "r/b", "2", QoS::AtMostOnce, true);
    h.publish(publisher, "r/c", "3", QoS::AtMostOnce, true);
    assert_eq!(h.broker.retained_count(), 2);
    assert_eq!(h.broker.metrics().retained_refused, 1);
    // Still delivered to the subscriber.
    assert_eq!(publishes(&h.recv(sub)).len(), 3);
    // Replacing a topic's retained message is fine; clearing one makes room.
    h.publish(publisher, "r/a", "1b", QoS::AtMostOnce, true);
    h.publish(publisher, "r/b", "", QoS::AtMostOnce, true);
    h.publish(publisher, "r/c", "3", QoS::AtMostOnce, true);
    assert_eq!(h.broker.retained_count(), 2);
    // Too large for the byte budget: not stored, and the old value of the topic is gone.
    h.publish(publisher, "r/a", &"z".repeat(300), QoS::AtMostOnce, true);
    assert_eq!(h.broker.retained_count(), 1);
    assert_eq!(h.broker.metrics().retained_refused, 2);
    let late = h.connect("late", V5);
    h.subscribe(late, "r/#", QoS::AtMostOnce);
    let got: Vec<String> = publishes(&h.recv(late))
        .iter()
        .map(|p| p.topic.to_string())
        .collect();
    assert_eq!(got, ["r/c"]);
    assert_eq!(h.broker.check_invariants(), Ok(()));
}

#[test]
fn topics_deeper_than_max_topic_levels_are_invalid() {
    let mut h = limited(|l| l.max_topic_levels = 3);
    let conn = h.connect("deep", V5);
    assert_eq!(h.subscribe(conn, "a/b/#", QoS::AtMostOnce), [ReasonCode(0)]);
    assert_eq!(
        h.subscribe(conn, "a/b/c/#", QoS::AtMostOnce),
        [ReasonCode::TOPIC_FILTER_INVALID]
    );
    h.publish(conn, "a/b/c", "ok", QoS::AtMostOnce, false);
    assert!(!h.closed.contains(&conn));
    h.publish(conn, "a/b/c/d", "too deep", QoS::AtMostOnce, false);
    assert_eq!(
        disconnect_code(&h.recv(conn)),
        Some(ReasonCode::TOPIC_NAME_INVALID)
    );
    let mut c = connect_packet("will", V5);
    c.will = Some(Will {
        topic: "w/x/y/z".into(),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let (_, ack) = h.connect_with(c);
    assert_eq!(ack.code, ReasonCode::TOPIC_NAME_INVALID);
}

#[test]
fn a_client_that_never_reads_is_closed_at_the_end_of_its_output_budget() {
    let mut h = limited(|l| l.max_packet_size = 64);
    let over = super::budget::OutputBudget::new(64).over_limit();
    let deaf = h.connect("deaf", V5);
    let reader = h.connect("reader", V5);
    // The reader's writes are reported (pump): it sends as much and stays.
    let pings = over.div_ceil(super::budget::CONTROL_PACKET_COST);
    for _ in 0..pings {
        h.broker
            .handle_packet(reader, StreamId::CONTROL, Packet::PingReq, h.now);
        h.pump();
    }
    assert!(!h.closed.contains(&reader));
    // The deaf client's PINGRESPs are never written: the last one crosses the budget.
    let mut closes = Vec::new();
    for i in 0..pings {
        assert!(closes.is_empty(), "closed after {i} of {pings} PINGREQs");
        h.broker
            .handle_packet(deaf, StreamId::CONTROL, Packet::PingReq, h.now);
        for output in h.broker.take_outputs() {
            if let Output::Close { conn, kind } = output {
                closes.push((conn, kind));
            }
        }
    }
    assert_eq!(
        closes,
        vec![(deaf, CloseKind::Abnormal(ReasonCode::QUOTA_EXCEEDED))]
    );
    let m = h.broker.metrics();
    assert_eq!((m.output_overflows, m.connections), (1, 1));
}

#[test]
fn transport_refusals_are_counted() {
    let mut h = Harness::new();
    let conn = h.connect("q", V5);
    h.broker.quic_stream_refused(conn);
    h.broker.datagrams_rate_limited(conn, 3);
    h.pump();
    let m = h.broker.metrics();
    assert_eq!((m.streams_refused, m.datagrams_rate_limited), (1, 3));
    // A malformed packet is counted as a protocol error.
    let bad = h.connect("bad", V5);
    h.broker
        .handle_decode_error(bad, &DecodeError::Malformed("test"), h.now);
    h.pump();
    assert_eq!(h.broker.metrics().protocol_errors, 1);
}

#[test]
fn connections_faster_than_the_address_rate_get_connack_rate_exceeded() {
    let mut h = limited(|l| l.max_connection_rate_per_address = 2);
    // A burst of two from one address, then refused until a token comes back (0.5 s).
    let a = open_from(&mut h, "tcp:10.0.0.1:1000");
    assert_eq!(connack(&mut h, a, "a", V5), ReasonCode::SUCCESS);
    let b = open_from(&mut h, "tcp:10.0.0.1:1001");
    assert_eq!(connack(&mut h, b, "b", V5), ReasonCode::SUCCESS);
    let c = open_from(&mut h, "tcp:10.0.0.1:1002");
    assert_eq!(
        connack(&mut h, c, "c", V5),
        ReasonCode::CONNECTION_RATE_EXCEEDED
    );
    assert!(h.closed.contains(&c));
    // 3.1.1 reads return code 3 (server unavailable).
    let d = open_from(&mut h, "quic:10.0.0.1:1003");
    assert_eq!(connack(&mut h, d, "d", V4), ReasonCode::SERVER_UNAVAILABLE);
    // Another address has its own rate.
    let e = open_from(&mut h, "tcp:10.0.0.2:1000");
    assert_eq!(connack(&mut h, e, "e", V5), ReasonCode::SUCCESS);
    let m = h.broker.metrics();
    assert_eq!((m.connections_rate_limited, m.connections_refused), (2, 2));
    // Refused attempts used no token: half a second later one connection is allowed again.
    h.now += Duration::from_millis(500);
    let f = open_from(&mut h, "tcp:10.0.0.1:1004");
    assert_eq!(connack(&mut h, f, "f", V5), ReasonCode::SUCCESS);
    let g = open_from(&mut h, "tcp:10.0.0.1:1005");
    assert_eq!(
        connack(&mut h, g, "g", V5),
        ReasonCode::CONNECTION_RATE_EXCEEDED
    );
}

#[test]
fn a_client_publishing_faster_than_the_limit_is_disconnected_with_0x96() {
    let mut h = limited(|l| l.max_publish_rate_per_client = 3);
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "t", QoS::AtMostOnce);
    let fast = h.connect("fast", V5);
    let old = h.connect("old", V4);
    // A burst of three is allowed; the fourth in the same instant closes the connection.
    for _ in 0..3 {
        h.send(
            fast,
            Packet::Publish(publish("t", "x", QoS::AtMostOnce, false, None)),
        );
    }
    assert_eq!(publishes(&h.recv(sub)).len(), 3);
    assert!(!h.closed.contains(&fast));
    h.send(
        fast,
        Packet::Publish(publish("t", "x", QoS::AtMostOnce, false, None)),
    );
    assert!(h.closed.contains(&fast));
    assert!(matches!(
        h.recv(fast).as_slice(),
        [Packet::Disconnect(d)] if d.code == ReasonCode::MESSAGE_RATE_TOO_HIGH
    ));
    assert!(
        publishes(&h.recv(sub)).is_empty(),
        "the message over the rate is not delivered"
    );
    assert_eq!(h.broker.metrics().publishes_rate_limited, 1);
    // Another client has its own budget; at the rate itself nobody is closed.
    for _ in 0..6 {
        h.send(
            old,
            Packet::Publish(publish("t", "y", QoS::AtMostOnce, false, None)),
        );
        h.now += Duration::from_millis(334);
    }
    assert!(!h.closed.contains(&old));
    assert_eq!(publishes(&h.recv(sub)).len(), 6);
}

/// A QoS 1 window that drains keeps its inflight table (the next window refills it at once);
/// a session that stays idle gives it back at the periodic sweep (10 to 20 s).
#[test]
fn a_drained_window_keeps_its_table_until_the_sweep_finds_it_idle_twice() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    let publ = h.connect("pub", V5);
    for _ in 0..50 {
        h.publish(publ, "t", "m", QoS::AtLeastOnce, false);
    }
    let ids: Vec<u16> = publishes(&h.recv(sub))
        .iter()
        .filter_map(|p| p.packet_id)
        .collect();
    assert_eq!(ids.len(), 50);
    for id in ids {
        h.send(sub, Packet::PubAck(Ack::new(id)));
    }
    let allocated = |h: &Harness| {
        let sid = h.broker.client_ids.get("sub").copied().expect("session");
        h.broker
            .sessions
            .get(&sid)
            .expect("session")
            .inflight
            .allocated()
    };
    assert!(allocated(&h), "kept for the next window");
    h.advance(Duration::from_secs(10));
    assert!(
        allocated(&h),
        "one sweep at most: it may be between two windows"
    );
    for _ in 0..3 {
        h.advance(Duration::from_secs(10));
    }
    assert!(
        !allocated(&h),
        "given back once idle from one sweep to the next"
    );
}
