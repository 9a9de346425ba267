//! Shared subscriptions across nodes (README "Cluster"): a nats-server with JetStream and two
//! mqttd nodes, started here on free ports. A group with a member on each node and
//! publishers on both nodes gets each message once cluster-wide (QoS 0, 1 and 2), and
//! survives the `kill -9` of one member's node: every acknowledged QoS 1 message still reaches
//! the group, QoS 0 goes on to the survivor.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
// The cluster support reuses the persistence tests' process handling, which has its own copy
// of common/listening.rs.
#[allow(clippy::duplicate_mod)]
#[path = "cluster/support.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mqttd::client::{Client, ClientOptions};
use mqttd::codec::QoS;
use support::{Cluster, Nats, Node};
use tokio::sync::mpsc;

const FILTER: &str = "$share/g/s/#";

/// A short JetStream ack wait, so that a dead node's messages come back within the test.
const CONFIG: &str = "cluster:\n  shared_ack_wait_ms: 1000\n";

fn node(cluster: &Cluster, name: &str) -> Node {
    let config = cluster.dir.path().join("shared.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    cluster.node(name, &["-c", config.to_str().unwrap()])
}

async fn connect(node: &Node, id: &str) -> Client {
    connect_with(node, id, false).await
}

async fn connect_with(node: &Node, id: &str, manual_acks: bool) -> Client {
    let options = ClientOptions::new(node.addr().to_string())
        .client_id(id)
        .manual_acks(manual_acks);
    Client::connect(options).await.unwrap().0
}

/// A member of the group: what it receives goes to `tx` as (member, topic, payload, QoS).
/// With `manual_acks` it never acknowledges a message (it holds them until its node dies).
async fn member(
    node: &Node,
    name: &'static str,
    manual_acks: bool,
    tx: mpsc::UnboundedSender<(&'static str, String, String, QoS)>,
) -> Client {
    let c = connect_with(node, name, manual_acks).await;
    c.subscribe(FILTER, QoS::ExactlyOnce).await.unwrap();
    let reader = c.clone();
    tokio::spawn(async move {
        while let Ok(m) = reader.recv().await {
            let payload = String::from_utf8_lossy(&m.payload).into_owned();
            if tx
                .send((name, m.topic.to_string(), payload, m.qos))
                .is_err()
            {
                return;
            }
        }
    });
    c
}

/// Receives until `done` holds of what came (topic and payload -> members that got it), or
/// the time is up.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<(&'static str, String, String, QoS)>,
    got: &mut HashMap<String, Vec<&'static str>>,
    within: Duration,
    done: impl Fn(&HashMap<String, Vec<&'static str>>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !done(got) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((who, topic, payload, _))) => got
                .entry(format!("{topic} {payload}"))
                .or_default()
                .push(who),
            _ => return,
        }
    }
}

/// Publishes probes at both QoS until each member got one of each: both nodes serve the
/// group in NATS (their queue subscriptions and pulls are in place).
async fn until_both_serve(
    publisher: &Client,
    rx: &mut mpsc::UnboundedReceiver<(&'static str, String, String, QoS)>,
) {
    let started = Instant::now();
    let mut seen: HashMap<(&'static str, QoS), ()> = HashMap::new();
    let mut n = 0;
    while seen.len() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "both nodes never served the group: {:?}",
            seen.keys()
        );
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            n += 1;
            publisher
                .publish("s/probe", n.to_string(), qos, false)
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Ok((who, _, _, qos)) = rx.try_recv() {
            seen.insert((who, qos), ());
        }
    }
    // Let the last probes land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while rx.try_recv().is_ok() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_once_per_group_across_nodes() {
    const N: usize = 100;
    let nats = Nats::start();
    let cluster = Cluster::new(&nats.url);
    let a = node(&cluster, "a");
    let b = node(&cluster, "b");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pa = connect(&a, "pa").await;
    let pb = connect(&b, "pb").await;
    // A new group misses no QoS 1/2 message published after its first SUBACK, however soon
    // (its consumer starts at the node's stream position, not at "new messages").
    let _ma = member(&a, "ma", false, tx.clone()).await;
    pb.publish("s/first", "x", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let mut got = HashMap::new();
    collect(&mut rx, &mut got, Duration::from_secs(5), |g| !g.is_empty()).await;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        vec!["s/first x"],
        "the first message after the SUBACK"
    );
    let _mb = member(&b, "mb", false, tx).await;
    until_both_serve(&pa, &mut rx).await;

    let started = Instant::now();
    for i in 0..N {
        for (p, node) in [(&pa, "a"), (&pb, "b")] {
            p.publish(
                format!("s/{node}/1"),
                i.to_string(),
                QoS::AtLeastOnce,
                false,
            )
            .await
            .unwrap();
            p.publish(format!("s/{node}/0"), i.to_string(), QoS::AtMostOnce, false)
                .await
                .unwrap();
            p.publish(
                format!("s/{node}/2"),
                i.to_string(),
                QoS::ExactlyOnce,
                false,
            )
            .await
            .unwrap();
        }
    }
    let mut got = HashMap::new();
    collect(&mut rx, &mut got, Duration::from_secs(10), |g| {
        g.len() >= 6 * N
    })
    .await;
    // Nothing more comes (no late duplicates).
    collect(&mut rx, &mut got, Duration::from_millis(500), |_| false).await;
    let elapsed = started.elapsed();
    let logs = || {
        format!(
            "node a:\n{}\nnode b:\n{}",
            a.process.log_tail(20),
            b.process.log_tail(20)
        )
    };
    let dups: Vec<_> = got.iter().filter(|(_, who)| who.len() > 1).collect();
    assert!(dups.is_empty(), "delivered twice: {dups:?}\n{}", logs());
    // Members served from the stream (QoS 1 and 2 share the group's consumer, whose
    // messages JetStream hands to the nodes' pull requests in turn).
    let mut streamed: HashMap<&str, usize> = HashMap::new();
    for qos in ["0", "1", "2"] {
        let mut by_member: HashMap<&str, usize> = HashMap::new();
        let mut count = 0;
        for node in ["a", "b"] {
            for i in 0..N {
                if let Some(who) = got.get(&format!("s/{node}/{qos} {i}")) {
                    count += 1;
                    *by_member.entry(who[0]).or_default() += 1;
                    if qos != "0" {
                        *streamed.entry(who[0]).or_default() += 1;
                    }
                }
            }
        }
        common::note(format!(
            "QoS {qos}: {count} of {} messages reached the group, per member {by_member:?}, in {elapsed:?}",
            2 * N
        ));
        if qos != "0" {
            assert_eq!(count, 2 * N, "every QoS {qos} message once\n{}", logs());
        } else {
            // At most once: on a loaded machine a QoS 0 message may be dropped, never doubled.
            assert!(
                count >= 2 * N * 9 / 10,
                "QoS 0: {count} of {}\n{}",
                2 * N,
                logs()
            );
        }
        if qos == "0" {
            assert_eq!(
                by_member.len(),
                2,
                "QoS 0: both nodes' members served: {by_member:?}"
            );
        }
    }
    assert_eq!(
        streamed.len(),
        2,
        "QoS 1/2: both nodes' members served: {streamed:?}"
    );
}

