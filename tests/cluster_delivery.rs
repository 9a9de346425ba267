//! Cross-node delivery in a cluster (README "Cluster"): a nats-server with JetStream and two
//! or three mqttd nodes, each started here on free ports and stopped at the end. Clients on
//! different nodes: mosquitto_pub/mosquitto_sub and paho-mqtt at QoS 0/1/2 (in order, once
//! each), retained messages across nodes (and on a node started later), and MQTT 5.0's rules
//! across nodes with the bundled client (subscription identifiers, Retain As Published, `$`
//! topics, properties).
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
// The cluster support reuses the persistence tests' process handling, which has its own copy
// of common/listening.rs.
#[allow(clippy::duplicate_mod)]
#[path = "cluster/support.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run_python, run_with_timeout, RunningProgram};
use mqttd::client::{Client, ClientOptions, Subscription};
use mqttd::codec::{QoS, SubscriptionOptions};
use support::{Cluster, Nats};

const N: usize = 20;

fn mosquitto_sub(port: &str, args: &[&str]) -> RunningProgram {
    // Line-buffered, so the SUBACK line arrives while it runs.
    let mut cmd = Command::new("stdbuf");
    cmd.args([
        "-oL",
        "mosquitto_sub",
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "-d",
        "-v",
    ])
    .args(args);
    let mut sub = RunningProgram::spawn(&mut cmd);
    sub.wait_for_line(|l| l.contains("received SUBACK"), Duration::from_secs(5))
        .expect("mosquitto_sub subscribed");
    sub
}

/// Lines of `-v` output (`TOPIC PAYLOAD`) for topics under `prefix`.
fn messages(stdout: &str, prefix: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn mosquitto_clients_across_nodes_at_each_qos() {
    let nats = Nats::start();
    let cluster = Cluster::new(&nats.url);
    let a = cluster.node("a", &[]);
    let b = cluster.node("b", &[]);
    let sub = mosquitto_sub(
        &b.port(),
        &["-q", "2", "-t", "x/#", "-C", &(3 * N).to_string()],
    );
    for qos in ["0", "1", "2"] {
        // One connection per QoS, N messages in order (`-l`: one message per stdin line).
        let lines: String = (0..N).map(|i| format!("{i}\n")).collect();
        let mut publisher = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &a.port(), "-q", qos, "-t"])
            .arg(format!("x/q{qos}"))
            .arg("-l")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        publisher
            .stdin
            .take()
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
        assert!(
            publisher.wait().unwrap().success(),
            "mosquitto_pub -q {qos}"
        );
    }
    let out = sub.wait(Duration::from_secs(10));
    let got = messages(&out.stdout, "x/");
    for qos in ["0", "1", "2"] {
        let of_qos: Vec<&String> = got
            .iter()
            .filter(|l| l.starts_with(&format!("x/q{qos} ")))
            .collect();
        let expected: Vec<String> = (0..N).map(|i| format!("x/q{qos} {i}")).collect();
        assert_eq!(
            of_qos,
            expected.iter().collect::<Vec<_>>(),
            "QoS {qos}: every message once, in order\n{}\nnode a:\n{}\nnode b:\n{}",
            out.describe(),
            a.process.log_tail(20),
            b.process.log_tail(20)
        );
    }
}

#[test]
fn paho_across_nodes_at_each_qos() {
    let nats = Nats::start();
    let cluster = Cluster::new(&nats.url);
    let a = cluster.node("a", &[]);
    let b = cluster.node("b", &[]);
    let out = run_python(
        "paho_cluster.py",
        &["--port-a", &a.port(), "--port-b", &b.port()],
        Duration::from_secs(40),
    );
    assert!(out.success(), "{}", out.describe());
}

