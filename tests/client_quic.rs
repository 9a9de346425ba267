//! The bundled client over QUIC against the in-process broker: certificate trust (`--cafile`,
//! `--insecure`, the error that explains them), ALPN, single-stream mode, data streams, wills,
//! session resumption, and `mqttd pub/sub --quic` end to end.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqttd::client::{Client, ClientError, ClientOptions, QuicOptions, Transport};
use mqttd::codec::{Properties, ProtocolVersion, QoS, ReasonCode, Will};

#[path = "common/in_process.rs"]
mod in_process;

use in_process::Broker;

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;
const WAIT: Duration = Duration::from_secs(5);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    in_process::within(WAIT, what, future).await
}

async fn broker() -> Broker {
    in_process::start(|_| {}).await
}

fn quic_options(server: String, cafile: Option<&Path>, insecure: bool) -> ClientOptions {
    ClientOptions::new(server).transport(Transport::Quic(QuicOptions {
        ca_file: cafile.map(Path::to_path_buf),
        insecure,
        server_name: None,
    }))
}

fn trusted(broker: &Broker, version: ProtocolVersion, id: &str) -> ClientOptions {
    quic_options(broker.quic.to_string(), Some(&broker.cert), false)
        .version(version)
        .client_id(id)
}

async fn connect(options: ClientOptions) -> Client {
    within("connect", Client::connect(options))
        .await
        .expect("connects")
        .0
}

#[tokio::test]
async fn single_stream_round_trips_with_the_brokers_certificate() {
    let b = broker().await;
    for version in [V311, V5] {
        // 127.0.0.1 is verified against the certificate's IP SAN.
        let sub = connect(trusted(&b, version, "quic-sub")).await;
        assert_eq!(
            within("SUBACK", sub.subscribe("q/#", QoS::ExactlyOnce))
                .await
                .unwrap(),
            ReasonCode::GRANTED_QOS_2
        );
        // A TCP publisher reaches the QUIC subscriber, and the other way round.
        let (tcp, _) = Client::connect(ClientOptions::new(b.tcp.to_string()).version(version))
            .await
            .unwrap();
        tcp.subscribe("back", QoS::AtLeastOnce).await.unwrap();
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            tcp.publish("q/x", format!("{}", qos as u8), qos, false)
                .await
                .unwrap();
            let message = within("a message", sub.recv()).await.unwrap();
            assert_eq!(
                (message.qos, message.payload),
                (qos, Bytes::from(format!("{}", qos as u8)))
            );
        }
        sub.publish("back", "over quic", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert_eq!(
            within("a message", tcp.recv()).await.unwrap().payload,
            "over quic"
        );
        within("disconnect", sub.disconnect()).await.unwrap();
        tcp.disconnect().await.unwrap();
    }
    b.server.shutdown().await;
}

#[tokio::test]
async fn the_name_localhost_verifies_too() {
    let b = broker().await;
    // Resolves to 127.0.0.1 and ::1; the broker listens on the first only.
    let options = quic_options(format!("localhost:{}", b.quic.port()), Some(&b.cert), false);
    let client = connect(options).await;
    client.disconnect().await.unwrap();
    b.server.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_certificate_says_how_to_trust_it() {
    let b = broker().await;
    let error = Client::connect(quic_options(b.quic.to_string(), None, false))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(error, ClientError::UntrustedCertificate { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot connect to {}: TLS certificate verification failed",
            b.quic
        )),
        "{text}"
    );
    assert!(
        text.contains("--cafile <data-dir>/cert.pem") && text.contains("--insecure"),
        "{text}"
    );
    // --insecure skips verification.
    let client = connect(quic_options(b.quic.to_string(), None, true)).await;
    client.disconnect().await.unwrap();
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let b = broker().await;
    let mut options = quic_options(b.quic.to_string(), Some(&b.cert), false);
    if let Transport::Quic(q) = &mut options.transport {
        q.server_name = Some("broker.example".into());
    }
    let error = Client::connect(options).await.err().expect("refused");
    assert!(
        matches!(error, ClientError::UntrustedCertificate { .. }),
        "{error}"
    );
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_server_without_the_mqtt_alpn_is_named_as_such() {
    // A QUIC server that only speaks h3.
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = rustls::pki_types::CertificateDer::from(certified.cert.der().to_vec());
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        if let Some(incoming) = endpoint.accept().await {
            let _ = incoming.await;
        }
    });
    let error = within(
        "the refusal",
        Client::connect(quic_options(addr.to_string(), None, true)),
    )
    .await
    .err()
    .expect("refused");
    assert!(matches!(error, ClientError::AlpnMismatch { .. }), "{error}");
    assert!(
        error.to_string().contains("does not speak MQTT over QUIC"),
        "{error}"
    );
    accept.abort();
}

#[tokio::test]
async fn nobody_listening_times_out_with_a_clear_message() {
    let free = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut options = quic_options(free.to_string(), None, true);
    options.connect_timeout = Duration::from_millis(500);
    let error = Client::connect(options).await.err().expect("no server");
    assert_eq!(
        error.to_string(),
        format!(
            "cannot connect to {free}: no answer to the QUIC handshake within 0.5s \
             (is the broker listening for MQTT over QUIC on this UDP port?)"
        )
    );
}

