//! Bridges with Debian's mosquitto as the remote broker (README "Bridges"): mqttd runs
//! in-process with a `bridges:` entry pointing at a mosquitto started by the test, and
//! clients on both sides check what crosses: both directions, QoS 0/1/2, retained flags,
//! prefixes, the QoS cap of a topic entry, and the `$SYS` state topic.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "common/in_process.rs"]
mod in_process;
#[path = "common/mosquitto.rs"]
mod mosquitto;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use in_process::within;
use mosquitto::Mosquitto;
use mqttd::client::{Client, ClientOptions, ReceivedMessage, Subscription};
use mqttd::codec::{ProtocolVersion, QoS};
use mqttd::{App, AppHandle, Config};

const LIMIT: Duration = Duration::from_secs(10);

/// mqttd on a free loopback port, with the bridges of `bridges_yaml` (the `bridges:` section).
async fn start_mqttd(data_dir: &std::path::Path, bridges_yaml: &str) -> AppHandle {
    let yaml = format!(
        "listeners:\n  tcp: 127.0.0.1:0\n  quic: null\nstorage:\n  data_dir: {}\nlog:\n  level: warn\n{bridges_yaml}",
        data_dir.display()
    );
    let config = Config::from_yaml(&yaml, std::path::Path::new("test.yaml")).expect("valid config");
    App::new(config).start().await.expect("mqttd starts")
}

async fn client(addr: SocketAddr, id: &str) -> Client {
    let options = ClientOptions::new(addr.to_string()).client_id(id);
    Client::connect(options).await.expect("client connects").0
}

/// Waits until `$SYS/broker/connection/<name>/state` says `1`.
async fn wait_up(local: SocketAddr, name: &str) {
    let c = client(local, "state-watcher").await;
    c.subscribe(
        format!("$SYS/broker/connection/{name}/state"),
        QoS::AtLeastOnce,
    )
    .await
    .unwrap();
    within(LIMIT, "the bridge to come up", async {
        loop {
            let m = c.recv().await.unwrap();
            if &m.payload[..] == b"1" {
                return;
            }
        }
    })
    .await;
    c.disconnect().await.unwrap();
}

async fn collect(c: &Client, n: usize, what: &str) -> Vec<ReceivedMessage> {
    within(LIMIT, what, async {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(c.recv().await.expect("a message"));
        }
        out
    })
    .await
}

fn by_topic(messages: Vec<ReceivedMessage>) -> HashMap<String, ReceivedMessage> {
    messages
        .into_iter()
        .map(|m| (m.topic.to_string(), m))
        .collect()
}

