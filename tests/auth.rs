//! Authentication and access control end to end: a password file and an ACL with the bundled
//! client (exact CONNACK/SUBACK/PUBACK codes, both protocol versions) and with Debian's
//! `mosquitto_pub`/`mosquitto_sub`; mutual TLS on MQTTS (tokio-rustls, and mosquitto over
//! OpenSSL) and on QUIC (the bundled client's `client_cert`) with the certificate's identity as
//! the user name under an ACL; a denied QoS 0 PUBLISH in a QUIC datagram. Certificates are made
//! with rcgen; every broker runs in-process on free loopback ports.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mqttd::auth::PasswordFile;
use mqttd::client::{ClientCert, ClientError, ClientOptions, QuicOptions, Transport};
use mqttd::codec::{self, Packet, ProtocolVersion, QoS, ReasonCode};
use mqttd::server::ServerHandle;
use mqttd::Config;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

#[path = "common/listening.rs"]
mod listening;
use listening::Listening;

#[path = "common/in_process.rs"]
mod in_process;

const WAIT: Duration = Duration::from_secs(10);

const ACL: &str = "\
# every client may read public/
topic read public/#
# each device owns its subtree
pattern readwrite devices/%c/#
user alice
topic readwrite alice/#
topic write public/#
user sensor-7
topic readwrite sensors/7/#
";

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    in_process::within(WAIT, what, future).await
}

/// A directory with `passwd` (alice/wonderland, bob/builder) and `acl`.
fn auth_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut passwords = PasswordFile::default();
    passwords.set("alice", b"wonderland").unwrap();
    passwords.set("bob", b"builder").unwrap();
    passwords.save(&dir.path().join("passwd")).unwrap();
    std::fs::write(dir.path().join("acl"), ACL).unwrap();
    dir
}

fn base_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.listeners.tcp = Some("127.0.0.1:0".parse().unwrap());
    config.listeners.quic = None;
    config.storage.data_dir = Some(dir.join("data"));
    config.log.level = "warn".into();
    config
}

fn tcp(server: &ServerHandle, version: ProtocolVersion, id: &str) -> ClientOptions {
    ClientOptions::new(server.tcp_addr().unwrap().to_string())
        .version(version)
        .client_id(id)
}

fn with_login(mut options: ClientOptions, user: &str, password: &str) -> ClientOptions {
    options.username = Some(user.into());
    options.password = Some(password.to_owned().into());
    options
}

async fn refused(options: ClientOptions) -> ReasonCode {
    match within("CONNACK", mqttd::client::Client::connect(options)).await {
        Err(ClientError::Refused { code, .. }) => code,
        Ok(_) => panic!("connection accepted"),
        Err(other) => panic!("expected a refusal, got {other}"),
    }
}

