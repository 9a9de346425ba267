//! Sessions across the nodes of a cluster (README "Cluster"): one live connection per client
//! id. A client id connecting on node B takes the client over from node A: A's connection
//! gets DISCONNECT 0x8E and no will is published (the client lives on), and back again.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "cluster/support.rs"]
mod support;

use std::time::Duration;

use bytes::Bytes;
use mqttd::codec::{Packet, Properties, QoS, ReasonCode, Will};
use support::{clean, Cluster, Nats, Raw, Read};

/// Reads until the broker closes the connection; the DISCONNECT it sent before, if any.
async fn disconnect_reason(raw: &mut Raw) -> Option<ReasonCode> {
    let mut reason = None;
    loop {
        match raw.read(Duration::from_secs(5)).await {
            Read::Packet(Packet::Disconnect(d)) => reason = Some(d.code),
            Read::Packet(_) => {}
            Read::Closed => return reason,
            Read::Timeout => panic!("the connection was not closed within 5 s"),
        }
    }
}

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
        disconnect_reason(&mut on_a).await,
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
        disconnect_reason(&mut on_b).await,
        Some(ReasonCode::SESSION_TAKEN_OVER),
        "node b's connection is taken over\nnode b:\n{}",
        b.process.log_tail(20)
    );
}
