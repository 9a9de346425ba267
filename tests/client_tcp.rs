//! The bundled client against the in-process broker over TCP, and the `mqttd pub` / `mqttd sub`
//! commands end to end.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use mqttd::client::{Client, ClientError, ClientOptions, Message, ReceivedMessage, Subscription};
use mqttd::codec::{self, Packet, Properties, ProtocolVersion, QoS, ReasonCode, Will};
use mqttd::server::{self, ServerHandle};
use mqttd::Config;

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// Every wait in these tests is bounded by this.
#[path = "common/in_process.rs"]
mod in_process;

const WAIT: Duration = Duration::from_secs(5);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    in_process::within(WAIT, what, future).await
}

async fn broker() -> (ServerHandle, SocketAddr) {
    let mut config = Config::default();
    config.listeners.tcp = Some("127.0.0.1:0".parse().unwrap());
    // QUIC has its own tests (client_quic.rs); here it would only write a certificate.
    config.listeners.quic = None;
    // No data directory here: run in memory (tests of persistence: tests/persistence.rs).
    config.storage.persistence = false;
    config.log.level = "warn".into();
    let server = server::start(config).await.expect("broker starts");
    let addr = server.tcp_addr().expect("TCP listener");
    (server, addr)
}

fn options(addr: SocketAddr, version: ProtocolVersion, id: &str) -> ClientOptions {
    ClientOptions::new(addr.to_string())
        .version(version)
        .client_id(id)
}

async fn connect(addr: SocketAddr, version: ProtocolVersion, id: &str) -> Client {
    let (client, connected) = within("connect", Client::connect(options(addr, version, id)))
        .await
        .expect("connects");
    assert!(!connected.session_present);
    client
}

async fn recv(client: &Client) -> ReceivedMessage {
    within("a message", client.recv()).await.expect("a message")
}

/// Asserts that nothing arrives within a short while.
async fn nothing(client: &Client) {
    if let Ok(message) = tokio::time::timeout(Duration::from_millis(300), client.recv()).await {
        panic!("unexpected {message:?}");
    }
}

