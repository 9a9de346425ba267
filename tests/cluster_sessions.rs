//! Sessions across the nodes of a cluster (README "Cluster"): one live connection per client
//! id. A client id connecting on node B takes the client over from node A: A's connection
//! gets DISCONNECT 0x8E and no will is published (the client lives on), and back again. A
//! persistent session resumes on another node with its subscriptions and messages: exactly
//! when its node hands it over, and with every acknowledged message after `kill -9` of it.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "cluster/support.rs"]
mod support;

use std::time::Duration;

use bytes::Bytes;
use mqttd::codec::{Ack, Packet, Properties, Publish, QoS, ReasonCode, Will};
use support::{clean, persistent, Cluster, Nats, Raw, Read};

#[tokio::test]
async fn a_client_id_connecting_on_another_node_takes_the_client_over() {
    let nats = Nats::start();
    let cluster = Cluster::new(&nats.url);
    let a = cluster.node("a", &[]);
    let b = cluster.node("b", &[]);

    let (mut watcher, _) = Raw::connect(b.addr(), clean("watcher")).await.unwrap();
    watcher
        .send(&support::subscribe_packet("will/#", QoS::AtMostOnce))
        .await
        .unwrap();
    assert!(matches!(watcher.next("SUBACK").await, Packet::SubAck(_)));

    let mut with_will = clean("x");
    with_will.will = Some(Will {
        topic: "will/x".into(),
        payload: Bytes::from_static(b"x died"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let (mut on_a, _) = Raw::connect(a.addr(), with_will).await.unwrap();
    // Let node a's claim reach NATS before the other connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut on_b, _) = Raw::connect(b.addr(), clean("x")).await.unwrap();
    assert_eq!(
        support::disconnect_reason(&mut on_a, Duration::from_secs(5)).await,
        Some(ReasonCode::SESSION_TAKEN_OVER),
        "node a's connection is taken over\nnode a:\n{}",
        a.process.log_tail(20)
    );
    assert!(
        matches!(
            watcher.read(Duration::from_millis(500)).await,
            Read::Timeout
        ),
        "no will for a client connected elsewhere"
    );

    // And back: the connection on node b is taken over in turn.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_again_on_a, _) = Raw::connect(a.addr(), clean("x")).await.unwrap();
    assert_eq!(
        support::disconnect_reason(&mut on_b, Duration::from_secs(5)).await,
        Some(ReasonCode::SESSION_TAKEN_OVER),
        "node b's connection is taken over\nnode b:\n{}",
        b.process.log_tail(20)
    );
}

/// Publishes `payloads` on `topic` at `qos` and waits for each acknowledgement (QoS 2: the
/// whole PUBREC / PUBREL / PUBCOMP exchange).
async fn publish_acked(raw: &mut Raw, topic: &str, payloads: &[String], qos: QoS) {
    for (i, p) in payloads.iter().enumerate() {
        let id = u16::try_from(i % 60_000 + 1).unwrap();
        raw.send(&support::publish(topic, p, qos, false, Some(id)))
            .await
            .unwrap();
        match raw.next("acknowledgement").await {
            Packet::PubAck(a) if qos == QoS::AtLeastOnce => {
                assert_eq!(a.code, ReasonCode::SUCCESS)
            }
            Packet::PubRec(a) if qos == QoS::ExactlyOnce => {
                assert_eq!(a.code, ReasonCode::SUCCESS);
                raw.send(&Packet::PubRel(Ack::new(id))).await.unwrap();
                assert!(matches!(raw.next("PUBCOMP").await, Packet::PubComp(_)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Reads PUBLISHes until `quiet` passes without one; acknowledges those in `ack` (by
/// payload), completing QoS 2 flows.
async fn receive(raw: &mut Raw, quiet: Duration, ack: impl Fn(&str) -> bool) -> Vec<Publish> {
    let mut got = Vec::new();
    loop {
        match raw.read(quiet).await {
            Read::Packet(Packet::Publish(p)) => {
                if let (Some(id), true) = (p.packet_id, ack(&support::payload(&p))) {
                    let reply = match p.qos {
                        QoS::ExactlyOnce => Packet::PubRec(Ack::new(id)),
                        _ => Packet::PubAck(Ack::new(id)),
                    };
                    raw.send(&reply).await.unwrap();
                }
                got.push(p);
            }
            Read::Packet(Packet::PubRel(a)) => {
                raw.send(&Packet::PubComp(Ack::new(a.packet_id)))
                    .await
                    .unwrap();
            }
            Read::Packet(_) => {}
            Read::Closed | Read::Timeout => return got,
        }
    }
}

fn payloads(prefix: &str, range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn a_persistent_session_moves_to_the_node_its_client_reconnects_to() {
    let nats = Nats::start();
    let cluster = Cluster::new(&nats.url);
    let a = cluster.node("a", &[]);
    let b = cluster.node("b", &[]);

    let (mut sub, ack) = Raw::connect(a.addr(), persistent("mover", 3600))
        .await
        .unwrap();
    assert!(!ack.session_present);
    sub.send(&support::subscribe_packet("move/#", QoS::AtLeastOnce))
        .await
        .unwrap();
    assert!(matches!(sub.next("SUBACK").await, Packet::SubAck(_)));
    sub.send(&Packet::Disconnect(mqttd::codec::Disconnect::new(
        ReasonCode::SUCCESS,
    )))
    .await
    .unwrap();
    drop(sub);

    // Published on node a while the client is away: queued in its session there.
    let (mut publisher, _) = Raw::connect(a.addr(), clean("pub")).await.unwrap();
    publish_acked(
        &mut publisher,
        "move/1",
        &payloads("m", 1..=5),
        QoS::AtLeastOnce,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The client comes back on node b: the same session, every message once, in order.
    let (mut sub, ack) = Raw::connect(b.addr(), persistent("mover", 3600))
        .await
        .unwrap();
    assert!(
        ack.session_present,
        "[MQTT-3.1.2-5] the session moved\nnode a:\n{}\nnode b:\n{}",
        a.process.log_tail(20),
        b.process.log_tail(20)
    );
    publish_acked(
        &mut publisher,
        "move/2",
        &payloads("n", 1..=2),
        QoS::AtLeastOnce,
    )
    .await;
    let got = receive(&mut sub, Duration::from_millis(1500), |_| true).await;
    let texts: Vec<String> = got.iter().map(support::payload).collect();
    let mut expected = payloads("m", 1..=5);
    expected.extend(payloads("n", 1..=2));
    assert_eq!(texts, expected, "\nnode b:\n{}", b.process.log_tail(30));
    assert!(
        got.iter().all(|p| !p.dup),
        "nothing was sent before: no DUP"
    );
}

#[tokio::test]
async fn a_persistent_session_resumes_on_another_node_after_kill_9_of_its_node() {
    let nats = Nats::start();
    let cluster = Cluster::new(&nats.url);
    let a = cluster.node("a", &[]);
    let b = cluster.node("b", &[]);

    let (mut sub, _) = Raw::connect(a.addr(), persistent("survivor", 3600))
        .await
        .unwrap();
    sub.send(&support::subscribe_packet("k/#", QoS::ExactlyOnce))
        .await
        .unwrap();
    assert!(matches!(sub.next("SUBACK").await, Packet::SubAck(_)));
    let (mut publisher, _) = Raw::connect(b.addr(), clean("pub")).await.unwrap();
    publish_acked(
        &mut publisher,
        "k/1",
        &payloads("a", 1..=6),
        QoS::AtLeastOnce,
    )
    .await;
    // The client acknowledges the first three only.
    let first = receive(&mut sub, Duration::from_millis(800), |p| {
        ["a1", "a2", "a3"].contains(&p)
    })
    .await;
    assert_eq!(first.len(), 6, "\nnode a:\n{}", a.process.log_tail(30));
    // Let node a write the session's state (within 100 ms of each change).
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.process.kill9();
    drop(sub);

    // Acknowledged while the session's node is dead: QoS 1 and QoS 2.
    publish_acked(
        &mut publisher,
        "k/2",
        &payloads("b", 1..=4),
        QoS::AtLeastOnce,
    )
    .await;
    publish_acked(
        &mut publisher,
        "k/3",
        &payloads("c", 1..=2),
        QoS::ExactlyOnce,
    )
    .await;

    let (mut sub, ack) = Raw::connect(b.addr(), persistent("survivor", 3600))
        .await
        .unwrap();
    assert!(
        ack.session_present,
        "the session outlived its node\nnode b:\n{}",
        b.process.log_tail(30)
    );
    let got = receive(&mut sub, Duration::from_millis(1500), |_| true).await;
    let texts: Vec<String> = got.iter().map(support::payload).collect();
    let mut expected = payloads("a", 4..=6);
    expected.extend(payloads("b", 1..=4));
    expected.extend(payloads("c", 1..=2));
    // The unacknowledged ones first (again, with DUP), then the rest in the stream's order.
    let unacked: Vec<&Publish> = got.iter().filter(|p| &p.topic[..] == "k/1").collect();
    assert_eq!(
        unacked
            .iter()
            .map(|p| support::payload(p))
            .collect::<Vec<_>>(),
        payloads("a", 4..=6),
        "\ngot {texts:?}\nnode b:\n{}",
        b.process.log_tail(30)
    );
    assert!(
        unacked.iter().all(|p| p.dup),
        "[MQTT-4.4.0-1] sent again with DUP"
    );
    let rest: Vec<String> = got
        .iter()
        .filter(|p| &p.topic[..] != "k/1")
        .map(support::payload)
        .collect();
    assert_eq!(
        &rest[..],
        &expected[3..],
        "every acknowledged message, once"
    );
}
