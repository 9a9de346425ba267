//! Interop with the `mqtt5` crate's QUIC client (LabOverWire/mqtt-lib), an independent
//! implementation of MQTT over QUIC and of the MQTT-next flow headers: each of its stream
//! strategies, with and without flow headers (ALPN MQTT-next), with and without datagrams.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt5::transport::StreamStrategy;
use mqtt5::MqttClient;

const WAIT: Duration = Duration::from_secs(5);

/// (topic, payload) of every message the subscriber got.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn start() -> (mqttd::server::ServerHandle, tempfile::TempDir) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mut config = mqttd::Config::default();
    config.listeners.tcp = None;
    config.listeners.quic = Some("127.0.0.1:0".parse().unwrap());
    config.storage.data_dir = Some(dir.path().to_path_buf());
    (mqttd::server::start(config).await.unwrap(), dir)
}

async fn client(
    server: &mqttd::server::ServerHandle,
    id: &str,
    strategy: StreamStrategy,
    flows: bool,
    datagrams: bool,
) -> MqttClient {
    let client = MqttClient::new(id);
    let ca = std::fs::read(server.cert_path().unwrap()).unwrap();
    client.set_tls_config(None, None, Some(ca)).await;
    client.set_quic_stream_strategy(strategy).await;
    client.set_quic_flow_headers(flows).await;
    client.set_quic_datagrams(datagrams).await;
    let url = format!("quic://127.0.0.1:{}", server.quic_addr().unwrap().port());
    tokio::time::timeout(WAIT, client.connect(&url))
        .await
        .unwrap_or_else(|_| panic!("{id}: connect timed out"))
        .unwrap_or_else(|e| panic!("{id}: connect failed: {e}"));
    client
}

/// Publishes QoS 0/1/2 on two topics with `strategy` and checks a subscriber gets all of them.
async fn round_trip(strategy: StreamStrategy, flows: bool, datagrams: bool) {
    let (server, _dir) = start().await;
    let tag = format!("{strategy:?}-{flows}-{datagrams}");
    let sub = client(
        &server,
        &format!("sub-{tag}"),
        StreamStrategy::ControlOnly,
        flows,
        false,
    )
    .await;
    let received: Received = Arc::default();
    let sink = received.clone();
    sub.subscribe("interop/#", move |m| {
        sink.lock()
            .unwrap()
            .push((m.topic.clone(), m.payload.to_vec()))
    })
    .await
    .unwrap();
    let publ = client(&server, &format!("pub-{tag}"), strategy, flows, datagrams).await;
    let mut expected = Vec::new();
    for (i, topic) in ["interop/a", "interop/b"].iter().enumerate() {
        let q0 = format!("q0-{i}");
        let q1 = format!("q1-{i}");
        let q2 = format!("q2-{i}");
        publ.publish_qos0(*topic, q0.as_bytes().to_vec())
            .await
            .unwrap();
        tokio::time::timeout(WAIT, publ.publish_qos1(*topic, q1.as_bytes().to_vec()))
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(WAIT, publ.publish_qos2(*topic, q2.as_bytes().to_vec()))
            .await
            .unwrap()
            .unwrap();
        expected.extend([q0, q1, q2].map(|p| (topic.to_string(), p.into_bytes())));
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while received.lock().unwrap().len() < expected.len() && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got = received.lock().unwrap().clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{tag}: every message exactly once");
    let metrics = server.metrics().await.unwrap();
    if datagrams {
        assert_eq!(
            metrics.datagrams_received, 2,
            "{tag}: QoS 0 came in datagrams"
        );
    } else {
        assert_eq!(metrics.datagrams_received, 0);
    }
    publ.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn control_only() {
    round_trip(StreamStrategy::ControlOnly, false, false).await;
    round_trip(StreamStrategy::ControlOnly, true, false).await;
}

#[tokio::test]
async fn data_per_publish_on_unidirectional_streams() {
    round_trip(StreamStrategy::DataPerPublish, false, false).await;
    round_trip(StreamStrategy::DataPerPublish, true, false).await;
}

#[tokio::test]
async fn data_per_topic_with_flow_headers() {
    round_trip(StreamStrategy::DataPerTopic, false, false).await;
    round_trip(StreamStrategy::DataPerTopic, true, false).await;
}

#[tokio::test]
async fn qos0_in_datagrams() {
    round_trip(StreamStrategy::ControlOnly, false, true).await;
    round_trip(StreamStrategy::DataPerTopic, true, true).await;
}
