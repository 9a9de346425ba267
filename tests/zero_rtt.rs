//! QUIC 0-RTT resumption against the in-process broker (`proto-ext/zero-rtt.md`): a resuming
//! client's CONNECT arrives as early data and its CONNACK comes back one round trip after the
//! first packet (measured through a relay that adds 100 ms each way), the `safe` policy holds
//! QoS 1/2 PUBLISH and wills until the handshake is confirmed, a refused 0-RTT is resent
//! transparently, and `zero_rtt: off` never sends early data. Bundled client and raw quinn.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "common/relay.rs"]
mod relay;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqttd::client::{
    Client, ClientOptions, Message, Pipelined, QuicOptions, Subscription, Transport, ZeroRtt,
};
use mqttd::codec::{self, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, Will};
use mqttd::config::ZeroRtt as Policy;
use mqttd::server::{self, ServerHandle};
use mqttd::Config;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

#[path = "common/in_process.rs"]
mod in_process;

const WAIT: Duration = Duration::from_secs(10);
/// One-way delay of the relay: a round trip is twice this.
const DELAY: Duration = Duration::from_millis(100);

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    in_process::within(WAIT, what, future).await
}

struct Broker {
    server: ServerHandle,
    quic: SocketAddr,
    tcp: SocketAddr,
    cert: PathBuf,
    dir: tempfile::TempDir,
}

async fn broker(policy: Policy) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    start(dir, "127.0.0.1:0".parse().unwrap(), policy).await
}

