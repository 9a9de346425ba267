//! Connection limits over real sockets: `max_connections_per_address` refuses the next
//! connection from the same address with CONNACK 0x97 (3.1.1: return code 3) and closes it,
//! and admits it again once a slot is free.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use mqttd::codec::{self, Connect, Packet, Properties, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

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
