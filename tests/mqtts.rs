//! MQTT over TCP + TLS 1.3 (MQTTS): the broker's `listeners.mqtts` with the QUIC listener's
//! certificate, reached with tokio-rustls and the bundled client (`Client::connect_over`), and
//! with Debian's `mosquitto_pub`/`mosquitto_sub` (OpenSSL) when they are installed.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mqttd::client::{Client, ClientOptions};
use mqttd::codec::QoS;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

#[path = "common/in_process.rs"]
mod in_process;

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    in_process::within(WAIT, what, future).await
}

fn connector(cert: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(tls))
}

async fn tls_client(addr: SocketAddr, cert: &Path, id: &str) -> Client {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = within(
        "TLS handshake",
        connector(cert).connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    within(
        "CONNACK",
        Client::connect_over(tls, ClientOptions::new("mqtts").client_id(id)),
    )
    .await
    .unwrap()
    .0
}

#[tokio::test]
async fn mqtts_serves_mqtt_over_tls13_with_the_quic_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = mqttd::Config::default();
    config.listeners.tcp = Some("127.0.0.1:0".parse().unwrap());
    config.listeners.quic = None;
    config.listeners.mqtts = Some("127.0.0.1:0".parse().unwrap());
    config.storage.data_dir = Some(dir.path().to_path_buf());
    config.log.level = "warn".into();
    let server = mqttd::server::start(config).await.unwrap();
    let mqtts = server.mqtts_addr().expect("an MQTTS listener");
    let cert = server.cert_path().expect("a certificate").to_path_buf();

    let sub = tls_client(mqtts, &cert, "tls-sub").await;
    sub.subscribe("tls/#", QoS::ExactlyOnce).await.unwrap();
    let publisher = tls_client(mqtts, &cert, "tls-pub").await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        publisher
            .publish("tls/x", format!("q{}", qos as u8), qos, false)
            .await
            .unwrap();
        let m = within("message", sub.recv()).await.unwrap();
        assert_eq!(m.payload, format!("q{}", qos as u8).as_bytes());
    }
    let clients = server.clients().await.unwrap();
    assert!(
        clients
            .iter()
            .all(|c| c.peer.starts_with("mqtts:127.0.0.1:")),
        "{clients:?}"
    );

    // A plain-TCP client on the TLS port gets nowhere (the handshake fails, no MQTT).
    let plain = tokio::time::timeout(
        Duration::from_secs(3),
        Client::connect(ClientOptions::new(mqtts.to_string()).client_id("plain")),
    )
    .await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "plain MQTT accepted on the TLS port"
    );

    // mosquitto (OpenSSL) as an independent TLS client, when installed.
    if Command::new("mosquitto_pub").arg("--help").output().is_ok() {
        let output = tokio::task::spawn_blocking({
            let cert = cert.clone();
            move || {
                Command::new("mosquitto_pub")
                    .args(["-h", "localhost", "-p", &mqtts.port().to_string()])
                    .arg("--cafile")
                    .arg(&cert)
                    .args(["-t", "tls/mosquitto", "-m", "over openssl", "-q", "1"])
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(
            output.status.success(),
            "mosquitto_pub over TLS failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let m = within("mosquitto's message", sub.recv()).await.unwrap();
        assert_eq!(&m.payload[..], b"over openssl");
    }
    sub.disconnect().await.unwrap();
    publisher.disconnect().await.unwrap();
    server.shutdown().await;
}
