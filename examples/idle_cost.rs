//! Measures the broker's memory per idle connection, over TCP and over QUIC.
//!
//! ```text
//! cargo build --release && cargo run --release --example idle_cost -- 1000
//! ```
//!
//! Starts `target/release/mqttd` (or `$MQTTD_BIN`) on free loopback ports, reads its resident
//! set size (VmRSS) from /proc, opens N connections that each complete CONNECT/CONNACK (keep
//! alive 600 s, so they stay idle), reads VmRSS again, and prints the difference per connection.
//! Linux only (it reads /proc).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mqttd::codec::{self, Connect, Packet, Properties, ProtocolVersion};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn connect_bytes(id: usize) -> BytesMut {
    let connect = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 600,
        properties: Properties::default(),
        client_id: format!("idle-{id}").into(),
        will: None,
        username: None,
        password: None,
    }));
    let mut out = BytesMut::new();
    codec::encode(&connect, ProtocolVersion::V5, &mut out);
    out
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Broker(Child);
impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn settle(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    rss_kib(pid)
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let bin = std::env::var("MQTTD_BIN").unwrap_or_else(|_| "target/release/mqttd".into());
    let dir = tempfile::tempdir().unwrap();
    let (tcp_port, quic_port) = (free_port(), free_port());
    let tcp: SocketAddr = format!("127.0.0.1:{tcp_port}").parse().unwrap();
    let quic: SocketAddr = format!("127.0.0.1:{quic_port}").parse().unwrap();
    let child = Command::new(&bin)
        .args([
            "--tcp",
            &tcp.to_string(),
            "--quic",
            &quic.to_string(),
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e} (cargo build --release first)"));
    let pid = child.id();
    let _broker = Broker(child);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(tcp).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // TCP
    let base = settle(pid).await;
    let mut sockets = Vec::with_capacity(count);
    for i in 0..count {
        let mut s = tokio::net::TcpStream::connect(tcp).await.unwrap();
        s.write_all(&connect_bytes(i)).await.unwrap();
        let mut ack = [0u8; 64];
        let _ = s.read(&mut ack).await.unwrap();
        sockets.push(s);
    }
    let loaded = settle(pid).await;
    let tcp_per = (loaded.saturating_sub(base)) as f64 / count as f64;
    drop(sockets);

    // QUIC
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.path().join("cert.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"mqtt".to_vec()];
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(20)));
    let mut client = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    client.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(client);
    let base = settle(pid).await;
    let mut conns = Vec::with_capacity(count);
    for i in 0..count {
        let conn = endpoint.connect(quic, "localhost").unwrap().await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&connect_bytes(i)).await.unwrap();
        let mut ack = [0u8; 64];
        let _ = recv.read(&mut ack).await.unwrap();
        conns.push((conn, send, recv));
    }
    let loaded = settle(pid).await;
    let quic_per = (loaded.saturating_sub(base)) as f64 / count as f64;
    println!("idle connections: {count}");
    println!("TCP : {tcp_per:.1} KiB per connection (broker VmRSS delta)");
    println!("QUIC: {quic_per:.1} KiB per connection (broker VmRSS delta)");
}