/// Node b's member receives messages and never acknowledges them (they stay with it while its
/// node lives); b is killed with `kill -9` halfway: every message node a acknowledged reaches
/// the surviving member (JetStream gives the unacknowledged ones again after the ack wait),
/// and QoS 0 goes on to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_survives_the_loss_of_a_members_node() {
    const N: usize = 400;
    // Published before the kill.
    const BEFORE: usize = 300;
    let nats = Nats::start();
    let cluster = Cluster::new(&nats.url);
    let a = node(&cluster, "a");
    let b = node(&cluster, "b");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _ma = member(&a, "ma", false, tx.clone()).await;
    let _mb = member(&b, "mb", true, tx).await;
    let pa = connect(&a, "pa").await;
    until_both_serve(&pa, &mut rx).await;

    let mut got: HashMap<String, Vec<&'static str>> = HashMap::new();
    let mut b = Some(b);
    for i in 0..N {
        if i == BEFORE {
            let reached = |g: &HashMap<String, Vec<&'static str>>| {
                (0..BEFORE).all(|i| g.contains_key(&format!("s/q1 {i}")))
            };
            collect(&mut rx, &mut got, Duration::from_secs(5), reached).await;
            assert!(
                reached(&got),
                "not all of the first {BEFORE} reached the group"
            );
            // Node b takes no more than its room (mqttd::cluster::shared::ROOM, 100 and a
            // few QoS 1 probes) while its member acknowledges nothing: node a's takes the rest.
            let held = got
                .iter()
                .filter(|(k, w)| k.starts_with("s/q1 ") && w.contains(&"mb"))
                .count();
            assert!(
                (1..=100).contains(&held),
                "node b holds {held} of {BEFORE} for its member"
            );
            // While its node lives, a slow member keeps what it holds (its node tells
            // JetStream the work is in progress) past twice the ack wait.
            collect(&mut rx, &mut got, Duration::from_millis(2500), |_| false).await;
            let twice: Vec<_> = got.iter().filter(|(_, w)| w.len() > 1).collect();
            assert!(twice.is_empty(), "overtook a live member: {twice:?}");
            b.take().unwrap().process.kill9();
        }
        // Node a acknowledges each (the publish returns once it did).
        pa.publish("s/q1", i.to_string(), QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    let published = Instant::now();
    let by_ma = |g: &HashMap<String, Vec<&'static str>>| {
        (0..N).all(|i| {
            g.get(&format!("s/q1 {i}"))
                .is_some_and(|w| w.contains(&"ma"))
        })
    };
    collect(&mut rx, &mut got, Duration::from_secs(10), by_ma).await;
    let missing: Vec<usize> = (0..N)
        .filter(|i| {
            !got.get(&format!("s/q1 {i}"))
                .is_some_and(|w| w.contains(&"ma"))
        })
        .collect();
    let held_by_b = (0..N)
        .filter(|i| {
            got.get(&format!("s/q1 {i}"))
                .is_some_and(|w| w.contains(&"mb"))
        })
        .count();
    assert!(
        missing.is_empty(),
        "acknowledged QoS 1 messages lost: {missing:?}\nnode a:\n{}",
        a.process.log_tail(30)
    );
    common::note(format!(
        "{held_by_b} QoS 1 messages held unacknowledged by the killed node's member; all {N} reached the survivor within {:?} of the last publish",
        published.elapsed()
    ));

    // QoS 0 goes on to the survivor.
    for i in 0..20 {
        pa.publish("s/q0", i.to_string(), QoS::AtMostOnce, false)
            .await
            .unwrap();
    }
    let q0 = |g: &HashMap<String, Vec<&'static str>>| {
        (0..20).all(|i| g.contains_key(&format!("s/q0 {i}")))
    };
    collect(&mut rx, &mut got, Duration::from_secs(5), q0).await;
    let survivor: Vec<_> = (0..20)
        .filter_map(|i| got.get(&format!("s/q0 {i}")))
        .collect();
    assert_eq!(survivor.len(), 20, "QoS 0 after the kill: {survivor:?}");
    assert!(survivor.iter().all(|w| w == &&vec!["ma"]));
}
