//! Liveness in a cluster (README "Cluster", proto-ext/cluster.md "Liveness"): the wills of a
//! node killed with SIGKILL are published by another node after the detection delay, once,
//! and not for a client that reconnected elsewhere; a node that loses NATS refuses new
//! clients, drops its clients after the grace period and rejoins by itself; a NATS server
//! killed in a three-server NATS cluster loses no acknowledged QoS 1 message. Short timings
//! (a config file) keep each test to a few seconds.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "cluster/nats_servers.rs"]
mod nats_servers;
#[path = "cluster/support.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqttd::codec::{
    Ack, Connect, Packet, Properties, PropertyValues, Publish, QoS, ReasonCode, Will,
};
use nats_servers::{Server, Trio};
use support::{clean, Cluster, Nats, Raw, Read};

/// `cluster.heartbeat_ms`, `cluster.nats_grace_ms`, `cluster.node_timeout_ms` of the fast tests.
const HEARTBEAT_MS: u64 = 200;
const GRACE_MS: u64 = 800;
const NODE_TIMEOUT_MS: u64 = 1600;

fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("mqttd.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn fast_config(dir: &Path) -> PathBuf {
    config_file(
        dir,
        &format!(
            "cluster:\n  heartbeat_ms: {HEARTBEAT_MS}\n  nats_grace_ms: {GRACE_MS}\n  \
             node_timeout_ms: {NODE_TIMEOUT_MS}\n"
        ),
    )
}

/// CONNECT for a session that outlives its connection by `expiry` seconds.
fn persistent(client_id: &str, expiry: u32) -> Connect {
    Connect {
        clean_start: false,
        properties: PropertyValues {
            session_expiry_interval: Some(expiry),
            ..Default::default()
        }
        .into(),
        ..clean(client_id)
    }
}

fn with_will(client_id: &str) -> Connect {
    let mut c = clean(client_id);
    c.will = Some(Will {
        topic: format!("will/{client_id}").into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    });
    c
}

async fn subscribed(raw: &mut Raw, filter: &str) {
    raw.send(&support::subscribe_packet(filter, QoS::AtLeastOnce))
        .await
        .unwrap();
    loop {
        if let Packet::SubAck(_) = raw.next("SUBACK").await {
            return;
        }
    }
}

/// Topics of the PUBLISH packets read for `wait` (each acknowledged).
async fn topics_for(raw: &mut Raw, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut topics = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match raw.read(left).await {
            Read::Packet(Packet::Publish(p)) => {
                if let Some(id) = p.packet_id {
                    raw.send(&Packet::PubAck(Ack::new(id))).await.unwrap();
                }
                topics.push(p.topic.to_string());
            }
            Read::Packet(_) => {}
            Read::Closed | Read::Timeout => break,
        }
    }
    topics
}

#[tokio::test]
async fn a_dead_nodes_wills_are_published_once_and_not_for_a_client_connected_elsewhere() {
    let nats = Nats::start();
    let cluster = Cluster::new(&nats.url);
    let config = fast_config(cluster.dir.path());
    let args = ["--config", config.to_str().unwrap()];
    let a = cluster.node("a", &args);
    let b = cluster.node("b", &args);
    let c = cluster.node("c", &args);

    let (mut watcher, _) = Raw::connect(c.addr(), clean("watcher")).await.unwrap();
    subscribed(&mut watcher, "will/#").await;
    let (_x, _) = Raw::connect(a.addr(), with_will("x")).await.unwrap();
    let (_y, _) = Raw::connect(a.addr(), with_will("y")).await.unwrap();
    // Claims and wills reach NATS.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let a_log = a.log.clone();
    let killed = Instant::now();
    a.process.kill9();
    // y reconnects on b before a is declared dead: it lives, no will.
    let (_y_again, _) = Raw::connect(b.addr(), clean("y")).await.unwrap();

    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.iter().any(|t| t == "will/x") && Instant::now() < deadline {
        got.extend(topics_for(&mut watcher, Duration::from_millis(200)).await);
    }
    let delay = killed.elapsed();
    // Anything more (a second copy, y's will) would come right after.
    got.extend(topics_for(&mut watcher, Duration::from_millis(1500)).await);
    assert_eq!(
        got,
        vec!["will/x".to_string()],
        "x's will, once; none for y\nnode b:\n{}\nnode c:\n{}\nnode a:\n{}",
        b.process.log_tail(20),
        c.process.log_tail(20),
        std::fs::read_to_string(&a_log).unwrap_or_default()
    );
    println!("will published {} ms after the SIGKILL", delay.as_millis());
    assert!(
        delay >= Duration::from_millis(NODE_TIMEOUT_MS - HEARTBEAT_MS),
        "not before the node timeout: {delay:?}"
    );
}