/// Retained messages are cluster-wide: set on A, read on B within a bounded delay (measured),
/// read by a node started afterwards, cleared on B and gone on A.
#[test]
fn retained_messages_across_nodes() {
    let nats = Nats::start();
    let cluster = Cluster::new(&nats.url);
    let a = cluster.node("a", &[]);
    let b = cluster.node("b", &[]);
    let pub_a = run_with_timeout(
        Command::new("mosquitto_pub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &a.port(),
            "-q",
            "1",
            "-r",
            "-t",
            "r/one",
            "-m",
            "kept",
        ]),
        Duration::from_secs(5),
    );
    assert!(pub_a.success(), "{}", pub_a.describe());
    let started = Instant::now();
    let read = |port: &str| {
        run_with_timeout(
            Command::new("mosquitto_sub").args([
                "-h",
                "127.0.0.1",
                "-p",
                port,
                "-t",
                "r/#",
                "-v",
                "-W",
                "1",
                "-C",
                "1",
            ]),
            Duration::from_secs(5),
        )
        .stdout
    };
    let delay = loop {
        if read(&b.port()).contains("r/one kept") {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "retained message never reached node b"
        );
    };
    common::note(format!(
        "retained message visible on the other node after {delay:?}"
    ));
    // A node started afterwards loads the bucket.
    let c = cluster.node("c", &[]);
    let started = Instant::now();
    while !read(&c.port()).contains("r/one kept") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "retained message never reached node c"
        );
    }
    // Cleared on B: gone everywhere.
    let clear = run_with_timeout(
        Command::new("mosquitto_pub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &b.port(),
            "-q",
            "1",
            "-r",
            "-t",
            "r/one",
            "-n",
        ]),
        Duration::from_secs(5),
    );
    assert!(clear.success());
    let started = Instant::now();
    while read(&a.port()).contains("r/one") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "cleared retained message still on node a"
        );
    }
}

async fn connect(port: &str, id: &str) -> Client {
    Client::connect(ClientOptions::new(format!("127.0.0.1:{port}")).client_id(id))
        .await
        .unwrap()
        .0
}

async fn recv(c: &Client) -> mqttd::client::ReceivedMessage {
    tokio::time::timeout(Duration::from_secs(5), c.recv())
        .await
        .expect("a message within 5 s")
        .unwrap()
}

/// MQTT 5.0 across nodes: subscription identifiers and Retain As Published are the
/// subscriber's node's business, the retain flag and properties cross; `#` does not match a
/// `$` topic from another node, `$app/#` does; overlapping subscriptions get one copy.
#[tokio::test]
async fn mqtt5_rules_across_nodes() {
    let nats = Nats::start();
    let cluster = Cluster::new(&nats.url);
    let a = cluster.node("a", &[]);
    let b = cluster.node("b", &[]);
    let sub = connect(&b.port(), "rules-sub").await;
    let rap = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: false,
        retain_as_published: true,
        retain_handling: 0,
    };
    sub.subscribe_with(Subscription::new().filter_with("#", rap).id(7))
        .await
        .unwrap();
    sub.subscribe_with(Subscription::new().filter("t/+", QoS::AtLeastOnce).id(9))
        .await
        .unwrap();
    let dollar = connect(&b.port(), "rules-dollar").await;
    dollar.subscribe("$app/#", QoS::AtLeastOnce).await.unwrap();

    let publisher = connect(&a.port(), "rules-pub").await;
    publisher
        .publish("$app/x", "dollar", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    publisher
        .publish("t/1", "flagged", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    let m = recv(&dollar).await;
    assert_eq!((&m.topic[..], &m.payload[..]), ("$app/x", &b"dollar"[..]));
    // `#` skipped the `$` topic: the first message it sees is t/1, once, with both ids.
    let m = recv(&sub).await;
    assert_eq!((&m.topic[..], &m.payload[..]), ("t/1", &b"flagged"[..]));
    assert!(m.retain, "Retain As Published keeps the flag across nodes");
    let mut ids = m.properties.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(
        ids,
        vec![7, 9],
        "one delivery carrying both subscription identifiers"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sub.recv())
            .await
            .is_err(),
        "no second copy"
    );
}
