//! A bridge survives `kill -9` of this broker (README "Bridges"): the `mqttd` binary runs with
//! a configuration file holding a bridge to a mosquitto that is down, a publisher's QoS 1/2
//! messages are acknowledged and queue in the bridge's session, mqttd is killed with SIGKILL
//! and started again on the same data directory, then mosquitto comes up: every message
//! reaches the remote subscriber's persistent session, QoS 2 ones exactly once.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "persistence/support.rs"]
mod support;

use std::collections::HashMap;
use std::time::Duration;

use mosquitto::Mosquitto;
use mqttd::client::{Client, ClientOptions};
use mqttd::codec::QoS;
use support::BrokerProcess;

const N: usize = 20;

fn remote_sub(remote: &Mosquitto) -> ClientOptions {
    ClientOptions::new(remote.addr.to_string())
        .client_id("remote-sub")
        .clean_start(false)
        .session_expiry(3600)
}

#[tokio::test]
async fn queued_messages_survive_kill_9_and_go_out_after_the_restart() {
    // The remote subscriber's session exists at mosquitto; then mosquitto goes down.
    let mut remote = Mosquitto::start();
    let sub = Client::connect(remote_sub(&remote)).await.unwrap().0;
    sub.subscribe("site/q/#", QoS::ExactlyOnce).await.unwrap();
    sub.disconnect().await.unwrap();
    remote.stop();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mqttd.yaml");
    std::fs::write(
        &config,
        format!(
            "bridges:\n  - name: down\n    addresses: [\"{}\"]\n    backoff: {{base_ms: 50, cap_ms: 200}}\n    \
             topics:\n      - {{pattern: \"q/#\", direction: out, remote_prefix: \"site/\"}}\n",
            remote.addr
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let log = dir.path().join("mqttd.log");
    let config_arg = config.to_str().unwrap();

    let broker = BrokerProcess::start(&data, &log, &["--config", config_arg]);
    let publisher = Client::connect(ClientOptions::new(broker.addr.to_string()).client_id("pub"))
        .await
        .unwrap()
        .0;
    // The bridge subscribed before the broker served any client; its state (`0`, retained)
    // says the remote is down.
    publisher
        .subscribe("$SYS/broker/connection/down/state", QoS::AtMostOnce)
        .await
        .unwrap();
    let state = tokio::time::timeout(Duration::from_secs(10), publisher.recv())
        .await
        .expect("the bridge's state")
        .unwrap();
    assert_eq!(&state.payload[..], b"0", "the remote is down");
    for i in 0..N {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        publisher
            .publish(format!("q/{i}"), i.to_string(), qos, false)
            .await
            .expect("this broker acknowledges");
    }
    broker.kill9();
    drop(publisher);

    let broker = BrokerProcess::start(&data, &log, &["--config", config_arg]);
    remote.restart();
    let sub = Client::connect(remote_sub(&remote)).await.unwrap().0;
    let mut counts: HashMap<String, usize> = HashMap::new();
    let all = tokio::time::timeout(Duration::from_secs(15), async {
        while counts.len() < N {
            let m = sub.recv().await.expect("a message");
            *counts.entry(m.topic.to_string()).or_default() += 1;
        }
    })
    .await;
    assert!(
        all.is_ok(),
        "only {} of {N} messages arrived: {counts:?}\nmqttd log:\n{}",
        counts.len(),
        broker.log_tail(40)
    );
    if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await {
        *counts.entry(m.topic.to_string()).or_default() += 1;
    }
    for i in (1..N).step_by(2) {
        assert_eq!(counts[&format!("site/q/{i}")], 1, "QoS 2 message {i}");
    }
    broker.stop();
}
