//! The bundled client with mqttd's QUIC extensions against the in-process broker: QoS 0 in
//! datagrams both ways (`proto-ext/datagrams.md`), the fallback to the stream, deliveries on
//! server-initiated streams (`proto-ext/flows.md` section 7), and `mqttd pub/sub --datagram`.
//!
//! Each test checks the broker's datagram counters and the client's, so a test fails if the
//! stream was used silently.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use mqttd::client::{
    Client, ClientOptions, Message, QuicOptions, StreamMapping, Subscription, Transport,
};
use mqttd::codec::QoS;

#[path = "common/in_process.rs"]
mod in_process;

use in_process::Broker;

const WAIT: Duration = Duration::from_secs(5);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    in_process::within(WAIT, what, future).await
}

async fn broker() -> Broker {
    in_process::start(|_| {}).await
}

fn options(b: &Broker, id: &str) -> ClientOptions {
    ClientOptions::new(b.quic.to_string())
        .transport(Transport::Quic(QuicOptions {
            ca_file: Some(b.cert.clone()),
            insecure: false,
            server_name: None,
        }))
        .client_id(id)
}

async fn connect(options: ClientOptions) -> (Client, mqttd::client::Connected) {
    within("connect", Client::connect(options))
        .await
        .expect("connects")
}