#[tokio::test]
async fn qos_0_1_2_round_trips_in_3_1_1_and_5() {
    let (server, addr) = broker().await;
    for version in [V311, V5] {
        let sub = connect(addr, version, &format!("sub-{version:?}")).await;
        let publisher = connect(addr, version, &format!("pub-{version:?}")).await;
        let granted = within("SUBACK", sub.subscribe("rt/#", QoS::ExactlyOnce))
            .await
            .unwrap();
        assert_eq!(granted, ReasonCode::GRANTED_QOS_2);
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let topic = format!("rt/{}", qos as u8);
            let outcome = within(
                "publish",
                publisher.publish(topic.clone(), "payload", qos, false),
            )
            .await
            .unwrap();
            assert_eq!(outcome.packet_id.is_some(), qos != QoS::AtMostOnce);
            assert!(!outcome.code.is_error());
            let message = recv(&sub).await;
            assert_eq!(
                (&*message.topic, &message.payload[..]),
                (topic.as_str(), &b"payload"[..])
            );
            assert_eq!(message.qos, qos);
            assert!(!message.retain);
        }
        // Unsubscribed: nothing more arrives.
        within("UNSUBACK", sub.unsubscribe("rt/#")).await.unwrap();
        publisher
            .publish("rt/x", "late", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        nothing(&sub).await;
        sub.disconnect().await.unwrap();
        publisher.disconnect().await.unwrap();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn delivery_qos_is_the_minimum_of_publish_and_subscription() {
    let (server, addr) = broker().await;
    let sub = connect(addr, V5, "min-sub").await;
    sub.subscribe("min", QoS::AtLeastOnce).await.unwrap();
    sub.publish("min", "x", QoS::ExactlyOnce, false)
        .await
        .unwrap();
    assert_eq!(recv(&sub).await.qos, QoS::AtLeastOnce);
    server.shutdown().await;
}

#[tokio::test]
async fn retained_messages_reach_later_subscribers() {
    let (server, addr) = broker().await;
    for version in [V311, V5] {
        let topic = format!("retained/{version:?}");
        let publisher = connect(addr, version, "retainer").await;
        publisher
            .publish(topic.clone(), "kept", QoS::AtLeastOnce, true)
            .await
            .unwrap();
        publisher.disconnect().await.unwrap();
        let sub = connect(addr, version, "late").await;
        sub.subscribe(topic.clone(), QoS::AtLeastOnce)
            .await
            .unwrap();
        let message = recv(&sub).await;
        assert_eq!(
            (&*message.topic, &message.payload[..], message.retain),
            (topic.as_str(), &b"kept"[..], true)
        );
        sub.disconnect().await.unwrap();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_will_is_published_on_abort_but_not_on_disconnect() {
    let (server, addr) = broker().await;
    for version in [V311, V5] {
        let watcher = connect(addr, version, "watcher").await;
        watcher
            .subscribe("wills/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        let will = Will {
            topic: "wills/dying".into(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        };
        let dying_options = options(addr, version, "dying").will(will);
        let (dying, _) = Client::connect(dying_options.clone()).await.unwrap();
        dying.abort().await;
        let message = recv(&watcher).await;
        assert_eq!(
            (&*message.topic, &message.payload[..]),
            ("wills/dying", &b"gone"[..])
        );
        // A clean DISCONNECT discards the will [MQTT-3.1.2-10].
        let (polite, _) = Client::connect(dying_options).await.unwrap();
        polite.disconnect().await.unwrap();
        nothing(&watcher).await;
        watcher.disconnect().await.unwrap();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_persistent_session_keeps_qos1_messages_until_resumed() {
    let (server, addr) = broker().await;
    for version in [V311, V5] {
        let id = format!("persistent-{version:?}");
        let persistent = options(addr, version, &id)
            .clean_start(false)
            .session_expiry(300);
        let (sub, connected) = Client::connect(persistent.clone()).await.unwrap();
        assert!(!connected.session_present);
        sub.subscribe("queued/#", QoS::AtLeastOnce).await.unwrap();
        sub.disconnect().await.unwrap();

        let publisher = connect(addr, version, "queuer").await;
        for i in 0..3 {
            publisher
                .publish(
                    format!("queued/{i}"),
                    format!("m{i}"),
                    QoS::AtLeastOnce,
                    false,
                )
                .await
                .unwrap();
        }
        publisher.disconnect().await.unwrap();

        let (sub, connected) = within("resume", Client::connect(persistent)).await.unwrap();
        assert!(connected.session_present, "{version:?}");
        for i in 0..3 {
            let message = recv(&sub).await;
            assert_eq!(message.topic, format!("queued/{i}"));
            assert_eq!(message.payload, format!("m{i}"));
        }
        sub.disconnect().await.unwrap();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn reconnect_resumes_the_session_of_the_same_client() {
    let (server, addr) = broker().await;
    let (sub, _) = Client::connect(options(addr, V5, "roamer").session_expiry(60))
        .await
        .unwrap();
    sub.subscribe("roam", QoS::ExactlyOnce).await.unwrap();
    sub.abort().await;
    // The loss is reported once to the receiver.
    let error = within("the loss", sub.recv()).await.unwrap_err();
    assert!(matches!(error, ClientError::ConnectionLost(_)), "{error}");
    assert!(matches!(
        sub.publish("roam", "x", QoS::AtMostOnce, false).await,
        Err(ClientError::NotConnected)
    ));

    let publisher = connect(addr, V311, "roam-pub").await;
    publisher
        .publish("roam", "while away", QoS::ExactlyOnce, false)
        .await
        .unwrap();
    let connected = within("reconnect", sub.reconnect()).await.unwrap();
    assert!(connected.session_present);
    assert_eq!(connected.client_id, "roamer");
    let message = recv(&sub).await;
    assert_eq!(
        (&message.payload[..], message.qos),
        (&b"while away"[..], QoS::ExactlyOnce)
    );
    // And the connection works as before.
    publisher
        .publish("roam", "after", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(recv(&sub).await.payload, "after");
    server.shutdown().await;
}

#[tokio::test]
async fn an_assigned_client_id_is_reported_and_reused() {
    let (server, addr) = broker().await;
    let (client, connected) = Client::connect(options(addr, V5, "").session_expiry(60))
        .await
        .unwrap();
    assert!(connected.assigned_client_id);
    assert!(
        connected.client_id.starts_with("mqttd-"),
        "{}",
        connected.client_id
    );
    client.abort().await;
    let again = client.reconnect().await.unwrap();
    assert!(again.session_present);
    assert_eq!(again.client_id, connected.client_id);
    server.shutdown().await;
}

#[tokio::test]
async fn v5_properties_round_trip() {
    let (server, addr) = broker().await;
    let sub = connect(addr, V5, "props-sub").await;
    let subscription = Subscription::new()
        .filter("props/#", QoS::AtLeastOnce)
        .id(42);
    let acknowledged = sub.subscribe_with(subscription).await.unwrap();
    assert_eq!(acknowledged.codes, vec![ReasonCode::GRANTED_QOS_1]);
    let publisher = connect(addr, V5, "props-pub").await;
    let message = Message::new("props/a", "{\"t\": 21.5}")
        .qos(QoS::AtLeastOnce)
        .utf8_payload()
        .content_type("application/json")
        .response_topic("replies/props")
        .correlation_data(Bytes::from_static(b"\x01\x02req-7"))
        .expiry(Duration::from_secs(60))
        .user_property("unit", "celsius")
        .user_property("unit", "twice");
    publisher.publish_with(message).await.unwrap();
    let received = recv(&sub).await;
    let p = &received.properties;
    assert_eq!(p.payload_format_indicator, Some(1));
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(p.response_topic.as_deref(), Some("replies/props"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"\x01\x02req-7"[..]));
    assert_eq!(
        p.user_properties,
        vec![
            ("unit".into(), "celsius".into()),
            ("unit".into(), "twice".into())
        ]
    );
    assert_eq!(p.subscription_identifiers, vec![42]);
    assert!(matches!(p.message_expiry_interval, Some(59..=60)));
    server.shutdown().await;
}

#[tokio::test]
async fn topic_aliases_from_the_broker_are_resolved() {
    let (server, addr) = broker().await;
    let sub = connect(addr, V5, "alias-sub").await;
    sub.subscribe("a/very/long/topic/name/#", QoS::AtMostOnce)
        .await
        .unwrap();
    let publisher = connect(addr, V5, "alias-pub").await;
    for i in 0..5 {
        publisher
            .publish(
                "a/very/long/topic/name/x",
                format!("{i}"),
                QoS::AtLeastOnce,
                false,
            )
            .await
            .unwrap();
    }
    for i in 0..5 {
        let message = recv(&sub).await;
        assert_eq!(message.topic, "a/very/long/topic/name/x");
        assert_eq!(message.payload, format!("{i}"));
        assert_eq!(message.properties.topic_alias, None);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_slow_reader_loses_no_qos1_message() {
    let (server, addr) = broker().await;
    let mut slow = options(addr, V5, "slow");
    slow.inbox_capacity = 4;
    slow.receive_maximum = 8;
    let (sub, _) = Client::connect(slow).await.unwrap();
    sub.subscribe("flood", QoS::AtLeastOnce).await.unwrap();
    let publisher = connect(addr, V5, "flooder").await;
    for i in 0..50 {
        publisher
            .publish("flood", format!("{i}"), QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    // Keep alive and requests still work while the queue is full.
    sub.publish("elsewhere", "x", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    for i in 0..50 {
        assert_eq!(recv(&sub).await.payload, format!("{i}"));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn keep_alive_keeps_an_idle_connection_open() {
    let (server, addr) = broker().await;
    let (client, connected) =
        Client::connect(options(addr, V311, "idle").keep_alive(Duration::from_secs(1)))
            .await
            .unwrap();
    assert_eq!(connected.keep_alive, Duration::from_secs(1));
    client.subscribe("idle", QoS::AtMostOnce).await.unwrap();
    // The broker drops a silent client after 1.5 keep alives.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    client
        .publish("idle", "still here", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(recv(&client).await.payload, "still here");
    server.shutdown().await;
}

#[tokio::test]
async fn a_taken_over_session_reports_the_servers_disconnect() {
    let (server, addr) = broker().await;
    let first = connect(addr, V5, "twin").await;
    let _second = connect(addr, V5, "twin").await;
    let error = within("the takeover", first.recv()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "server closed the connection: 0x8E session taken over"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn refusals_and_unreachable_servers_read_clearly() {
    let (server, addr) = broker().await;
    let mut with_auth = options(addr, V5, "auth");
    with_auth.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let error = Client::connect(with_auth).await.err().expect("refused");
    assert!(matches!(
        error,
        ClientError::Refused {
            code: ReasonCode::BAD_AUTHENTICATION_METHOD,
            ..
        }
    ));
    assert_eq!(
        error.to_string(),
        "server refused the connection: 0x8C bad authentication method"
    );
    // 3.1.1: an empty client id needs a clean session (return code 2).
    let error = Client::connect(options(addr, V311, "").clean_start(false))
        .await
        .err()
        .expect("refused");
    assert_eq!(
        error.to_string(),
        "server refused the connection: 0x85 client identifier not valid"
    );
    server.shutdown().await;

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let error = Client::connect(options(closed, V5, "x"))
        .await
        .err()
        .expect("no server");
    assert_eq!(
        error.to_string(),
        format!("cannot connect to {closed}: connection refused")
    );
    let error = Client::connect(ClientOptions::new("no-such-host.invalid:1883"))
        .await
        .err()
        .expect("no such host");
    assert!(
        error
            .to_string()
            .starts_with("cannot resolve no-such-host.invalid:1883"),
        "{error}"
    );
}

#[tokio::test]
async fn invalid_requests_fail_locally() {
    let (server, addr) = broker().await;
    let client = connect(addr, V5, "careless").await;
    let error = client
        .publish("a/+/b", "x", QoS::AtMostOnce, false)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid request: invalid topic name \"a/+/b\""
    );
    assert!(client.subscribe("a/#/b", QoS::AtMostOnce).await.is_err());
    // The connection is unharmed.
    client.subscribe("fine", QoS::AtMostOnce).await.unwrap();
    client.disconnect().await.unwrap();
    server.shutdown().await;
}

/// A scripted server over an in-memory pipe: it never acknowledges the first PUBLISH, then
/// on the second connection resumes the session and expects the retransmission with DUP.
#[tokio::test]
async fn unacknowledged_publishes_are_resent_with_dup_on_resume() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    async fn read_packet(
        stream: &mut DuplexStream,
        buf: &mut bytes::BytesMut,
        first: bool,
    ) -> Packet {
        let version = if first { None } else { Some(V5) };
        loop {
            if let Some(packet) = codec::decode(buf, version, 1 << 20).unwrap() {
                return packet;
            }
            assert_ne!(stream.read_buf(buf).await.unwrap(), 0, "client closed");
        }
    }
    async fn send(stream: &mut DuplexStream, packet: Packet) {
        let mut out = bytes::BytesMut::new();
        codec::encode(&packet, V5, &mut out);
        stream.write_all(&out).await.unwrap();
    }
    fn connack(session_present: bool) -> Packet {
        Packet::ConnAck(codec::ConnAck {
            session_present,
            code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        })
    }

    let (client_side, mut server_side) = tokio::io::duplex(4096);
    let scripted = tokio::spawn(async move {
        let mut buf = bytes::BytesMut::new();
        let Packet::Connect(c) = read_packet(&mut server_side, &mut buf, true).await else {
            panic!("CONNECT expected")
        };
        assert!(!c.clean_start);
        send(&mut server_side, connack(false)).await;
        let Packet::Publish(p) = read_packet(&mut server_side, &mut buf, false).await else {
            panic!("PUBLISH expected")
        };
        assert_eq!((p.packet_id, p.dup), (Some(1), false));
        // Drop the connection without acknowledging.
    });
    let opts = options("127.0.0.1:1".parse().unwrap(), V5, "resender")
        .clean_start(false)
        .session_expiry(60);
    let (client, _) = Client::connect_over(client_side, opts).await.unwrap();
    let error = within(
        "the loss",
        client.publish("dup/test", "x", QoS::AtLeastOnce, false),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ClientError::ConnectionLost(_)), "{error}");
    scripted.await.unwrap();

    let (client_side, mut server_side) = tokio::io::duplex(4096);
    let scripted = tokio::spawn(async move {
        let mut buf = bytes::BytesMut::new();
        let Packet::Connect(c) = read_packet(&mut server_side, &mut buf, true).await else {
            panic!("CONNECT expected")
        };
        assert!(!c.clean_start);
        send(&mut server_side, connack(true)).await;
        let Packet::Publish(p) = read_packet(&mut server_side, &mut buf, false).await else {
            panic!("PUBLISH expected")
        };
        // [MQTT-4.4.0-1] same identifier, DUP set.
        assert_eq!((p.packet_id, p.dup, &*p.topic), (Some(1), true, "dup/test"));
        send(&mut server_side, Packet::PubAck(codec::Ack::new(1))).await;
        assert!(matches!(
            read_packet(&mut server_side, &mut buf, false).await,
            Packet::Disconnect(_)
        ));
    });
    let connected = within("reconnect", client.reconnect_over(client_side))
        .await
        .unwrap();
    assert!(connected.session_present);
    client.disconnect().await.unwrap();
    within("the script", scripted).await.unwrap();
}

mod cli {
    use super::*;
    use std::process::{Command, Output, Stdio};

    fn mqttd() -> Command {
        Command::new(env!("CARGO_BIN_EXE_mqttd"))
    }

    fn run(args: &[&str]) -> Output {
        mqttd().args(args).output().expect("runs mqttd")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sub_receives_what_pub_sends() {
        let (server, addr) = broker().await;
        let port = addr.port().to_string();
        let sub = mqttd()
            .args([
                "sub",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                "cli/+/x",
                "-t",
                "other",
                "-C",
                "2",
                "-v",
                "-q",
                "1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts mqttd sub");
        // Publish until the subscriber has its two messages (it may not be subscribed yet).
        let mut sub = sub;
        let deadline = std::time::Instant::now() + WAIT;
        let mut sent = 0;
        while sub.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "mqttd sub did not finish"
            );
            let out = run(&[
                "pub",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                "cli/a/x",
                "-m",
                "hello world",
                "-q",
                "1",
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let out = sub.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(sent >= 1);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "cli/a/x hello world\ncli/a/x hello world\n"
        );
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pub_repeats_and_sub_reads_retained_v311() {
        let (server, addr) = broker().await;
        let port = addr.port().to_string();
        let out = run(&[
            "pub",
            "-p",
            &port,
            "-t",
            "cli/retained",
            "-m",
            "kept",
            "-r",
            "-V",
            "311",
            "-C",
            "3",
            "-q",
            "2",
            "--verbose",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().count(), 3, "{text}");
        let out = run(&[
            "sub",
            "-p",
            &port,
            "-t",
            "cli/retained",
            "-C",
            "1",
            "-W",
            "5",
            "-V",
            "311",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\n");
        // -n: an empty message clears the retained one.
        let out = run(&["pub", "-p", &port, "-t", "cli/retained", "-n", "-r"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(&["sub", "-p", &port, "-t", "cli/retained", "-W", "1"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "");
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_are_one_line_with_a_non_zero_exit() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let port = closed.port().to_string();
        let out = run(&["pub", "-h", "127.0.0.1", "-p", &port, "-t", "t", "-m", "x"]);
        assert!(!out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("mqttd pub: cannot connect to 127.0.0.1:{port}: connection refused\n")
        );

        let (server, addr) = broker().await;
        let port = addr.port().to_string();
        let out = run(&["sub", "-p", &port, "-t", "nothing", "-C", "1", "-W", "1"]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("timed out"), "{stderr}");
        // Usage errors come from clap with exit code 2.
        let out = run(&["pub", "-p", &port, "-t", "t"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(&["sub", "--help"]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("-h, --host"));
        server.shutdown().await;
    }
}
