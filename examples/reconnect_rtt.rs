//! Reconnect-to-CONNACK time over a link with added delay, for MQTT over TCP, TCP + TLS 1.3
//! (MQTTS), QUIC with a 1-RTT handshake and QUIC with 0-RTT resumption.
//!
//! ```sh
//! cargo run --release --example reconnect_rtt              # 50 ms each way, 10 reconnects each
//! cargo run --release --example reconnect_rtt -- 100 20    # 100 ms each way, 20 reconnects
//! ```
//!
//! An in-process broker listens on loopback; a userspace relay (`tests/common/relay.rs`)
//! delays every UDP datagram and every TCP byte by the one-way delay. The kernel completes
//! a TCP handshake with the relay at once, so for TCP and TLS the client waits one round trip
//! after `connect()` to account for SYN / SYN-ACK, as on a real link. Each reconnection is
//! timed from the start of dialing to the CONNACK; the client holds a ticket from the previous
//! connection (TLS: rustls resumption; QUIC 0-RTT: CONNECT in early data).
// Example code: brevity over error handling ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../tests/common/relay.rs"]
mod relay;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqttd::client::{Client, ClientOptions, QuicOptions, Transport, ZeroRtt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Tcp,
    Tls,
    Quic1Rtt,
    Quic0Rtt,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "TCP",
            Kind::Tls => "TCP + TLS 1.3 (MQTTS)",
            Kind::Quic1Rtt => "QUIC, 1-RTT handshake",
            Kind::Quic0Rtt => "QUIC, 0-RTT resumption",
        }
    }
}

struct Setup {
    tcp: SocketAddr,
    tls: SocketAddr,
    quic: SocketAddr,
    cert: std::path::PathBuf,
    tls_connector: tokio_rustls::TlsConnector,
    rtt: Duration,
}

fn tls_connector(cert: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).expect("certificate") {
        roots.add(c.expect("PEM")).expect("a CA certificate");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // The default client config resumes with tickets (in memory).
    tokio_rustls::TlsConnector::from(Arc::new(tls))
}

fn quic_options(setup: &Setup, zero_rtt: bool) -> ClientOptions {
    let mut options = ClientOptions::new(setup.quic.to_string())
        .transport(Transport::Quic(QuicOptions {
            ca_file: Some(setup.cert.clone()),
            insecure: false,
            server_name: Some("localhost".into()),
        }))
        .client_id(format!("bench-quic-{zero_rtt}"));
    options.zero_rtt = zero_rtt;
    options
}

/// One connection: returns the time to CONNACK and whether 0-RTT was used.
async fn connect_once(setup: &Setup, kind: Kind) -> (Duration, ZeroRtt) {
    let started = Instant::now();
    let (client, connected) = match kind {
        Kind::Tcp => {
            let tcp = tokio::net::TcpStream::connect(setup.tcp).await.unwrap();
            tokio::time::sleep(setup.rtt).await; // SYN / SYN-ACK on a real link
            tcp.set_nodelay(true).unwrap();
            Client::connect_over(tcp, ClientOptions::new("bench").client_id("bench-tcp"))
                .await
                .unwrap()
        }
        Kind::Tls => {
            let tcp = tokio::net::TcpStream::connect(setup.tls).await.unwrap();
            tokio::time::sleep(setup.rtt).await;
            tcp.set_nodelay(true).unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let tls = setup.tls_connector.connect(name, tcp).await.unwrap();
            Client::connect_over(tls, ClientOptions::new("bench").client_id("bench-tls"))
                .await
                .unwrap()
        }
        Kind::Quic1Rtt => Client::connect(quic_options(setup, false)).await.unwrap(),
        Kind::Quic0Rtt => Client::connect(quic_options(setup, true)).await.unwrap(),
    };
    let elapsed = started.elapsed();
    // A round trip after the CONNACK lets the session ticket arrive before the next connect.
    client
        .subscribe("bench/ticket", mqttd::codec::QoS::AtMostOnce)
        .await
        .unwrap();
    client.disconnect().await.unwrap();
    (elapsed, connected.zero_rtt)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let delay_ms: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(50);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let delay = Duration::from_millis(delay_ms);

    let dir = tempfile::tempdir().unwrap();
    let mut config = mqttd::Config::default();
    config.listeners.tcp = Some("127.0.0.1:0".parse().unwrap());
    config.listeners.quic = Some("127.0.0.1:0".parse().unwrap());
    config.listeners.mqtts = Some("127.0.0.1:0".parse().unwrap());
    config.storage.data_dir = Some(dir.path().to_path_buf());
    config.log.level = "warn".into();
    let server = mqttd::server::start(config).await.expect("broker starts");
    let cert = server.cert_path().unwrap().to_path_buf();
    let tcp_relay = relay::tcp(server.tcp_addr().unwrap(), delay).await;
    let tls_relay = relay::tcp(server.mqtts_addr().unwrap(), delay).await;
    let quic_relay = relay::udp(server.quic_addr().unwrap(), delay).await;
    let setup = Setup {
        tcp: tcp_relay.addr,
        tls: tls_relay.addr,
        quic: quic_relay.addr,
        tls_connector: tls_connector(&cert),
        cert,
        rtt: delay * 2,
    };

    println!(
        "reconnect to CONNACK, {delay_ms} ms each way (RTT {} ms), median of {rounds}:",
        delay_ms * 2
    );
    println!("| transport | CONNACK after | round trips | 0-RTT used |");
    println!("|---|---|---|---|");
    for kind in [Kind::Tcp, Kind::Tls, Kind::Quic1Rtt, Kind::Quic0Rtt] {
        // A first connection gives the client its ticket (TLS, QUIC).
        connect_once(&setup, kind).await;
        let mut times = Vec::with_capacity(rounds);
        let mut used = 0;
        for _ in 0..rounds {
            let (elapsed, zero_rtt) = connect_once(&setup, kind).await;
            times.push(elapsed);
            used += usize::from(zero_rtt == ZeroRtt::Accepted);
        }
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "| {} | {:.0} ms | {:.2} | {used}/{rounds} |",
            kind.name(),
            median.as_secs_f64() * 1000.0,
            median.as_secs_f64() / setup.rtt.as_secs_f64()
        );
    }
    server.shutdown().await;
}
