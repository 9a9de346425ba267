//! A QUIC connection is served by its negotiated ALPN even when its ClientHello spans several
//! Initial packets (Chromium's does, with its post-quantum key share): quinn hands a server
//! connection out at 0.5-RTT before the second packet is in, so the broker must wait for the
//! handshake data before choosing between MQTT and WebTransport. Here a quinn client offers
//! only `h3`, with ALPN padding that makes its ClientHello over 2 KB, through a relay that
//! holds each connection's second datagram back 100 ms (as a real network may; on loopback
//! both arrive together); the broker must answer as HTTP/3 (its control stream: a
//! unidirectional stream starting with type 0x00), every time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
#[path = "common/in_process.rs"]
mod in_process;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{pem::PemObject, CertificateDer};
use tokio::net::UdpSocket;

/// A UDP relay for one client in front of `broker`: the client's second datagram is held
/// back `delay`, everything else passes at once. Returns the relay's address.
async fn relay_holding_the_second_datagram(
    broker: std::net::SocketAddr,
    delay: Duration,
) -> std::net::SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(broker).await.unwrap();
    let addr = front.local_addr().unwrap();
    let client = Arc::new(tokio::sync::OnceCell::<std::net::SocketAddr>::new());
    tokio::spawn({
        let (front, back, client) = (front.clone(), back.clone(), client.clone());
        async move {
            let mut buf = vec![0u8; 65536];
            let mut n = 0u64;
            while let Ok((len, from)) = front.recv_from(&mut buf).await {
                let _ = client.set(from);
                n += 1;
                let datagram = buf[..len].to_vec();
                if n == 2 {
                    let back = back.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = back.send(&datagram).await;
                    });
                } else {
                    let _ = back.send(&datagram).await;
                }
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(len) = back.recv(&mut buf).await {
            if let Some(to) = client.get() {
                let _ = front.send_to(&buf[..len], to).await;
            }
        }
    });
    addr
}

fn client_config(cert: &Path) -> quinn::ClientConfig {
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
    // h3, then protocols nobody speaks, 8 x 250 bytes: the ClientHello needs two Initials.
    tls.alpn_protocols = std::iter::once(b"h3".to_vec())
        .chain((0..8u8).map(|i| vec![b'a' + i; 250]))
        .collect();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    quinn::ClientConfig::new(Arc::new(crypto))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clienthello_in_two_initials_is_served_by_its_alpn() {
    let b = in_process::start(|c| {
        c.quic.webtransport = true;
        c.limits.connect_timeout_secs = 2;
    })
    .await;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client_config(&b.cert));
    for attempt in 0..3 {
        let relay = relay_holding_the_second_datagram(b.quic, Duration::from_millis(100)).await;
        let connection = endpoint.connect(relay, "localhost").unwrap().await.unwrap();
        let alpn = connection
            .handshake_data()
            .unwrap()
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .unwrap()
            .protocol;
        assert_eq!(alpn.as_deref(), Some(&b"h3"[..]));
        // Served as HTTP/3: the broker opens its control stream and sends SETTINGS at once.
        let mut control = tokio::time::timeout(Duration::from_secs(5), connection.accept_uni())
            .await
            .unwrap_or_else(|_| panic!("attempt {attempt}: no HTTP/3 control stream"))
            .unwrap();
        let mut first = [0u8; 1];
        control.read_exact(&mut first).await.unwrap();
        assert_eq!(first[0], 0x00, "HTTP/3 control stream type");
        connection.close(0u32.into(), b"");
    }
    endpoint.wait_idle().await;
    b.server.shutdown().await;
}