#[tokio::test]
async fn data_streams_carry_their_own_subscriptions() {
    let b = broker().await;
    let client = connect(trusted(&b, V5, "multi")).await;
    let stream = within("a stream", client.open_stream()).await.unwrap();
    assert_eq!(stream.id(), 1);
    within("SUBACK", stream.subscribe("data/#", QoS::AtLeastOnce))
        .await
        .unwrap();
    client
        .subscribe("control/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (publisher, _) = Client::connect(ClientOptions::new(b.tcp.to_string()))
        .await
        .unwrap();
    publisher
        .publish("data/1", "on the stream", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    publisher
        .publish("control/1", "on control", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(
        within("stream message", stream.recv())
            .await
            .unwrap()
            .payload,
        "on the stream"
    );
    assert_eq!(
        within("control message", client.recv())
            .await
            .unwrap()
            .payload,
        "on control"
    );
    // Publishing on the data stream, all QoS.
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        stream
            .publish("control/2", "from the stream", qos, false)
            .await
            .unwrap();
        assert_eq!(
            within("control message", client.recv())
                .await
                .unwrap()
                .payload,
            "from the stream"
        );
    }
    // Closing the stream removes its subscriptions; the connection lives on.
    drop(stream);
    let second = client.open_stream().await.unwrap();
    assert_eq!(second.id(), 2);
    second.subscribe("probe", QoS::AtLeastOnce).await.unwrap();
    publisher
        .publish("data/2", "nobody", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    publisher
        .publish("probe", "after", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(
        within("probe", second.recv()).await.unwrap().payload,
        "after"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), client.recv())
            .await
            .is_err(),
        "data/2 was for the closed stream"
    );
    client.disconnect().await.unwrap();
    b.server.shutdown().await;
}

#[tokio::test]
async fn tcp_clients_cannot_open_streams() {
    let b = broker().await;
    let (client, _) = Client::connect(ClientOptions::new(b.tcp.to_string()))
        .await
        .unwrap();
    let error = client
        .open_stream()
        .await
        .err()
        .expect("TCP has one stream");
    assert_eq!(error.to_string(), "several streams need the QUIC transport");
    b.server.shutdown().await;
}

#[tokio::test]
async fn the_will_and_session_resumption_work_over_quic() {
    let b = broker().await;
    let (watcher, _) = Client::connect(ClientOptions::new(b.tcp.to_string()))
        .await
        .unwrap();
    watcher
        .subscribe("wills/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let will = Will {
        topic: "wills/quic".into(),
        payload: Bytes::from_static(b"dropped"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    };
    let options = trusted(&b, V5, "quic-roamer").session_expiry(60).will(will);
    let client = connect(options).await;
    client.subscribe("roam", QoS::AtLeastOnce).await.unwrap();
    client.abort().await;
    assert_eq!(
        within("the will", watcher.recv()).await.unwrap().topic,
        "wills/quic"
    );

    watcher
        .publish("roam", "while away", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let connected = within("reconnect", client.reconnect()).await.unwrap();
    assert!(connected.session_present);
    // The loss was reported first, then the queued message.
    assert!(client.recv().await.is_err());
    assert_eq!(
        within("queued", client.recv()).await.unwrap().payload,
        "while away"
    );
    client.disconnect().await.unwrap();
    b.server.shutdown().await;
}

mod cli {
    use super::*;
    use std::process::{Command, Output, Stdio};

    fn run(args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .args(args)
            .output()
            .expect("runs mqttd")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pub_and_sub_over_quic() {
        let b = broker().await;
        let port = b.quic.port().to_string();
        let cert = b.cert.to_str().unwrap().to_owned();
        let sub = Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .args([
                "sub",
                "--quic",
                "--cafile",
                &cert,
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                "cli/quic",
                "-C",
                "1",
                "-v",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts mqttd sub");
        let mut sub = sub;
        let deadline = std::time::Instant::now() + WAIT;
        while sub.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "mqttd sub did not finish"
            );
            let out = run(&[
                "pub",
                "--quic",
                "--insecure",
                "-h",
                "localhost",
                "-p",
                &port,
                "-t",
                "cli/quic",
                "-m",
                "via quic",
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let out = sub.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "cli/quic via quic\n");

        // Without trust: one line saying what to do, exit code 1.
        let out = run(&["pub", "--quic", "-p", &port, "-t", "t", "-m", "x"]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("mqttd pub: cannot connect to 127.0.0.1:"),
            "{stderr}"
        );
        assert!(stderr.contains("--cafile <data-dir>/cert.pem"), "{stderr}");
        b.server.shutdown().await;
    }
}

#[tokio::test]
async fn clients_sharing_one_udp_socket_talk_and_refuse_to_migrate() {
    let b = broker().await;
    let shared = mqttd::client::QuicEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let on_shared = |id: &str| trusted(&b, V5, id).quic_endpoint(shared.clone());
    let sub = connect(on_shared("shared-sub")).await;
    sub.subscribe("shared/#", QoS::AtLeastOnce).await.unwrap();
    let publ = connect(on_shared("shared-pub")).await;
    for i in 0..20 {
        publ.publish(format!("shared/{i}"), "x", QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    for i in 0..20 {
        let m = within("a message over the shared socket", sub.recv())
            .await
            .unwrap();
        assert_eq!(m.topic.as_ref(), format!("shared/{i}"));
    }
    // Both connections leave from the shared socket's address, as the broker sees them.
    let clients = b.server.clients().await.unwrap();
    let peers: Vec<&str> = clients
        .iter()
        .filter(|c| {
            c.client_id
                .as_deref()
                .is_some_and(|id| id.starts_with("shared-"))
        })
        .map(|c| c.peer.as_str())
        .collect();
    let expected = format!("quic:127.0.0.1:{}", shared.local_addr().port());
    assert_eq!(peers, [expected.as_str(); 2], "{clients:?}");
    // Moving one would move both.
    assert!(matches!(
        sub.migrate().await,
        Err(ClientError::Unsupported(_))
    ));
    // A client with a socket of its own still can.
    let own = connect(trusted(&b, V5, "own-socket")).await;
    assert!(own.migrate().await.is_ok());
    b.server.shutdown().await;
}
