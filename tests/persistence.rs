//! Persistence across a graceful restart of the real binary: retained messages, a persistent
//! session with its subscription, queued messages, inflight QoS 1 and QoS 2 deliveries (one past
//! PUBREC), a QoS 2 publisher's packet id awaiting PUBREL, and a delayed will.
//! The crash test (SIGKILL under load) is `tests/persistence_crash.rs`.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "persistence/support.rs"]
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use mqttd::codec::{Ack, Packet, QoS, Will};
use support::*;

#[tokio::test]
async fn a_graceful_restart_keeps_retained_sessions_queued_inflight_and_wills() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("broker.log");
    let broker = BrokerProcess::start(&data, &log, &[]);
    let addr = broker.addr;

    let (mut sub, ack) = Raw::connect(addr, persistent("sub", 300)).await.unwrap();
    assert!(!ack.session_present);
    sub.send(&subscribe("t/#", QoS::ExactlyOnce)).await.unwrap();
    assert!(matches!(sub.next("SUBACK").await, Packet::SubAck(_)));
    let (mut watcher, _) = Raw::connect(addr, persistent("watcher", 300))
        .await
        .unwrap();
    watcher
        .send(&subscribe("will/#", QoS::AtLeastOnce))
        .await
        .unwrap();
    assert!(matches!(watcher.next("SUBACK").await, Packet::SubAck(_)));
    watcher
        .send(&Packet::Disconnect(mqttd::codec::Disconnect::new(
            mqttd::codec::ReasonCode::NORMAL_DISCONNECTION,
        )))
        .await
        .unwrap();

    let (mut publ, _) = Raw::connect(addr, clean("pub")).await.unwrap();
    // Inflight QoS 1 (never acknowledged), QoS 2 past PUBREC, QoS 2 unacknowledged.
    publ.send(&publish(
        "t/1",
        "q1-inflight",
        QoS::AtLeastOnce,
        false,
        Some(1),
    ))
    .await
    .unwrap();
    assert!(matches!(publ.next("PUBACK").await, Packet::PubAck(_)));
    publ.send(&publish(
        "t/2",
        "q2-released",
        QoS::ExactlyOnce,
        false,
        Some(2),
    ))
    .await
    .unwrap();
    assert!(matches!(publ.next("PUBREC").await, Packet::PubRec(_)));
    publ.send(&publish(
        "t/3",
        "q2-inflight",
        QoS::ExactlyOnce,
        false,
        Some(3),
    ))
    .await
    .unwrap();
    assert!(matches!(publ.next("PUBREC").await, Packet::PubRec(_)));
    let mut ids = Vec::new();
    for _ in 0..3 {
        match sub.next("PUBLISH").await {
            Packet::Publish(p) => ids.push(p.packet_id.unwrap()),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    sub.send(&Packet::PubRec(Ack::new(ids[1]))).await.unwrap();
    assert!(matches!(sub.next("PUBREL").await, Packet::PubRel(_)));
    // Retained.
    publ.send(&publish("r/1", "kept", QoS::AtLeastOnce, true, Some(4)))
        .await
        .unwrap();
    assert!(matches!(publ.next("PUBACK").await, Packet::PubAck(_)));
    drop(sub);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Queued while the subscriber is away.
    publ.send(&publish(
        "t/4",
        "q1-queued",
        QoS::AtLeastOnce,
        false,
        Some(5),
    ))
    .await
    .unwrap();
    assert!(matches!(publ.next("PUBACK").await, Packet::PubAck(_)));
    // A persistent QoS 2 publisher whose PUBLISH awaits PUBREL.
    let (mut p2, _) = Raw::connect(addr, persistent("p2", 300)).await.unwrap();
    p2.send(&publish("t/5", "q2-once", QoS::ExactlyOnce, false, Some(9)))
        .await
        .unwrap();
    assert!(matches!(p2.next("PUBREC").await, Packet::PubRec(_)));
    drop(p2);
    // A will delayed 4 s on a session whose connection drops now.
    let mut w = persistent("w", 300);
    w.will = Some(Will {
        topic: "will/w".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: mqttd::codec::PropertyValues {
            will_delay_interval: Some(4),
            ..Default::default()
        }
        .into(),
    });
    let (wc, _) = Raw::connect(addr, w).await.unwrap();
    drop(wc);
    let will_dropped = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(publ);

    broker.stop();
    let broker = BrokerProcess::start(&data, &log, &[]);
    let addr = broker.addr;
    assert!(
        broker.log_tail(20).contains("store loaded"),
        "{}",
        broker.log_tail(20)
    );

    let (mut sub, ack) = Raw::connect(addr, persistent("sub", 300)).await.unwrap();
    assert!(ack.session_present, "the session survived");
    let mut got = Vec::new();
    for _ in 0..5 {
        match sub.next("resent and queued").await {
            Packet::Publish(p) => got.push((p.dup, p.packet_id, payload(&p))),
            Packet::PubRel(a) => got.push((false, Some(a.packet_id), "PUBREL".into())),
            other => panic!("unexpected {other:?}"),
        }
    }
    // Inflight PUBLISH packets again with DUP, in their send order [MQTT-4.4.0-1], and the
    // PUBREL of the flow past PUBREC (its place among them is not kept across a restart).
    let resent: Vec<_> = got
        .iter()
        .filter(|g| g.2 != "PUBREL")
        .take(2)
        .cloned()
        .collect();
    assert_eq!(
        resent,
        [
            (true, Some(ids[0]), "q1-inflight".to_string()),
            (true, Some(ids[2]), "q2-inflight".to_string()),
        ]
    );
    assert!(
        got[..3].contains(&(false, Some(ids[1]), "PUBREL".to_string())),
        "{got:?}"
    );
    let queued: Vec<_> = got[3..].iter().map(|g| g.2.as_str()).collect();
    assert_eq!(queued, ["q1-queued", "q2-once"]);

    // The QoS 2 publisher retransmits: the broker remembers the packet id, no second copy.
    let (mut p2, ack) = Raw::connect(addr, persistent("p2", 300)).await.unwrap();
    assert!(ack.session_present);
    let Packet::Publish(mut again) = publish("t/5", "q2-once", QoS::ExactlyOnce, false, Some(9))
    else {
        unreachable!()
    };
    again.dup = true;
    p2.send(&Packet::Publish(again)).await.unwrap();
    assert!(matches!(p2.next("PUBREC").await, Packet::PubRec(_)));
    p2.send(&Packet::PubRel(Ack::new(9))).await.unwrap();
    assert!(matches!(p2.next("PUBCOMP").await, Packet::PubComp(_)));
    assert!(
        matches!(sub.read(Duration::from_millis(300)).await, Read::Timeout),
        "exactly once"
    );

    // Retained.
    let (mut r, _) = Raw::connect(addr, clean("r")).await.unwrap();
    r.send(&subscribe("r/#", QoS::AtLeastOnce)).await.unwrap();
    assert!(matches!(r.next("SUBACK").await, Packet::SubAck(_)));
    match r.next("retained").await {
        Packet::Publish(p) => assert_eq!((payload(&p).as_str(), p.retain), ("kept", true)),
        other => panic!("expected the retained message, got {other:?}"),
    }

    // The will keeps its delay across the restart (4 s from the drop, not from the restart).
    let (mut watcher, ack) = Raw::connect(addr, persistent("watcher", 300))
        .await
        .unwrap();
    assert!(ack.session_present);
    if will_dropped.elapsed() < Duration::from_millis(3500) {
        assert!(
            matches!(
                watcher.read(Duration::from_millis(200)).await,
                Read::Timeout
            ),
            "the will waits for its delay"
        );
    }
    match watcher.read(Duration::from_secs(6)).await {
        Read::Packet(Packet::Publish(p)) => assert_eq!(payload(&p), "gone"),
        other => panic!("expected the will, got {other:?}"),
    }
    let waited = will_dropped.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(8),
        "will after {waited:?}"
    );
    broker.stop();
}

