//! Connection limits over real sockets: `max_connections_per_address` refuses the next
//! connection from the same address with CONNACK 0x97 (3.1.1: return code 3) and closes it,
//! and admits it again once a slot is free. Over QUIC the connection past the limit is refused
//! before its TLS handshake (QUIC CONNECTION_REFUSED, `transport/admission.rs`).
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use mqttd::codec::{self, Connect, Packet, Properties, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

#[path = "common/in_process.rs"]
mod in_process;

const WAIT: Duration = Duration::from_secs(5);

async fn connect(addr: SocketAddr, id: &str, version: ProtocolVersion) -> (TcpStream, Vec<u8>) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let mut out = BytesMut::new();
    let connect = Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 30,
        properties: Properties::default(),
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
    };
    codec::encode(&Packet::Connect(Box::new(connect)), version, &mut out);
    socket.write_all(&out).await.unwrap();
    let mut answer = vec![0u8; 4];
    timeout(WAIT, socket.read_exact(&mut answer[..2]))
        .await
        .unwrap()
        .unwrap();
    let len = usize::from(answer[1]);
    answer.resize(2 + len, 0);
    timeout(WAIT, socket.read_exact(&mut answer[2..]))
        .await
        .unwrap()
        .unwrap();
    (socket, answer)
}

#[tokio::test]
async fn the_per_address_limit_refuses_with_connack_0x97_and_frees_slots() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = mqttd::Config::default();
    config.listeners.tcp = Some("127.0.0.1:0".parse().unwrap());
    config.listeners.quic = None;
    config.storage.data_dir = Some(dir.path().to_path_buf());
    config.limits.max_connections_per_address = 2;
    let server = mqttd::server::start(config).await.unwrap();
    let addr = server.tcp_addr().unwrap();

    let (first, a) = connect(addr, "one", ProtocolVersion::V3_1_1).await;
    assert_eq!(a, [0x20, 0x02, 0x00, 0x00]);
    let (_second, b) = connect(addr, "two", ProtocolVersion::V5).await;
    assert_eq!(&b[..4], &[0x20, b[1], 0x00, 0x00]);

    // The third from 127.0.0.1: 5.0 CONNACK 0x97, then the close.
    let (mut third, c) = connect(addr, "three", ProtocolVersion::V5).await;
    assert_eq!(&c[..4], &[0x20, c[1], 0x00, 0x97]);
    let mut rest = [0u8; 16];
    assert_eq!(
        timeout(WAIT, third.read(&mut rest)).await.unwrap().unwrap(),
        0
    );
    // 3.1.1: return code 3 (server unavailable).
    let (_, d) = connect(addr, "four", ProtocolVersion::V3_1_1).await;
    assert_eq!(d, [0x20, 0x02, 0x00, 0x03]);

    // A slot frees up when a connection ends.
    drop(first);
    let mut admitted = false;
    for _ in 0..50 {
        let (_s, e) = connect(addr, "five", ProtocolVersion::V3_1_1).await;
        if e == [0x20, 0x02, 0x00, 0x00] {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "the freed slot was not given out again");
    let m = server.metrics().await.unwrap();
    assert!(m.connections_refused >= 2, "{m:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn over_quic_the_connection_past_the_limit_is_refused_before_its_handshake() {
    use mqttd::client::{Client, ClientOptions, QuicOptions, Transport};
    let b = in_process::start(|config| config.limits.max_connections_per_address = 2).await;
    let options = |id: &str| {
        ClientOptions::new(b.quic.to_string())
            .transport(Transport::Quic(QuicOptions {
                ca_file: Some(b.cert.clone()),
                insecure: false,
                server_name: None,
            }))
            .client_id(id)
    };
    let connect = |id: &'static str| {
        let options = options(id);
        async move { in_process::within(WAIT, id, Client::connect(options)).await }
    };
    let (first, _) = connect("q1").await.expect("first QUIC connection");
    let (_second, _) = connect("q2").await.expect("second QUIC connection");
    let refused = connect("q3").await;
    assert!(
        refused.is_err(),
        "a third connection from the same address is refused"
    );
    assert_eq!(b.server.quic_stats().refused_before_handshake, 1);
    let metrics = b.server.metrics().await.unwrap();
    assert_eq!(
        metrics.connections_refused, 0,
        "the broker never saw it: no handshake, no CONNECT"
    );

    // A slot comes back when a connection ends.
    first.disconnect().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match connect("q4").await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no slot came back: {e}"),
        }
    }
}

/// `limits.max_connection_rate_per_address` over QUIC: past the rate, a connection is refused
/// before its handshake too (the broker's own check at CONNECT still counts every transport).
#[tokio::test]
async fn over_quic_a_connection_past_the_rate_is_refused_before_its_handshake() {
    use mqttd::client::{Client, ClientOptions, QuicOptions, Transport};
    // One per second: a second connection within that second is past the rate (the margin
    // is the whole second, for a loaded machine).
    let b = in_process::start(|config| config.limits.max_connection_rate_per_address = 1).await;
    let connect = |id: &'static str| {
        let options = ClientOptions::new(b.quic.to_string())
            .transport(Transport::Quic(QuicOptions {
                ca_file: Some(b.cert.clone()),
                insecure: false,
                server_name: None,
            }))
            .client_id(id);
        async move { in_process::within(WAIT, id, Client::connect(options)).await }
    };
    let (_first, _) = connect("r1").await.expect("first QUIC connection");
    assert!(
        connect("r2").await.is_err(),
        "a second at once is past the rate"
    );
    assert_eq!(b.server.quic_stats().refused_before_handshake, 1);
    let metrics = b.server.metrics().await.unwrap();
    assert_eq!(
        metrics.connections_rate_limited, 0,
        "the broker never saw it: no handshake, no CONNECT"
    );
}

/// `quic.address_validation`: every new QUIC connection is answered with a Retry first; the
/// bundled client follows it (one more round trip) and works as usual.
#[tokio::test]
async fn with_address_validation_quic_clients_connect_through_a_retry() {
    use mqttd::client::{Client, ClientOptions, QuicOptions, Transport};
    use mqttd::codec::QoS;
    let b = in_process::start(|config| config.quic.address_validation = true).await;
    let options = |id: &str| {
        ClientOptions::new(b.quic.to_string())
            .transport(Transport::Quic(QuicOptions {
                ca_file: Some(b.cert.clone()),
                insecure: false,
                server_name: None,
            }))
            .client_id(id)
    };
    let (sub, _) = in_process::within(WAIT, "subscriber", Client::connect(options("rs")))
        .await
        .expect("connects through the Retry");
    sub.subscribe("retry/#", QoS::AtLeastOnce).await.unwrap();
    let (publ, _) = in_process::within(WAIT, "publisher", Client::connect(options("rp")))
        .await
        .expect("connects through the Retry");
    publ.publish("retry/t", "hello", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let got = in_process::within(WAIT, "delivery", sub.recv())
        .await
        .unwrap();
    assert_eq!(&got.payload[..], b"hello");
    assert!(
        b.server.quic_stats().retries_sent >= 2,
        "{:?}",
        b.server.quic_stats()
    );
}