#[tokio::test]
async fn a_node_restarted_before_it_is_declared_dead_publishes_its_previous_runs_wills() {
    let nats = Nats::start();
    let cluster = Cluster::new(&nats.url);
    // A node timeout long enough to tell "at restart" from "declared dead".
    let config = config_file(
        cluster.dir.path(),
        "cluster:\n  heartbeat_ms: 200\n  nats_grace_ms: 800\n  node_timeout_ms: 10000\n",
    );
    let args = ["--config", config.to_str().unwrap()];
    let a = cluster.node("a", &args);
    let b = cluster.node("b", &args);
    let (mut watcher, _) = Raw::connect(b.addr(), clean("watcher")).await.unwrap();
    subscribed(&mut watcher, "will/#").await;
    let (_x, _) = Raw::connect(a.addr(), with_will("x")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed = Instant::now();
    a.process.kill9();
    let a_again = cluster.node("a", &args);
    let mut got = Vec::new();
    while got.is_empty() && killed.elapsed() < Duration::from_secs(8) {
        got.extend(topics_for(&mut watcher, Duration::from_millis(100)).await);
    }
    println!(
        "will published {} ms after the SIGKILL (node timeout 10 s)",
        killed.elapsed().as_millis()
    );
    // Not a second time (its store also had it: the restarted node leaves it to the cluster).
    got.extend(topics_for(&mut watcher, Duration::from_secs(1)).await);
    assert_eq!(
        got,
        vec!["will/x".to_string()],
        "node b:\n{}\nnode a:\n{}",
        b.process.log_tail(20),
        a_again.process.log_tail(40)
    );
}

/// Connects, retrying while the node refuses or does not answer; the CONNACK's reason
/// codes of the refusals seen.
async fn connect_until_accepted(
    addr: std::net::SocketAddr,
    connect: Connect,
    within: Duration,
) -> (Raw, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut refusals = Vec::new();
    loop {
        match Raw::connect(addr, connect.clone()).await {
            Ok((raw, _)) => return (raw, refusals),
            Err(e) => refusals.push(e),
        }
        assert!(
            Instant::now() < deadline,
            "not accepted within {within:?}: {refusals:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_node_that_loses_nats_refuses_clients_drops_them_after_the_grace_and_rejoins() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Server::single(dir.path(), "solo");
    let cluster = Cluster::new(&nats.url());
    let config = fast_config(cluster.dir.path());
    let a = cluster.node("a", &["--config", config.to_str().unwrap()]);

    let watcher_connect = persistent("watcher", 60);
    let (mut watcher, _) = Raw::connect(a.addr(), watcher_connect.clone())
        .await
        .unwrap();
    subscribed(&mut watcher, "will/#").await;
    let (mut x, _) = Raw::connect(a.addr(), with_will("x")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    nats.kill9();
    let lost = Instant::now();
    // Refused as soon as the node knows (CONNACK 0x88 Server unavailable).
    let unavailable = format!("{:?}", ReasonCode::SERVER_UNAVAILABLE);
    loop {
        match Raw::connect(a.addr(), clean("late")).await {
            Err(e) if e.contains(&unavailable) => break,
            Err(e) => panic!("refused otherwise: {e}"),
            Ok(_) => {
                assert!(
                    lost.elapsed() < Duration::from_millis(GRACE_MS),
                    "still accepting after the grace"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let refused_after = lost.elapsed();
    // Its clients go after the grace, told to use another server.
    let reason = support::disconnect_reason(&mut x, Duration::from_secs(5)).await;
    let dropped_after = lost.elapsed();
    assert_eq!(
        reason,
        Some(ReasonCode::USE_ANOTHER_SERVER),
        "{}",
        a.process.log_tail(20)
    );
    assert!(
        dropped_after >= Duration::from_millis(GRACE_MS - 2 * HEARTBEAT_MS),
        "not before the grace: {dropped_after:?}"
    );
    assert_eq!(
        support::disconnect_reason(&mut watcher, Duration::from_secs(2)).await,
        Some(ReasonCode::USE_ANOTHER_SERVER)
    );

    // NATS comes back: the node accepts again by itself, and x's will, orphaned while the
    // node was cut off, is published (into the watcher's session).
    nats.start();
    let back = Instant::now();
    let (mut watcher, _) =
        connect_until_accepted(a.addr(), watcher_connect, Duration::from_secs(15)).await;
    let accepted_after = back.elapsed();
    // QoS 1 reaches subscribers through the stream, whose consumer on this node recovers from
    // the NATS restart within seconds (cluster/inbound.rs).
    let mut got = Vec::new();
    while got.is_empty() && back.elapsed() < Duration::from_secs(30) {
        got.extend(topics_for(&mut watcher, Duration::from_millis(200)).await);
    }
    let will_after = back.elapsed();
    got.extend(topics_for(&mut watcher, Duration::from_millis(500)).await);
    println!(
        "refused {} ms after the loss, clients dropped after {} ms, accepting {} ms after NATS came back, x's will {} ms after",
        refused_after.as_millis(),
        dropped_after.as_millis(),
        accepted_after.as_millis(),
        will_after.as_millis()
    );
    assert_eq!(
        got,
        vec!["will/x".to_string()],
        "{}",
        a.process.log_tail(30)
    );
}

/// A QoS 1 publisher that counts what was acknowledged: it sends `0`, `1`, ... one at a time,
/// again after a refusal (PUBACK 0x80) or a lost connection, until `n` were acknowledged.
async fn publish_acknowledged(
    addr: std::net::SocketAddr,
    n: usize,
    acked: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut confirmed = Vec::new();
    let mut raw = None;
    let mut packet_id = 0u16;
    let mut i = 0;
    while i < n {
        if raw.is_none() {
            raw = Some(
                connect_until_accepted(addr, clean("pub"), Duration::from_secs(30))
                    .await
                    .0,
            );
        }
        let Some(conn) = raw.as_mut() else { continue };
        packet_id = packet_id % 60_000 + 1;
        let payload = i.to_string();
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "load/x".into(),
            packet_id: Some(packet_id),
            properties: Properties::default(),
            payload: Bytes::from(payload.clone()),
        });
        if conn.send(&p).await.is_err() {
            raw = None;
            continue;
        }
        match conn.read(Duration::from_secs(10)).await {
            Read::Packet(Packet::PubAck(a)) if a.packet_id == packet_id => {
                if a.code == ReasonCode::SUCCESS {
                    confirmed.push(payload);
                    i += 1;
                    acked.store(i, Ordering::Relaxed);
                }
            }
            _ => raw = None,
        }
    }
    confirmed
}

/// A persistent QoS 1 subscriber that collects payloads until stopped, resuming its session
/// when its node drops it.
async fn collect(
    addr: std::net::SocketAddr,
    got: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicUsize>,
) {
    let connect = persistent("sub", 300);
    let (mut raw, _) = Raw::connect(addr, connect.clone()).await.unwrap();
    subscribed(&mut raw, "load/#").await;
    while stop.load(Ordering::Relaxed) == 0 {
        match raw.read(Duration::from_millis(200)).await {
            Read::Packet(Packet::Publish(p)) => {
                if let Some(id) = p.packet_id {
                    let _ = raw.send(&Packet::PubAck(Ack::new(id))).await;
                }
                got.lock()
                    .unwrap()
                    .insert(String::from_utf8_lossy(&p.payload).into_owned());
            }
            Read::Closed => {
                raw = connect_until_accepted(addr, connect.clone(), Duration::from_secs(30))
                    .await
                    .0;
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_killed_in_a_three_server_nats_cluster_loses_nothing_acknowledged() {
    const N: usize = 300;
    let mut trio = Trio::start();
    // Node a on NATS server 1 (killed), node b on server 2; each learns the others from it.
    let on_1 = Cluster::new(&trio.servers[0].url());
    let on_2 = Cluster::new(&trio.servers[1].url());
    let text = "cluster:\n  replicas: 3\n  ack_timeout_ms: 2000\n  heartbeat_ms: 500\n  \
                nats_grace_ms: 4000\n  node_timeout_ms: 8000\n";
    let config = config_file(on_1.dir.path(), text);
    let args = ["--config", config.to_str().unwrap()];
    let a = on_1.node("a", &args);
    let b = on_2.node("b", &args);

    let got = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicUsize::new(0));
    let subscriber = tokio::spawn(collect(b.addr(), got.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = Arc::new(AtomicUsize::new(0));
    let publisher = tokio::spawn(publish_acknowledged(a.addr(), N, acked.clone()));

    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.load(Ordering::Relaxed) < N / 3 {
        assert!(Instant::now() < deadline, "{}", a.process.log_tail(20));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    trio.servers[0].kill9();
    let killed_at = acked.load(Ordering::Relaxed);

    let confirmed = tokio::time::timeout(Duration::from_secs(90), publisher)
        .await
        .expect("the publisher finished within 90 s")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let missing: Vec<String> = {
            let got = got.lock().unwrap();
            confirmed
                .iter()
                .filter(|p| !got.contains(*p))
                .cloned()
                .collect()
        };
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.store(1, Ordering::Relaxed);
    let _ = subscriber.await;
    println!("{N} acknowledged, NATS server 1 killed after {killed_at}");
    assert!(
        missing.is_empty(),
        "{} acknowledged messages lost: {:?}\nnats 2:\n{}\nnats 3:\n{}\nnode a:\n{}\nnode b:\n{}",
        missing.len(),
        missing.iter().take(20).collect::<Vec<_>>(),
        trio.servers[1].log_tail(),
        trio.servers[2].log_tail(),
        a.process.log_tail(30),
        b.process.log_tail(30)
    );
}
