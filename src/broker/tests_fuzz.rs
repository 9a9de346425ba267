//! Regression tests for what the fuzz targets (`fuzz/`, `src/fuzzing/`) found, one per bug.

use super::*;

/// broker_session: a client whose Maximum Packet Size cannot take the CONNACK was closed but
/// stayed in the broker (connection, session, client id) until the transport reported it lost,
/// which the QUIC glue never does after a close the broker asked for.
#[test]
fn a_connection_closed_for_a_packet_it_cannot_take_is_forgotten_at_once() {
    let mut h = Harness::new();
    let conn = h.open();
    let mut c = connect_packet("tiny", V5);
    c.properties.maximum_packet_size = Some(2);
    h.send(conn, Packet::Connect(Box::new(c)));
    assert!(h.recv(conn).is_empty());
    assert!(h.closed.contains(&conn));
    let m = h.broker.metrics();
    assert_eq!((m.connections, m.sessions), (0, 0));
    assert_eq!(h.broker.check_invariants(), Ok(()));

    // Later in a connection: a SUBACK too large for the client closes it, with nothing after.
    let conn = h.open();
    let mut c = connect_packet("small", V5);
    c.properties.maximum_packet_size = Some(40);
    h.send(conn, Packet::Connect(Box::new(c)));
    assert!(matches!(h.recv(conn).as_slice(), [Packet::ConnAck(_)]));
    let filters = (0..100)
        .map(|i| {
            (
                ByteString::from(format!("f/{i}")),
                SubscriptionOptions::default(),
            )
        })
        .collect();
    h.send(
        conn,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters,
        }),
    );
    assert!(h.recv(conn).is_empty());
    assert!(h.closed.contains(&conn));
    assert_eq!(h.broker.metrics().connections, 0);
    assert_eq!(h.broker.check_invariants(), Ok(()));
}

/// datagram: a PUBLISH in a datagram that breaks a rule (RETAIN while retain is unavailable, a
/// Subscription Identifier, a topic deeper than allowed) closed the connection; datagrams are
/// only ever dropped and counted (proto-ext/datagrams.md 2).
#[test]
fn a_bad_publish_in_a_datagram_is_dropped_not_fatal() {
    let mut config = Config::default();
    config.session.retain_available = false;
    config.limits.max_topic_levels = 2;
    let mut h = Harness::with_config(config);
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
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "#", QoS::AtMostOnce);
    let mut retained = publish("t", "r", QoS::AtMostOnce, true, None);
    retained.retain = true;
    let mut with_id = publish("t", "i", QoS::AtMostOnce, false, None);
    with_id.properties.subscription_identifiers = vec![1];
    let deep = publish("a/b/c", "d", QoS::AtMostOnce, false, None);
    for p in [retained, with_id, deep] {
        h.send_on(conn, StreamId::DATAGRAM, Packet::Publish(p));
    }
    assert!(!h.closed.contains(&conn));
    assert_eq!(h.broker.metrics().datagrams_dropped, 3);
    assert!(publishes(&h.recv(sub)).is_empty());
    // A valid one still goes through.
    h.send_on(
        conn,
        StreamId::DATAGRAM,
        Packet::Publish(publish("t", "ok", QoS::AtMostOnce, false, None)),
    );
    assert_eq!(publishes(&h.recv(sub)).len(), 1);
    assert_eq!(h.broker.metrics().datagrams_received, 1);
}