#[tokio::test]
async fn a_damaged_store_is_moved_aside_and_the_broker_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("mqttd.redb"), vec![0xa5; 4096]).unwrap();
    let log = dir.path().join("broker.log");
    let broker = BrokerProcess::start(&data, &log, &[]);
    let logged = broker.log_tail(20);
    assert!(
        logged.contains("THE STORE CANNOT BE READ"),
        "logged loudly: {logged}"
    );
    let aside: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mqttd.redb.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    // It works, and persists, on the fresh store.
    let (mut publ, _) = Raw::connect(broker.addr, clean("p")).await.unwrap();
    publ.send(&publish("r/x", "v", QoS::AtLeastOnce, true, Some(1)))
        .await
        .unwrap();
    assert!(matches!(publ.next("PUBACK").await, Packet::PubAck(_)));
    broker.stop();
    let broker = BrokerProcess::start(&data, &log, &[]);
    let (mut r, _) = Raw::connect(broker.addr, clean("r")).await.unwrap();
    r.send(&subscribe("r/#", QoS::AtMostOnce)).await.unwrap();
    assert!(matches!(r.next("SUBACK").await, Packet::SubAck(_)));
    assert!(matches!(r.next("retained").await, Packet::Publish(_)));
    broker.stop();
}

/// The embedding API persists too: a retained message published in-process (its `publish`
/// returns after the commit) is there after the application restarts.
#[tokio::test]
async fn an_embedded_broker_keeps_what_its_application_published() {
    let dir = tempfile::tempdir().unwrap();
    let app = |dir: &std::path::Path| {
        let mut config = mqttd::Config::default();
        config.listeners.tcp = Some("127.0.0.1:0".parse().unwrap());
        config.listeners.quic = None;
        config.storage.data_dir = Some(dir.to_path_buf());
        config.log.level = "warn".into();
        mqttd::App::new(config)
    };
    let handle = app(dir.path()).start().await.unwrap();
    let reached = handle
        .publisher()
        .publish("app/state", "on", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    assert_eq!(reached, 0);
    handle.shutdown().await;

    let handle = app(dir.path()).start().await.unwrap();
    let addr = handle.tcp_addr().unwrap();
    let (mut r, _) = Raw::connect(addr, clean("r")).await.unwrap();
    r.send(&subscribe("app/#", QoS::AtLeastOnce)).await.unwrap();
    assert!(matches!(r.next("SUBACK").await, Packet::SubAck(_)));
    match r.next("retained").await {
        Packet::Publish(p) => assert_eq!(payload(&p), "on"),
        other => panic!("expected the retained message, got {other:?}"),
    }
    handle.shutdown().await;
}
