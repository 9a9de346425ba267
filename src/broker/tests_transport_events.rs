//! Connection migration and 0-RTT held wills (`transport_events.rs`).

use super::*;

#[test]
fn migration_relabels_the_connection_and_keeps_everything_else() {
    let mut h = Harness::new();
    let sub = h.connect("mover", V5);
    h.subscribe(sub, "m/#", QoS::AtLeastOnce);
    let publisher = h.connect("pub", V5);
    assert_eq!(h.broker.metrics().migrations, 0);

    h.broker
        .peer_address_changed(sub, "quic:10.0.0.2:5000".into(), h.now);
    h.pump();
    assert_eq!(h.broker.metrics().migrations, 1);
    let mover = h
        .broker
        .clients()
        .into_iter()
        .find(|c| c.conn == sub)
        .unwrap();
    assert_eq!(mover.client_id.as_deref(), Some("mover"));
    assert_eq!(mover.peer, "quic:10.0.0.2:5000");

    // The same address again is no migration.
    h.broker
        .peer_address_changed(sub, "quic:10.0.0.2:5000".into(), h.now);
    assert_eq!(h.broker.metrics().migrations, 1);
    // An unknown connection is ignored.
    h.broker
        .peer_address_changed(ConnId(999), "quic:1.1.1.1:1".into(), h.now);
    assert_eq!(h.broker.metrics().migrations, 1);

    // Subscriptions and deliveries carry on.
    h.publish(publisher, "m/a", "after", QoS::AtLeastOnce, false);
    let received = h.recv(sub);
    let got = publishes(&received);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"after");
}

#[test]
fn a_held_will_counts_only_after_the_handshake_is_confirmed() {
    let mut h = Harness::new();
    let watcher = h.connect("watcher", V5);
    h.subscribe(watcher, "will/#", QoS::AtLeastOnce);

    // Lost before confirmation: the will of the early CONNECT never existed.
    let conn = h.open();
    h.broker.hold_will(conn);
    h.send(
        conn,
        Packet::Connect(Box::new(with_will("early", V5, None, None))),
    );
    assert!(
        matches!(h.recv(conn).first(), Some(Packet::ConnAck(a)) if a.code == ReasonCode::SUCCESS)
    );
    h.lose(conn);
    assert!(publishes(&h.recv(watcher)).is_empty());

    // Confirmed: the will is registered and published on loss.
    let conn = h.open();
    h.broker.hold_will(conn);
    h.send(
        conn,
        Packet::Connect(Box::new(with_will("early", V5, None, None))),
    );
    h.recv(conn);
    h.broker.handshake_confirmed(conn, h.now);
    h.lose(conn);
    assert_eq!(publishes(&h.recv(watcher)).len(), 1);

    // Confirmation after a normal DISCONNECT changes nothing.
    let conn = h.open();
    h.broker.hold_will(conn);
    h.send(
        conn,
        Packet::Connect(Box::new(with_will("early", V5, None, None))),
    );
    h.send(
        conn,
        Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
    );
    h.broker.handshake_confirmed(conn, h.now);
    h.pump();
    assert!(publishes(&h.recv(watcher)).is_empty());
}

#[test]
fn a_held_will_is_still_validated() {
    let mut h = Harness::new();
    let conn = h.open();
    h.broker.hold_will(conn);
    let mut connect = with_will("bad", V5, None, None);
    connect.will.as_mut().unwrap().topic = "bad/#".into();
    h.send(conn, Packet::Connect(Box::new(connect)));
    assert!(matches!(
        h.recv(conn).first(),
        Some(Packet::ConnAck(a)) if a.code == ReasonCode::TOPIC_NAME_INVALID
    ));
}