async fn start(dir: tempfile::TempDir, quic: SocketAddr, policy: Policy) -> Broker {
    let mut config = Config::default();
    config.listeners.tcp = Some("127.0.0.1:0".parse().unwrap());
    config.listeners.quic = Some(quic);
    config.storage.data_dir = Some(dir.path().to_path_buf());
    config.quic.zero_rtt = policy;
    config.log.level = "warn".into();
    // A restarted broker may wait a moment for its predecessor's UDP port.
    let deadline = Instant::now() + WAIT;
    let server = loop {
        match server::start(config.clone()).await {
            Ok(server) => break server,
            Err(e) if Instant::now() < deadline => {
                eprintln!("broker start: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("broker does not start: {e}"),
        }
    };
    Broker {
        quic: server.quic_addr().unwrap(),
        tcp: server.tcp_addr().unwrap(),
        cert: server.cert_path().unwrap().to_path_buf(),
        server,
        dir,
    }
}

/// Bundled client options for `server` (the broker or a relay in front of it).
fn options(server: SocketAddr, cert: &Path, id: &str) -> ClientOptions {
    ClientOptions::new(server.to_string())
        .transport(Transport::Quic(QuicOptions {
            ca_file: Some(cert.to_path_buf()),
            insecure: false,
            server_name: Some("localhost".into()),
        }))
        .client_id(id)
}

/// One connection, so the client process holds a ticket for `server` afterwards.
async fn get_a_ticket(server: SocketAddr, cert: &Path, id: &str) {
    let (client, connected) = within("first connect", Client::connect(options(server, cert, id)))
        .await
        .unwrap();
    assert_eq!(connected.zero_rtt, ZeroRtt::NotAttempted);
    // The ticket (NewSessionTicket) follows the handshake; a round trip with the broker makes
    // sure it has arrived.
    within("ping", client.subscribe("ticket/wait", QoS::AtMostOnce))
        .await
        .unwrap();
    client.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_resuming_client_sends_connect_and_subscribe_as_early_data() {
    let b = broker(Policy::Safe).await;
    // Through the delay relay: the server accepts the client's stream while the handshake is
    // still in progress, so it counts what came as early data (on bare loopback the handshake
    // may complete first, and quinn then reports an ordinary stream).
    let link = relay::udp(b.quic, DELAY).await;
    get_a_ticket(link.addr, &b.cert, "zr-sub").await;
    assert_eq!(b.server.quic_stats().zero_rtt_connects, 0);

    let pipelined = Pipelined {
        subscription: Some(Subscription::new().filter("zr/#", QoS::AtLeastOnce)),
        messages: vec![Message::new("zr/early", "qos0 in 0-RTT")],
    };
    let (client, connected, outcome) = within(
        "0-RTT connect",
        Client::connect_pipelined(options(link.addr, &b.cert, "zr-sub"), pipelined),
    )
    .await
    .unwrap();
    assert_eq!(connected.zero_rtt, ZeroRtt::Accepted);
    // The client's verdict is the server's (its EncryptedExtensions accept the early data):
    // the CONNECT came as early data, and nothing of this flight is ever held.
    let stats = b.server.quic_stats();
    assert_eq!(stats.zero_rtt_connects, 1, "{stats:?}");
    assert!(stats.early_packets >= 1, "{stats:?}");
    assert_eq!(stats.held_packets, 0, "nothing to hold: {stats:?}");
    let acknowledged = outcome.subscribed.unwrap().unwrap();
    assert_eq!(acknowledged.codes.len(), 1);
    assert!(outcome.published[0].is_ok());
    // The QoS 0 message published in early data reached the subscription made in early data.
    let message = within("early message", client.recv()).await.unwrap();
    assert_eq!(&message.payload[..], b"qos0 in 0-RTT");

    // And the connection is an ordinary one afterwards.
    client
        .publish("zr/late", "1-RTT", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let message = within("late message", client.recv()).await.unwrap();
    assert_eq!(&message.payload[..], b"1-RTT");
    client.disconnect().await.unwrap();
    b.server.shutdown().await;
}

#[tokio::test]
async fn connack_comes_one_round_trip_after_the_first_packet() {
    let b = broker(Policy::Safe).await;
    let link = relay::udp(b.quic, DELAY).await;
    let rtt = DELAY * 2;

    let started = Instant::now();
    get_a_ticket(link.addr, &b.cert, "zr-time").await;
    // connect + one SUBSCRIBE round trip: at least three round trips.
    assert!(started.elapsed() >= rtt * 3);

    let timed = |zero_rtt: bool| {
        let mut options = options(link.addr, &b.cert, "zr-time");
        options.zero_rtt = zero_rtt;
        async move {
            let started = Instant::now();
            let (client, connected) = within("connect", Client::connect(options)).await.unwrap();
            let elapsed = started.elapsed();
            within(
                "subscribe",
                client.subscribe("ticket/wait", QoS::AtMostOnce),
            )
            .await
            .unwrap();
            client.disconnect().await.unwrap();
            (connected.zero_rtt, elapsed)
        }
    };
    // Resumed without early data: handshake, then CONNECT/CONNACK.
    let (mode, one_rtt) = timed(false).await;
    assert_eq!(mode, ZeroRtt::NotAttempted);
    assert!(one_rtt >= rtt * 2, "1-RTT CONNACK after {one_rtt:?}");
    // With early data: CONNACK comes with the server's handshake flight.
    let (mode, zero_rtt) = timed(true).await;
    assert_eq!(mode, ZeroRtt::Accepted);
    assert!(zero_rtt >= rtt, "faster than light: {zero_rtt:?}");
    assert!(
        zero_rtt < rtt * 2 - rtt / 4,
        "0-RTT CONNACK after {zero_rtt:?}, not within one round trip of {rtt:?} (1-RTT: {one_rtt:?})"
    );
    eprintln!("CONNACK after {one_rtt:?} (1-RTT) and {zero_rtt:?} (0-RTT), RTT {rtt:?}");
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_refused_0rtt_is_resent_after_the_handshake() {
    let b = broker(Policy::Safe).await;
    get_a_ticket(b.quic, &b.cert, "zr-restart").await;
    // A new broker process on the same port and certificate knows none of the old tickets.
    let Broker {
        server, quic, dir, ..
    } = b;
    server.shutdown().await;
    let b = start(dir, quic, Policy::Safe).await;
    let pipelined = Pipelined {
        subscription: Some(Subscription::new().filter("again/#", QoS::ExactlyOnce)),
        messages: Vec::new(),
    };
    let (client, connected, outcome) = within(
        "connect with a stale ticket",
        Client::connect_pipelined(options(b.quic, &b.cert, "zr-restart"), pipelined),
    )
    .await
    .unwrap();
    assert_eq!(connected.zero_rtt, ZeroRtt::Rejected);
    assert_eq!(b.server.quic_stats().zero_rtt_connects, 0);
    outcome.subscribed.unwrap().unwrap();
    client
        .publish("again/x", "after a restart", QoS::ExactlyOnce, false)
        .await
        .unwrap();
    let message = within("message", client.recv()).await.unwrap();
    assert_eq!(&message.payload[..], b"after a restart");
    client.disconnect().await.unwrap();
    b.server.shutdown().await;
}

#[tokio::test]
async fn zero_rtt_off_sends_no_early_data() {
    let b = broker(Policy::Off).await;
    get_a_ticket(b.quic, &b.cert, "zr-off").await;
    let (client, connected) = within(
        "connect",
        Client::connect(options(b.quic, &b.cert, "zr-off")),
    )
    .await
    .unwrap();
    assert_eq!(connected.zero_rtt, ZeroRtt::NotAttempted);
    assert_eq!(b.server.quic_stats().early_packets, 0);
    client.disconnect().await.unwrap();
    b.server.shutdown().await;
}

// --- raw quinn ------------------------------------------------------------------------------

/// A raw quinn client with a ticket store of its own.
fn raw_client_config(cert: &Path) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"mqtt".to_vec()];
    tls.enable_early_data = true;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    quinn::ClientConfig::new(Arc::new(crypto))
}

fn encode(packets: &[Packet]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for p in packets {
        codec::encode(p, ProtocolVersion::V5, &mut out);
    }
    out.to_vec()
}

async fn read_packet(recv: &mut quinn::RecvStream, buf: &mut BytesMut) -> Packet {
    loop {
        if let Some(p) = codec::decode(buf, Some(ProtocolVersion::V5), u32::MAX).unwrap() {
            return p;
        }
        let mut chunk = [0u8; 4096];
        let n = within("a packet", recv.read(&mut chunk))
            .await
            .unwrap()
            .expect("stream open");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn connect_packet(id: &str, will: Option<Will>) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 30,
        properties: Properties::default(),
        client_id: id.into(),
        will,
        username: None,
        password: None,
    }))
}

fn publish(topic: &str, payload: &'static [u8], qos: QoS, id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: (qos != QoS::AtMostOnce).then_some(id),
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    })
}