const BRIDGE: &str = "bridges:
  - name: m
    addresses: [\"REMOTE\"]
    backoff: {base_ms: 50, cap_ms: 200}
    topics:
      - {pattern: \"sensors/#\", direction: out, local_prefix: \"edge/\", remote_prefix: \"site1/\"}
      - {pattern: \"cmd/#\", direction: in, local_prefix: \"edge/\", remote_prefix: \"site1/\"}
      - {pattern: \"capped/#\", direction: both, qos: 1}
";

#[tokio::test]
async fn both_directions_with_qos_retain_and_prefixes() {
    let remote = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let app = start_mqttd(
        dir.path(),
        &BRIDGE.replace("REMOTE", &remote.addr.to_string()),
    )
    .await;
    let local = app.tcp_addr().unwrap();
    wait_up(local, "m").await;

    // Out: local publishes under edge/sensors/, the remote sees site1/sensors/.
    let remote_sub = client(remote.addr, "remote-sub").await;
    remote_sub
        .subscribe_with(
            Subscription::new()
                .filter("site1/sensors/#", QoS::ExactlyOnce)
                .filter("capped/out", QoS::ExactlyOnce),
        )
        .await
        .unwrap();
    let local_pub = client(local, "local-pub").await;
    for (topic, qos, retain) in [
        ("edge/sensors/q0", QoS::AtMostOnce, false),
        ("edge/sensors/q1", QoS::AtLeastOnce, false),
        ("edge/sensors/q2", QoS::ExactlyOnce, false),
        ("edge/sensors/kept", QoS::AtLeastOnce, true),
        ("capped/out", QoS::ExactlyOnce, false),
        ("edge/other", QoS::AtLeastOnce, false),
    ] {
        local_pub.publish(topic, topic, qos, retain).await.unwrap();
    }
    let got = by_topic(collect(&remote_sub, 5, "5 messages at the remote").await);
    assert_eq!(got["site1/sensors/q0"].qos, QoS::AtMostOnce);
    assert_eq!(got["site1/sensors/q1"].qos, QoS::AtLeastOnce);
    assert_eq!(got["site1/sensors/q2"].qos, QoS::ExactlyOnce);
    assert_eq!(&got["site1/sensors/q2"].payload[..], b"edge/sensors/q2");
    // The topic entry's qos: 1 caps it.
    assert_eq!(got["capped/out"].qos, QoS::AtLeastOnce);
    assert!(got.contains_key("site1/sensors/kept"));
    // Retained at the remote: a new subscriber gets it with the flag.
    let late = client(remote.addr, "remote-late").await;
    late.subscribe("site1/sensors/kept", QoS::AtLeastOnce)
        .await
        .unwrap();
    let kept = collect(&late, 1, "the retained message at the remote").await;
    assert!(kept[0].retain, "retain flag kept across the bridge");

    // In: the remote publishes under site1/cmd/, local subscribers see edge/cmd/.
    let local_sub = client(local, "local-sub").await;
    local_sub
        .subscribe_with(
            Subscription::new()
                .filter("edge/cmd/#", QoS::ExactlyOnce)
                .filter("capped/in", QoS::ExactlyOnce),
        )
        .await
        .unwrap();
    let remote_pub = client(remote.addr, "remote-pub").await;
    for (topic, qos, retain) in [
        ("site1/cmd/q0", QoS::AtMostOnce, false),
        ("site1/cmd/q1", QoS::AtLeastOnce, false),
        ("site1/cmd/q2", QoS::ExactlyOnce, false),
        ("site1/cmd/kept", QoS::AtLeastOnce, true),
        ("capped/in", QoS::ExactlyOnce, false),
        // Out-only topics do not come back in.
        ("site1/sensors/x", QoS::AtLeastOnce, false),
    ] {
        remote_pub.publish(topic, topic, qos, retain).await.unwrap();
    }
    let got = by_topic(collect(&local_sub, 5, "5 messages in this broker").await);
    assert_eq!(got["edge/cmd/q0"].qos, QoS::AtMostOnce);
    assert_eq!(got["edge/cmd/q1"].qos, QoS::AtLeastOnce);
    assert_eq!(got["edge/cmd/q2"].qos, QoS::ExactlyOnce);
    assert_eq!(got["capped/in"].qos, QoS::AtLeastOnce);
    assert!(got.contains_key("edge/cmd/kept"));
    let late = client(local, "local-late").await;
    late.subscribe("edge/cmd/kept", QoS::AtLeastOnce)
        .await
        .unwrap();
    let kept = collect(&late, 1, "the retained message in this broker").await;
    assert!(kept[0].retain);

    // Nothing more: no echo of what crossed (No Local), nothing out-only came in.
    let extra = tokio::time::timeout(Duration::from_millis(300), local_sub.recv()).await;
    assert!(extra.is_err(), "unexpected message {extra:?}");
    // remote_sub sees remote_pub's site1/sensors/x directly, once.
    let direct = collect(&remote_sub, 1, "the remote's own message").await;
    assert_eq!(direct[0].topic, "site1/sensors/x");
    let extra = tokio::time::timeout(Duration::from_millis(300), remote_sub.recv()).await;
    assert!(extra.is_err(), "unexpected message {extra:?}");

    let stats = app.bridge_stats();
    assert_eq!(stats[0].0, "m");
    assert!(stats[0].1.up);
    assert_eq!(stats[0].1.forwarded_out, 5);
    assert_eq!(stats[0].1.forwarded_in, 5);
    assert_eq!(stats[0].1.downgraded, 2);
    app.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_1_remote() {
    let remote = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = BRIDGE
        .replace("REMOTE", &remote.addr.to_string())
        .replace("    backoff:", "    version: 3.1.1\n    backoff:");
    let app = start_mqttd(dir.path(), &yaml).await;
    let local = app.tcp_addr().unwrap();
    wait_up(local, "m").await;
    let remote_sub = Client::connect(
        ClientOptions::new(remote.addr.to_string())
            .client_id("remote-sub")
            .version(ProtocolVersion::V3_1_1),
    )
    .await
    .unwrap()
    .0;
    remote_sub
        .subscribe("site1/#", QoS::ExactlyOnce)
        .await
        .unwrap();
    let local_sub = client(local, "local-sub").await;
    local_sub
        .subscribe("edge/#", QoS::ExactlyOnce)
        .await
        .unwrap();
    let local_pub = client(local, "local-pub").await;
    local_pub
        .publish("edge/sensors/a", "out", QoS::ExactlyOnce, false)
        .await
        .unwrap();
    let out = collect(&remote_sub, 1, "the message at the remote").await;
    assert_eq!(out[0].topic, "site1/sensors/a");
    assert_eq!(out[0].qos, QoS::ExactlyOnce);
    // What the local subscriber sees: its own publish only, never an echo through mosquitto.
    let own = collect(&local_sub, 1, "the local publish").await;
    assert_eq!(own[0].topic, "edge/sensors/a");
    remote_sub
        .publish("site1/cmd/b", "in", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let inn = collect(&local_sub, 1, "the message in this broker").await;
    assert_eq!(inn[0].topic, "edge/cmd/b");
    let extra = tokio::time::timeout(Duration::from_millis(300), local_sub.recv()).await;
    assert!(extra.is_err(), "unexpected message {extra:?}");
    app.shutdown().await;
}

/// The remote stops mid-stream (SIGTERM: mosquitto saves its persistence database) and comes
/// back on the same port: every message this broker acknowledged to its publisher reaches the
/// remote subscriber's persistent session, QoS 2 ones exactly once.
#[tokio::test]
async fn remote_restart_mid_stream_loses_nothing() {
    const N: usize = 200;
    let mut remote = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "bridges:\n  - name: r\n    addresses: [\"{}\"]\n    backoff: {{base_ms: 50, cap_ms: 200}}\n    \
         max_inflight: 16\n    topics:\n      - {{pattern: \"stream/#\", direction: out}}\n",
        remote.addr
    );
    let app = start_mqttd(dir.path(), &yaml).await;
    let local = app.tcp_addr().unwrap();
    wait_up(local, "r").await;

    let remote_addr = remote.addr;
    let sub_options = move || {
        ClientOptions::new(remote_addr.to_string())
            .client_id("remote-sub")
            .clean_start(false)
            .session_expiry(3600)
    };
    let sub = Client::connect(sub_options()).await.unwrap().0;
    sub.subscribe("stream/#", QoS::ExactlyOnce).await.unwrap();

    let publisher = client(local, "local-pub").await;
    let publishing = tokio::spawn(async move {
        for i in 0..N {
            let qos = if i % 2 == 0 {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            publisher
                .publish(format!("stream/{i}"), i.to_string(), qos, false)
                .await
                .expect("this broker acknowledges");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        publisher
    });

    // Receive a part of the stream, then take the remote away while the rest is published.
    let mut got: Vec<ReceivedMessage> = collect(&sub, N / 4, "the first quarter").await;
    remote.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // What the subscriber had received before its connection ended.
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(50), sub.recv()).await {
        got.push(m);
    }
    remote.restart();
    let publisher = within(LIMIT, "the publisher to finish", publishing)
        .await
        .unwrap();

    let sub = Client::connect(sub_options()).await.unwrap().0;
    let mut seen = std::collections::HashSet::new();
    for m in &got {
        seen.insert(m.topic.to_string());
    }
    within(
        Duration::from_secs(15),
        "every message at the remote",
        async {
            while seen.len() < N {
                let m = sub.recv().await.expect("a message");
                seen.insert(m.topic.to_string());
                got.push(m);
            }
        },
    )
    .await;
    // Duplicates may only be QoS 1 ones (at least once); QoS 2 arrive once.
    let extra = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await;
    if let Ok(Ok(m)) = extra {
        got.push(m);
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in &got {
        *counts.entry(m.topic.to_string()).or_default() += 1;
    }
    for i in (1..N).step_by(2) {
        assert_eq!(counts[&format!("stream/{i}")], 1, "QoS 2 message {i}");
    }
    assert!(app.bridge_stats()[0].1.reconnects >= 1);
    publisher.disconnect().await.unwrap();
    app.shutdown().await;
}

/// Loop test: this broker and mosquitto bridged both ways on the same topics (one bridge,
/// `direction: both`): a message published on either side reaches each side's subscriber
/// exactly once, and nothing circulates (No Local on both of the bridge's subscriptions).
#[tokio::test]
async fn both_ways_on_the_same_topics_delivers_each_message_once() {
    const N: usize = 10;
    let remote = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "bridges:\n  - name: loop\n    addresses: [\"{}\"]\n    backoff: {{base_ms: 50, cap_ms: 200}}\n    \
         topics:\n      - {{pattern: \"loop/#\", direction: both}}\n",
        remote.addr
    );
    let app = start_mqttd(dir.path(), &yaml).await;
    let local = app.tcp_addr().unwrap();
    wait_up(local, "loop").await;

    let local_sub = client(local, "local-sub").await;
    local_sub
        .subscribe("loop/#", QoS::ExactlyOnce)
        .await
        .unwrap();
    let remote_sub = client(remote.addr, "remote-sub").await;
    remote_sub
        .subscribe("loop/#", QoS::ExactlyOnce)
        .await
        .unwrap();
    let local_pub = client(local, "local-pub").await;
    let remote_pub = client(remote.addr, "remote-pub").await;
    for i in 0..N {
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][i % 3];
        local_pub
            .publish(format!("loop/here/{i}"), "x", qos, false)
            .await
            .unwrap();
        remote_pub
            .publish(format!("loop/there/{i}"), "x", qos, false)
            .await
            .unwrap();
    }
    for (sub, side) in [(&local_sub, "this broker"), (&remote_sub, "the remote")] {
        let got = collect(sub, 2 * N, side).await;
        let mut counts: HashMap<String, usize> = HashMap::new();
        for m in &got {
            *counts.entry(m.topic.to_string()).or_default() += 1;
        }
        assert_eq!(counts.len(), 2 * N, "{side}: {counts:?}");
        // Nothing comes round again.
        let extra = tokio::time::timeout(Duration::from_millis(500), sub.recv()).await;
        assert!(extra.is_err(), "{side}: unexpected {extra:?}");
    }
    let stats = app.bridge_stats();
    assert_eq!(stats[0].1.forwarded_out, N as u64);
    assert_eq!(stats[0].1.forwarded_in, N as u64);
    app.shutdown().await;
}