fn rejected(result: Result<impl std::fmt::Debug, ClientError>) -> ReasonCode {
    match result {
        Err(ClientError::Rejected { code, .. }) => code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn password_file_and_acl_give_the_documented_codes_in_both_versions() {
    let dir = auth_files();
    let mut config = base_config(dir.path());
    config.auth.password_file = Some(dir.path().join("passwd"));
    config.auth.acl_file = Some(dir.path().join("acl"));
    let server = mqttd::server::start(config).await.unwrap();

    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        // Wrong password, unknown user, no password: 0x86 (3.1.1: return code 4).
        for (user, pw) in [("alice", "nope"), ("eve", "wonderland")] {
            let code = refused(with_login(tcp(&server, version, "x"), user, pw)).await;
            assert_eq!(
                code,
                ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                "{user} {version:?}"
            );
        }
        // A password file turns anonymous access off: 0x87 (3.1.1: 5).
        let code = refused(tcp(&server, version, "anon")).await;
        assert_eq!(code, ReasonCode::NOT_AUTHORIZED, "{version:?}");
    }

    let (alice, _) = mqttd::client::Client::connect(with_login(
        tcp(&server, ProtocolVersion::V5, "a5"),
        "alice",
        "wonderland",
    ))
    .await
    .unwrap();
    let (bob, _) = mqttd::client::Client::connect(with_login(
        tcp(&server, ProtocolVersion::V3_1_1, "b4"),
        "bob",
        "builder",
    ))
    .await
    .unwrap();
    // SUBACK: granted, or 0x87 (5.0) / 0x80 (3.1.1) for a filter the ACL does not cover.
    assert_eq!(
        alice.subscribe("alice/#", QoS::AtLeastOnce).await.unwrap(),
        ReasonCode(1)
    );
    assert_eq!(
        rejected(alice.subscribe("#", QoS::AtMostOnce).await),
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        bob.subscribe("public/#", QoS::AtLeastOnce).await.unwrap(),
        ReasonCode(1)
    );
    assert_eq!(
        rejected(bob.subscribe("alice/#", QoS::AtMostOnce).await).0,
        0x80
    );
    // PUBACK 0x87 for a 5.0 client publishing where it may not.
    assert_eq!(
        rejected(alice.publish("bob/x", "no", QoS::AtLeastOnce, false).await),
        ReasonCode::NOT_AUTHORIZED
    );
    // 3.1.1 has no code: acknowledged, and dropped.
    bob.publish("alice/inbox", "forged", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    bob.publish("alice/inbox", "forged", QoS::ExactlyOnce, false)
        .await
        .unwrap();
    // Allowed: alice -> public/ -> bob; alice's own tree.
    alice
        .publish("public/news", "hello", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let m = within("bob's delivery", bob.recv()).await.unwrap();
    assert_eq!(
        (&m.topic[..], &m.payload[..]),
        ("public/news", &b"hello"[..])
    );
    alice
        .publish("alice/x", "mine", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let m = within("alice's delivery", alice.recv()).await.unwrap();
    assert_eq!(
        &m.payload[..],
        b"mine",
        "bob's forged messages never arrived"
    );
    let metrics = server.metrics().await.unwrap();
    assert_eq!(metrics.acl_denied, 5);
    alice.disconnect().await.unwrap();
    bob.disconnect().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn automatic_anonymous_access_lets_loopback_clients_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = mqttd::server::start(base_config(dir.path())).await.unwrap();
    let (client, _) = mqttd::client::Client::connect(tcp(&server, ProtocolVersion::V5, "anon"))
        .await
        .unwrap();
    client.disconnect().await.unwrap();
    server.shutdown().await;

    let mut config = base_config(dir.path());
    config.auth.allow_anonymous = Some(false);
    let server = mqttd::server::start(config).await.unwrap();
    let code = refused(tcp(&server, ProtocolVersion::V5, "anon")).await;
    assert_eq!(code, ReasonCode::NOT_AUTHORIZED);
    server.shutdown().await;
}

fn have_mosquitto_clients() -> bool {
    let found = Command::new("mosquitto_pub").arg("--help").output().is_ok();
    if !found {
        eprintln!("note: mosquitto_pub not installed; its checks are skipped (tests/run-all.sh installs it)");
    }
    found
}

fn mosquitto(program: &str, args: Vec<String>) -> std::process::Output {
    Command::new(program).args(args).output().unwrap()
}

#[tokio::test]
async fn mosquitto_clients_log_in_with_the_password_file() {
    if !have_mosquitto_clients() {
        return;
    }
    let dir = auth_files();
    let mut config = base_config(dir.path());
    config.auth.password_file = Some(dir.path().join("passwd"));
    config.auth.acl_file = Some(dir.path().join("acl"));
    let server = mqttd::server::start(config).await.unwrap();
    let port = server.tcp_addr().unwrap().port().to_string();
    let args = |extra: &[&str]| -> Vec<String> {
        ["-h", "127.0.0.1", "-p", &port]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    // A subscriber as bob (may read public/#), then alice publishes with her password.
    let sub_args = args(&[
        "-u", "bob", "-P", "builder", "-t", "public/#", "-C", "1", "-W", "10", "-v",
    ]);
    let sub = tokio::task::spawn_blocking(move || mosquitto("mosquitto_sub", sub_args));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pub_args = args(&[
        "-u",
        "alice",
        "-P",
        "wonderland",
        "-t",
        "public/x",
        "-m",
        "hi",
        "-q",
        "1",
    ]);
    let ok = tokio::task::spawn_blocking(move || mosquitto("mosquitto_pub", pub_args))
        .await
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let got = sub.await.unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "public/x hi");

    for (extra, why) in [
        (
            vec!["-u", "alice", "-P", "wrong"],
            "bad user name or password",
        ),
        (vec![], "not authori"),
    ] {
        let mut a = extra.clone();
        a.extend(["-t", "public/x", "-m", "x", "-V", "mqttv311"]);
        let a = args(&a);
        let out = tokio::task::spawn_blocking(move || mosquitto("mosquitto_pub", a))
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            !out.status.success() && stderr.contains(why),
            "{why}: {stderr}"
        );
    }
    server.shutdown().await;
}

/// A CA and client certificates signed by it (rcgen).
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mqttd test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        for name in ["sensor-7", "intruder"] {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            let cert = if name == "intruder" {
                // Self-signed: not from the CA.
                params.self_signed(&key).unwrap()
            } else {
                params.signed_by(&key, &issuer).unwrap()
            };
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> Config {
        let mut config = base_config(self.dir.path());
        std::fs::write(self.path("acl"), ACL).unwrap();
        config.tls.client_ca = Some(self.path("ca.pem"));
        config.tls.require_client_cert = true;
        config.auth.use_identity_as_username = true;
        config.auth.acl_file = Some(self.path("acl"));
        config
    }
}

fn tls_connector(server_cert: &Path, client: Option<(&Path, &Path)>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(server_cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots);
    let tls = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(tls))
}

/// MQTT over TLS with an optional client certificate; `Err` if the handshake or CONNECT fails.
async fn mqtts_client(
    addr: SocketAddr,
    server_cert: &Path,
    client: Option<(&Path, &Path)>,
    id: &str,
) -> Result<mqttd::client::Client, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = within(
        "TLS handshake",
        tls_connector(server_cert, client).connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .map_err(|e| e.to_string())?;
    // TLS 1.3: a refused client certificate shows up at the first read, i.e. the CONNACK.
    let connected = within(
        "CONNACK",
        mqttd::client::Client::connect_over(tls, ClientOptions::new("mqtts").client_id(id)),
    )
    .await;
    connected.map(|(c, _)| c).map_err(|e| e.to_string())
}

/// The ACL section of the certificate identity "sensor-7" applies to `sensor`: it may
/// subscribe to and publish in `sensors/7/`, not subscribe to `denied`.
async fn sensor_7_reads_and_writes_its_own_tree(
    sensor: &mqttd::client::Client,
    denied: &str,
    payload: &str,
) {
    assert_eq!(
        sensor
            .subscribe("sensors/7/#", QoS::AtLeastOnce)
            .await
            .unwrap(),
        ReasonCode(1)
    );
    assert_eq!(
        rejected(sensor.subscribe(denied.to_string(), QoS::AtMostOnce).await),
        ReasonCode::NOT_AUTHORIZED
    );
    sensor
        .publish("sensors/7/t", payload.to_string(), QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let m = within("own delivery", sensor.recv()).await.unwrap();
    assert_eq!(&m.payload[..], payload.as_bytes());
}

#[tokio::test]
async fn mutual_tls_on_mqtts_uses_the_certificate_identity_for_the_acl() {
    let pki = Pki::new();
    let mut config = pki.config();
    config.listeners.mqtts = Some("127.0.0.1:0".parse().unwrap());
    let server = mqttd::server::start(config).await.unwrap();
    let addr = server.mqtts_addr().unwrap();
    let server_cert = server.cert_path().unwrap().to_path_buf();
    let (cert, key) = (pki.path("sensor-7.pem"), pki.path("sensor-7.key"));

    let sensor = mqtts_client(addr, &server_cert, Some((&cert, &key)), "s7")
        .await
        .unwrap();
    // The identity is "sensor-7": its ACL section applies.
    sensor_7_reads_and_writes_its_own_tree(&sensor, "sensors/8/#", "21").await;
    assert_eq!(
        rejected(
            sensor
                .publish("alice/x", "no", QoS::AtLeastOnce, false)
                .await
        ),
        ReasonCode::NOT_AUTHORIZED
    );

    // No certificate, or one the CA did not sign: refused by TLS.
    assert!(mqtts_client(addr, &server_cert, None, "none")
        .await
        .is_err());
    let (bad, bad_key) = (pki.path("intruder.pem"), pki.path("intruder.key"));
    assert!(
        mqtts_client(addr, &server_cert, Some((&bad, &bad_key)), "bad")
            .await
            .is_err()
    );

    // The bundled client over MQTTS (Transport::Mqtts) and `mqttd pub --mqtts --cert --key`.
    let mut options = ClientOptions::new(addr.to_string())
        .transport(Transport::Mqtts(QuicOptions {
            ca_file: Some(server_cert.clone()),
            insecure: false,
            server_name: None,
        }))
        .client_id("s7-bundled");
    options.client_cert = Some(ClientCert {
        cert: cert.clone(),
        key: key.clone(),
    });
    let (bundled, _) = within(
        "MQTTS connect",
        mqttd::client::Client::connect(options.clone()),
    )
    .await
    .unwrap();
    bundled
        .publish("sensors/7/b", "bundled", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(
        &within("bundled", sensor.recv()).await.unwrap().payload[..],
        b"bundled"
    );
    bundled.disconnect().await.unwrap();
    options.client_cert = None;
    assert!(mqttd::client::Client::connect(options).await.is_err());
    let (port, cafile) = (addr.port().to_string(), server_cert.display().to_string());
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .args([
                "pub", "--mqtts", "-p", &port, "--cafile", &cafile, "--cert", &c, "--key", &k,
            ])
            .args(["-t", "sensors/7/cli", "-m", "cli", "-q", "1"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        &within("mqttd pub", sensor.recv()).await.unwrap().payload[..],
        b"cli"
    );

    // mosquitto over OpenSSL with the same client certificate, when installed.
    if have_mosquitto_clients() {
        let args: Vec<String> = vec![
            "-h".into(),
            "localhost".into(),
            "-p".into(),
            addr.port().to_string(),
            "--cafile".into(),
            server_cert.display().to_string(),
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
            "-t".into(),
            "sensors/7/m".into(),
            "-m".into(),
            "openssl".into(),
            "-q".into(),
            "1".into(),
        ];
        let out = tokio::task::spawn_blocking(move || mosquitto("mosquitto_pub", args))
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m = within("mosquitto's message", sensor.recv()).await.unwrap();
        assert_eq!(&m.payload[..], b"openssl");
    }
    sensor.disconnect().await.unwrap();
    server.shutdown().await;
}

fn quic_options(server: &ServerHandle, id: &str, cert: Option<ClientCert>) -> ClientOptions {
    let mut options = ClientOptions::new(server.quic_addr().unwrap().to_string())
        .transport(Transport::Quic(QuicOptions {
            ca_file: Some(server.cert_path().unwrap().to_path_buf()),
            insecure: false,
            server_name: Some("localhost".into()),
        }))
        .client_id(id);
    options.client_cert = cert;
    options
}

#[tokio::test]
async fn mutual_tls_on_quic_uses_the_certificate_identity_for_the_acl() {
    let pki = Pki::new();
    let mut config = pki.config();
    config.listeners.quic = Some("127.0.0.1:0".parse().unwrap());
    let server = mqttd::server::start(config).await.unwrap();
    let sensor_cert = ClientCert {
        cert: pki.path("sensor-7.pem"),
        key: pki.path("sensor-7.key"),
    };
    let (sensor, _) = within(
        "QUIC connect with a client certificate",
        mqttd::client::Client::connect(quic_options(&server, "s7", Some(sensor_cert))),
    )
    .await
    .unwrap();
    sensor_7_reads_and_writes_its_own_tree(&sensor, "alice/#", "q").await;

    // Without a certificate, or with one the CA did not sign, there is no connection.
    let none = within(
        "QUIC connect",
        mqttd::client::Client::connect(quic_options(&server, "n", None)),
    )
    .await;
    assert!(none.is_err(), "connected without a client certificate");
    let intruder = ClientCert {
        cert: pki.path("intruder.pem"),
        key: pki.path("intruder.key"),
    };
    let bad = within(
        "QUIC connect",
        mqttd::client::Client::connect(quic_options(&server, "i", Some(intruder))),
    )
    .await;
    assert!(
        bad.is_err(),
        "connected with an untrusted client certificate"
    );
    sensor.disconnect().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn a_denied_publish_in_a_quic_datagram_is_dropped() {
    let pki = Pki::new();
    let mut config = pki.config();
    config.listeners.quic = Some("127.0.0.1:0".parse().unwrap());
    let server = mqttd::server::start(config).await.unwrap();

    // The sensor listens on its tree with the bundled client.
    let cert = ClientCert {
        cert: pki.path("sensor-7.pem"),
        key: pki.path("sensor-7.key"),
    };
    let (listener, _) =
        mqttd::client::Client::connect(quic_options(&server, "listener", Some(cert)))
            .await
            .unwrap();
    listener
        .subscribe("sensors/7/#", QoS::AtMostOnce)
        .await
        .unwrap();

    // A second connection with the same identity, raw quinn, sends datagrams: one where the
    // ACL allows (sensors/7/...), one where it does not (sensors/8/...).
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(server.cert_path().unwrap()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        CertificateDer::pem_file_iter(pki.path("sensor-7.pem"))
            .unwrap()
            .map(|c| c.unwrap())
            .collect(),
        PrivateKeyDer::from_pem_file(pki.path("sensor-7.key")).unwrap(),
    )
    .unwrap();
    tls.alpn_protocols = vec![b"mqtt".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.datagram_receive_buffer_size(Some(65536));
    client.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(client);
    let conn = within(
        "QUIC handshake",
        endpoint
            .connect(server.quic_addr().unwrap(), "localhost")
            .unwrap(),
    )
    .await
    .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let v = ProtocolVersion::V5;
    let connect = Packet::Connect(Box::new(codec::Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 30,
        properties: Default::default(),
        client_id: "dg".into(),
        will: None,
        username: None,
        password: None,
    }));
    let mut out = BytesMut::new();
    codec::encode(&connect, v, &mut out);
    send.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let connack = loop {
        if let Ok(Some(p)) = codec::decode(&mut buf, Some(v), u32::MAX) {
            break p;
        }
        let mut chunk = [0u8; 1024];
        let n = within("CONNACK", recv.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        buf.extend_from_slice(&chunk[..n]);
    };
    assert!(matches!(connack, Packet::ConnAck(a) if a.code == ReasonCode::SUCCESS));
    let datagram = |topic: &str, payload: &'static [u8]| {
        let mut out = BytesMut::new();
        let p = Packet::Publish(codec::Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.into(),
            packet_id: None,
            properties: Default::default(),
            payload: bytes::Bytes::from_static(payload),
        });
        codec::encode(&p, v, &mut out);
        out.freeze()
    };
    conn.send_datagram(datagram("sensors/8/x", b"denied"))
        .unwrap();
    // The broker handles the datagrams of a connection in order only loosely (UDP): wait for
    // the denial to be counted before sending the allowed one.
    let mut denied = false;
    for _ in 0..100 {
        if server.metrics().await.unwrap().acl_denied >= 1 {
            denied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(denied, "the denied datagram was not counted");
    conn.send_datagram(datagram("sensors/7/x", b"allowed"))
        .unwrap();
    let m = within("the allowed datagram's delivery", listener.recv())
        .await
        .unwrap();
    assert_eq!(
        (&m.topic[..], &m.payload[..]),
        ("sensors/7/x", &b"allowed"[..])
    );
    let metrics = server.metrics().await.unwrap();
    assert_eq!((metrics.datagrams_received, metrics.acl_denied), (2, 1));
    listener.disconnect().await.unwrap();
    server.shutdown().await;
}

/// The broker binary, killed when dropped.
struct BrokerProcess(std::process::Child);

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mqttd_bin(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mqttd"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn mqttd_passwd_then_the_broker_binary_and_a_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    let pw_arg = pw.to_str().unwrap();
    let out = mqttd_bin(&["passwd", "-c", "-b", pw_arg, "alice", "one"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("added user \"alice\""));
    let out = mqttd_bin(&["passwd", pw_arg, "bob", "-p", ""], "");
    assert!(!out.status.success(), "an empty password is refused");

    let config = dir.path().join("mqttd.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  tcp: 127.0.0.1:0\n  quic: null\nauth:\n  password_file: {}\nlog:\n  level: info\n",
            pw.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("broker.log");
    let listening_file = dir.path().join("listening");
    let mut broker = BrokerProcess(
        Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .arg("-c")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listening-file")
            .arg(&listening_file)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("broker.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let log_text = || {
        std::fs::read_to_string(&log).unwrap_or_default()
            + &std::fs::read_to_string(dir.path().join("broker.err")).unwrap_or_default()
    };
    let tcp_addr = match Listening::wait_for(&mut broker.0, &listening_file, Duration::from_secs(5))
    {
        Ok(Listening {
            tcp: Some(addr), ..
        }) => addr,
        other => panic!("the broker did not start ({other:?}): {}", log_text()),
    };
    let login = |user: &str, pw: &str| {
        let mut o = ClientOptions::new(tcp_addr.to_string()).client_id(format!("c-{user}"));
        o.username = Some(user.into());
        o.password = Some(pw.to_owned().into());
        o
    };
    let (alice, _) = mqttd::client::Client::connect(login("alice", "one"))
        .await
        .unwrap();
    alice.disconnect().await.unwrap();
    assert_eq!(
        refused(login("bob", "two")).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );

    // Add bob from a script, then SIGHUP: the running broker lets him in.
    let out = mqttd_bin(&["passwd", "--stdin", pw_arg, "bob"], "two\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hup = Command::new("kill")
        .args(["-HUP", &broker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let mut bob = None;
    for _ in 0..100 {
        if let Ok((c, _)) = mqttd::client::Client::connect(login("bob", "two")).await {
            bob = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        bob.is_some(),
        "bob was not let in after SIGHUP: {}",
        log_text()
    );
    let text = log_text();
    assert!(text.contains("anonymous access refused"), "{text}");
    assert!(text.contains("password file reloaded"), "{text}");
}

/// `mqttd check-config` loads the TLS files a start would load: the client CA of mutual TLS
/// (and the certificate and key), naming the key and the file when one is wrong.
#[test]
fn check_config_loads_the_tls_files() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let config_with = |ca: &std::path::Path| {
        let path = dir.join("mqttd.yaml");
        std::fs::write(&path, format!("tls:\n  client_ca: {}\n", ca.display())).unwrap();
        path
    };
    let check =
        |config: &std::path::Path| mqttd_bin(&["check-config", config.to_str().unwrap()], "");

    let out = check(&config_with(&dir.join("ca.pem")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));

    let bad = dir.join("not-a-ca.pem");
    std::fs::write(&bad, "not PEM at all\n").unwrap();
    for ca in [bad, dir.join("missing.pem")] {
        let out = check(&config_with(&ca));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("mqttd.yaml") && err.contains("tls.client_ca"),
            "{err}"
        );
        assert!(
            err.contains(ca.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
    }
}