#[tokio::test]
async fn raw_quinn_early_connect_qos1_publish_and_will() {
    let b = broker(Policy::Safe).await;
    let link = relay::udp(b.quic, DELAY).await;
    let rtt = DELAY * 2;
    let (watcher, _) = within(
        "watcher",
        Client::connect(ClientOptions::new(b.tcp.to_string()).client_id("raw-watch")),
    )
    .await
    .unwrap();
    watcher.subscribe("raw/#", QoS::AtLeastOnce).await.unwrap();

    let config = raw_client_config(&b.cert);
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();

    // 1-RTT: get a ticket.
    let connection = within(
        "handshake",
        endpoint
            .connect_with(config.clone(), link.addr, "localhost")
            .unwrap(),
    )
    .await
    .unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(&encode(&[connect_packet("raw", None)]))
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    assert!(matches!(
        read_packet(&mut recv, &mut buf).await,
        Packet::ConnAck(_)
    ));
    send.write_all(&encode(&[Packet::PingReq])).await.unwrap();
    assert!(matches!(
        read_packet(&mut recv, &mut buf).await,
        Packet::PingResp
    ));
    connection.close(0u32.into(), b"");
    endpoint.wait_idle().await;

    // 0-RTT: CONNECT with a will, then a QoS 1 PUBLISH, all in the first flight.
    let started = Instant::now();
    let connecting = endpoint
        .connect_with(config, link.addr, "localhost")
        .unwrap();
    let (connection, accepted) = connecting
        .into_0rtt()
        .unwrap_or_else(|_| panic!("no 0-RTT keys: the ticket did not arrive"));
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let will = Will {
        topic: "raw/will".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    };
    send.write_all(&encode(&[
        connect_packet("raw", Some(will)),
        publish("raw/q1", b"early qos1", QoS::AtLeastOnce, 1),
    ]))
    .await
    .unwrap();
    let mut buf = BytesMut::new();
    let connack = read_packet(&mut recv, &mut buf).await;
    let connack_after = started.elapsed();
    assert!(
        matches!(&connack, Packet::ConnAck(a) if a.code.0 == 0),
        "{connack:?}"
    );
    assert!(within("0-RTT verdict", accepted).await, "0-RTT rejected");
    assert!(
        connack_after < rtt * 2 - rtt / 4,
        "CONNACK after {connack_after:?}: not within one round trip ({rtt:?})"
    );
    // The QoS 1 PUBLISH waited for the handshake, then went through.
    assert!(
        matches!(read_packet(&mut recv, &mut buf).await, Packet::PubAck(a) if a.packet_id == 1)
    );
    let stats = b.server.quic_stats();
    assert_eq!(
        (stats.zero_rtt_connects, stats.held_packets),
        (1, 1),
        "{stats:?}"
    );
    let message = within("early QoS 1 message", watcher.recv()).await.unwrap();
    assert_eq!(&message.payload[..], b"early qos1");

    // The will was registered at confirmation: closing without DISCONNECT publishes it.
    connection.close(1u32.into(), b"gone");
    let message = within("will", watcher.recv()).await.unwrap();
    assert_eq!(
        (&message.topic[..], &message.payload[..]),
        ("raw/will", &b"gone"[..])
    );
    watcher.disconnect().await.unwrap();
    b.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqttd_pub_reconnect_shows_0rtt() {
    let b = broker(Policy::Safe).await;
    let port = b.quic.port().to_string();
    let cert = b.cert.to_str().unwrap().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .args([
                "pub",
                "--quic",
                "--cafile",
                &cert,
                "-h",
                "localhost",
                "-p",
                &port,
            ])
            .args(["-t", "cli/0rtt", "-m", "hi", "-C", "3", "--reconnect", "-v"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("connected to"))
        .collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(lines[0].ends_with("0-RTT: not attempted)"), "{stderr}");
    assert!(lines[1].ends_with("0-RTT: accepted)"), "{stderr}");
    assert!(lines[2].ends_with("0-RTT: accepted)"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 3);
    b.server.shutdown().await;
}