#[tokio::test]
async fn qos0_travels_in_datagrams_both_ways() {
    let b = broker().await;
    let (sub, connected) = connect(options(&b, "dg-sub").datagrams(true)).await;
    assert_eq!(connected.quic.datagrams, Some(true), "{:?}", connected.quic);
    assert!(connected.quic.datagram_max_size.unwrap() >= 1000);
    sub.subscribe("dg/#", QoS::AtMostOnce).await.unwrap();
    let (publ, _) = connect(options(&b, "dg-pub").datagrams(true)).await;
    for i in 0..5 {
        publ.publish(format!("dg/{i}"), format!("m{i}"), QoS::AtMostOnce, false)
            .await
            .unwrap();
    }
    // Datagrams are unordered: compare as a set.
    let mut topics = Vec::new();
    for _ in 0..5 {
        let m = within("a datagram delivery", sub.recv()).await.unwrap();
        topics.push(m.topic.to_string());
    }
    topics.sort();
    assert_eq!(topics, ["dg/0", "dg/1", "dg/2", "dg/3", "dg/4"]);
    let sent = publ.quic_stats();
    assert_eq!((sent.datagrams_sent, sent.datagrams_fallback), (5, 0));
    let received = sub.quic_stats();
    assert_eq!(
        (received.datagrams_received, received.datagrams_dropped),
        (5, 0)
    );
    let metrics = b.server.metrics().await.unwrap();
    assert_eq!(metrics.datagrams_received, 5, "{metrics:?}");
    assert_eq!(metrics.datagrams_sent, 5, "{metrics:?}");
    publ.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_subscription_may_ask_for_datagrams_alone() {
    let b = broker().await;
    let (sub, connected) = connect(options(&b, "dgs-sub")).await;
    assert_eq!(connected.quic.datagrams, None, "not asked, not answered");
    let by_datagram = Subscription::new()
        .filter("fast/#", QoS::AtMostOnce)
        .datagrams();
    sub.subscribe_with(by_datagram).await.unwrap();
    sub.subscribe("slow/#", QoS::AtMostOnce).await.unwrap();
    let (publ, _) = connect(options(&b, "dgs-pub")).await;
    publ.publish("fast/1", "f", QoS::AtMostOnce, false)
        .await
        .unwrap();
    publ.publish("slow/1", "s", QoS::AtMostOnce, false)
        .await
        .unwrap();
    let mut topics = vec![
        within("first", sub.recv()).await.unwrap().topic,
        within("second", sub.recv()).await.unwrap().topic,
    ];
    topics.sort();
    assert_eq!(topics, ["fast/1", "slow/1"]);
    assert_eq!(sub.quic_stats().datagrams_received, 1);
    let metrics = b.server.metrics().await.unwrap();
    assert_eq!((metrics.datagrams_sent, metrics.datagrams_received), (1, 0));
    b.server.shutdown().await;
}

#[tokio::test]
async fn too_large_qos0_and_any_qos1_go_on_the_stream() {
    let b = broker().await;
    let (sub, _) = connect(options(&b, "big-sub").datagrams(true)).await;
    sub.subscribe("big/#", QoS::AtLeastOnce).await.unwrap();
    let (publ, _) = connect(options(&b, "big-pub").datagrams(true)).await;
    // Larger than any QUIC datagram: on loopback packets are up to quic.max_udp_payload
    // (8,952 bytes) from the start, elsewhere the path MTU (about 1,200 to 1,500 bytes).
    let big = Bytes::from(vec![b'x'; 12_000]);
    publ.publish("big/0", big.clone(), QoS::AtMostOnce, false)
        .await
        .unwrap();
    let m = within("the large message", sub.recv()).await.unwrap();
    assert_eq!(m.payload, big);
    // QoS 1 never in a datagram, even when asked per message.
    publ.publish_with(
        Message::new("big/1", "acked")
            .qos(QoS::AtLeastOnce)
            .datagram(true),
    )
    .await
    .unwrap();
    let m = within("the QoS 1 message", sub.recv()).await.unwrap();
    assert_eq!((m.topic.as_ref(), m.qos), ("big/1", QoS::AtLeastOnce));
    let stats = publ.quic_stats();
    assert_eq!((stats.datagrams_sent, stats.datagrams_fallback), (0, 1));
    assert_eq!(sub.quic_stats().datagrams_received, 0);
    let metrics = b.server.metrics().await.unwrap();
    assert_eq!((metrics.datagrams_sent, metrics.datagrams_received), (0, 0));
    b.server.shutdown().await;
}

#[tokio::test]
async fn deliveries_on_server_streams_per_subscription_with_qos1_acks() {
    let b = broker().await;
    let mut sub_options = options(&b, "map-sub").stream_mapping(StreamMapping::Subscription);
    // Two unacknowledged QoS 1 messages at most: all twenty arrive only if the
    // acknowledgements of server-stream deliveries reach the broker on the control stream.
    sub_options.receive_maximum = 2;
    let (sub, connected) = connect(sub_options).await;
    assert_eq!(
        connected.quic.stream_mapping,
        Some(StreamMapping::Subscription)
    );
    sub.subscribe("a/#", QoS::AtLeastOnce).await.unwrap();
    sub.subscribe_with(
        Subscription::new()
            .filter("b/#", QoS::AtLeastOnce)
            .priority(10),
    )
    .await
    .unwrap();
    let (publ, _) = connect(options(&b, "map-pub")).await;
    for i in 0..10 {
        publ.publish("a/x", format!("a{i}"), QoS::AtLeastOnce, false)
            .await
            .unwrap();
        publ.publish("b/y", format!("b{i}"), QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    let (mut a, mut bs) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let m = within("a server-stream delivery", sub.recv())
            .await
            .unwrap();
        assert_eq!(m.qos, QoS::AtLeastOnce);
        let payload = String::from_utf8(m.payload.to_vec()).unwrap();
        if m.topic == "a/x" {
            a.push(payload);
        } else {
            bs.push(payload);
        }
    }
    // In order within each subscription's stream.
    let expect = |p: &str| (0..10).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    assert_eq!((a, bs), (expect("a"), expect("b")));
    let stats = sub.quic_stats();
    assert_eq!((stats.server_streams, stats.server_streams_refused), (2, 0));
    // The session still works on the control stream afterwards.
    assert_eq!(
        sub.unsubscribe("a/#").await.unwrap(),
        mqttd::codec::ReasonCode::SUCCESS
    );
    sub.disconnect().await.unwrap();
    b.server.shutdown().await;
}

mod cli {
    use super::*;
    use std::process::{Command, Stdio};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pub_and_sub_with_datagram() {
        let b = broker().await;
        let port = b.quic.port().to_string();
        let cert = b.cert.to_str().unwrap().to_owned();
        let common = ["--quic", "--cafile", &cert, "-p", &port, "--datagram", "-v"];
        let sub = Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .arg("sub")
            .args(common)
            .args(["-t", "cli/dg", "-C", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts mqttd sub");
        let mut sub = sub;
        let deadline = std::time::Instant::now() + WAIT;
        let mut last_pub = String::new();
        while sub.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "mqttd sub did not finish"
            );
            let out = Command::new(env!("CARGO_BIN_EXE_mqttd"))
                .arg("pub")
                .args(common)
                .args(["-t", "cli/dg", "-m", "by datagram"])
                .output()
                .unwrap();
            last_pub = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{last_pub}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let out = sub.wait_with_output().unwrap();
        let sub_err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{sub_err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "cli/dg by datagram\n");
        assert!(sub_err.contains("datagrams: on (max "), "{sub_err}");
        assert!(
            sub_err.contains("1 message(s) received in QUIC datagrams"),
            "{sub_err}"
        );
        assert!(
            last_pub.contains("1 message(s) sent as QUIC datagrams, 0 on the stream"),
            "{last_pub}"
        );
        let metrics = b.server.metrics().await.unwrap();
        assert!(metrics.datagrams_sent >= 1, "{metrics:?}");
        assert!(metrics.datagrams_received >= 1, "{metrics:?}");
        b.server.shutdown().await;
    }
}
