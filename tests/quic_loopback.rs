//! MQTT over QUIC against an in-process broker, driven with raw quinn streams and the crate's
//! codec: the control stream behaves like TCP, data streams follow the multi-stream rules, and
//! the QUIC connection closes with the documented application error codes.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mqttd::codec::{
    self, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, Subscribe,
    SubscriptionOptions,
};
use quinn::{RecvStream, SendStream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::AsyncReadExt;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

async fn start_broker(dir: &std::path::Path) -> mqttd::server::ServerHandle {
    let mut config = mqttd::Config::default();
    config.listeners.tcp = Some("127.0.0.1:0".parse().unwrap());
    config.listeners.quic = Some("127.0.0.1:0".parse().unwrap());
    config.storage.data_dir = Some(dir.to_path_buf());
    mqttd::server::start(config).await.expect("broker starts")
}

async fn connect_quic(
    server: &mqttd::server::ServerHandle,
    alpn: &[u8],
) -> Result<quinn::Connection, String> {
    connect_quic_with(server, alpn, false).await
}

async fn connect_quic_with(
    server: &mqttd::server::ServerHandle,
    alpn: &[u8],
    datagrams: bool,
) -> Result<quinn::Connection, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(server.cert_path().unwrap()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap();
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.datagram_receive_buffer_size(datagrams.then_some(65536));
    client.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(client);
    let connecting = endpoint
        .connect(server.quic_addr().unwrap(), "localhost")
        .map_err(|e| e.to_string())?;
    timeout(WAIT, connecting)
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())
}

struct MqttStream {
    send: SendStream,
    recv: RecvStream,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl MqttStream {
    async fn open(conn: &quinn::Connection, version: ProtocolVersion) -> MqttStream {
        let (send, recv) = conn.open_bi().await.unwrap();
        MqttStream {
            send,
            recv,
            buf: BytesMut::new(),
            version,
        }
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        codec::encode(&packet, self.version, &mut out);
        self.send.write_all(&out).await.unwrap();
    }

    async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Ok(Some(p)) = codec::decode(&mut self.buf, Some(self.version), u32::MAX) {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(WAIT, self.recv.read(&mut chunk))
                .await
                .expect("no packet in time")
                .ok()??;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn connect(client_id: &str, version: ProtocolVersion) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 30,
        properties: Properties::default(),
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    }))
}

fn subscribe(filter: &str, qos: QoS) -> Packet {
    let options = SubscriptionOptions {
        qos,
        ..Default::default()
    };
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![(filter.into(), options)],
    })
}

fn publish(topic: &str, payload: &'static [u8], qos: QoS, id: Option<u16>) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: id,
        properties: Properties::default(),
        payload: bytes::Bytes::from_static(payload),
    })
}

#[tokio::test]
async fn single_stream_pub_sub_for_both_versions_and_normal_close() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_broker(dir.path()).await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let conn = connect_quic(&server, b"mqtt").await.unwrap();
        let mut control = MqttStream::open(&conn, version).await;
        control.send(connect("q1", version)).await;
        assert!(matches!(control.recv().await, Some(Packet::ConnAck(a)) if a.code.0 == 0));
        control.send(subscribe("q/t", QoS::AtLeastOnce)).await;
        assert!(matches!(control.recv().await, Some(Packet::SubAck(_))));
        control
            .send(publish("q/t", b"hello", QoS::AtLeastOnce, Some(9)))
            .await;
        let mut got_ack = false;
        let mut got_msg = false;
        while !(got_ack && got_msg) {
            match control.recv().await {
                Some(Packet::PubAck(a)) if a.packet_id == 9 => got_ack = true,
                Some(Packet::Publish(p)) if &p.payload[..] == b"hello" => got_msg = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        control
            .send(Packet::Disconnect(codec::Disconnect::new(
                codec::ReasonCode::NORMAL_DISCONNECTION,
            )))
            .await;
        let closed = timeout(WAIT, conn.closed()).await.unwrap();
        assert!(
            matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(0)),
            "{closed:?}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn data_streams_carry_their_own_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_broker(dir.path()).await;
    let v = ProtocolVersion::V5;
    let conn = connect_quic(&server, b"mqtt").await.unwrap();
    let mut control = MqttStream::open(&conn, v).await;
    control.send(connect("ms", v)).await;
    assert!(matches!(control.recv().await, Some(Packet::ConnAck(_))));
    let mut data = MqttStream::open(&conn, v).await;
    data.send(subscribe("d/t", QoS::AtMostOnce)).await;
    assert!(
        matches!(data.recv().await, Some(Packet::SubAck(_))),
        "SUBACK on the data stream"
    );
    control
        .send(publish("d/t", b"to-data", QoS::AtMostOnce, None))
        .await;
    assert!(matches!(data.recv().await, Some(Packet::Publish(p)) if &p.payload[..] == b"to-data"));
    data.send(Packet::PingReq).await;
    assert!(matches!(data.recv().await, Some(Packet::PingResp)));
    // The client finishing a data stream: the server finishes its side too.
    let mut other = MqttStream::open(&conn, v).await;
    other.send(subscribe("e/t", QoS::AtMostOnce)).await;
    assert!(matches!(other.recv().await, Some(Packet::SubAck(_))));
    other.send.finish().unwrap();
    assert_eq!(
        timeout(WAIT, other.recv()).await.unwrap(),
        None,
        "server side finished after the client's FIN"
    );
    // A CONNECT on a data stream ends that stream only.
    data.send(connect("again", v)).await;
    assert_eq!(
        timeout(WAIT, data.recv()).await.unwrap(),
        None,
        "data stream finished"
    );
    control.send(Packet::PingReq).await;
    assert!(matches!(control.recv().await, Some(Packet::PingResp)));
    server.shutdown().await;
}

#[tokio::test]
async fn control_stream_protocol_error_closes_with_application_error_1() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_broker(dir.path()).await;
    let v = ProtocolVersion::V5;
    let conn = connect_quic(&server, b"mqtt").await.unwrap();
    let mut control = MqttStream::open(&conn, v).await;
    control.send(connect("bad", v)).await;
    assert!(matches!(control.recv().await, Some(Packet::ConnAck(_))));
    control.send.write_all(&[0x36, 0x00]).await.unwrap(); // PUBLISH QoS 3
    assert!(matches!(control.recv().await, Some(Packet::Disconnect(d)) if d.code.0 == 0x81));
    let closed = timeout(WAIT, conn.closed()).await.unwrap();
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(1)),
        "{closed:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_alpn_is_refused_and_tcp_and_quic_share_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_broker(dir.path()).await;
    assert!(connect_quic(&server, b"h3").await.is_err());

    // A TCP subscriber receives what a QUIC client publishes.
    let mut tcp = tokio::net::TcpStream::connect(server.tcp_addr().unwrap())
        .await
        .unwrap();
    let v = ProtocolVersion::V3_1_1;
    let mut out = BytesMut::new();
    codec::encode(&connect("tcp-sub", v), v, &mut out);
    codec::encode(&subscribe("x/#", QoS::AtMostOnce), v, &mut out);
    tokio::io::AsyncWriteExt::write_all(&mut tcp, &out)
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    while got.len() < 2 {
        let mut chunk = [0u8; 1024];
        let n = timeout(WAIT, tcp.read(&mut chunk)).await.unwrap().unwrap();
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some(p)) = codec::decode(&mut buf, Some(v), u32::MAX) {
            got.push(p);
        }
    }
    let conn = connect_quic(&server, b"mqttv5").await.unwrap();
    let mut control = MqttStream::open(&conn, v).await;
    control.send(connect("quic-pub", v)).await;
    assert!(matches!(control.recv().await, Some(Packet::ConnAck(_))));
    control
        .send(publish("x/y", b"over quic", QoS::AtMostOnce, None))
        .await;
    loop {
        if let Ok(Some(Packet::Publish(p))) = codec::decode(&mut buf, Some(v), u32::MAX) {
            assert_eq!(&p.payload[..], b"over quic");
            break;
        }
        let mut chunk = [0u8; 1024];
        let n = timeout(WAIT, tcp.read(&mut chunk)).await.unwrap().unwrap();
        buf.extend_from_slice(&chunk[..n]);
    }

    // Takeover across transports: the same client id over QUIC closes the TCP connection.
    let conn2 = connect_quic(&server, b"mqtt").await.unwrap();
    let mut control2 = MqttStream::open(&conn2, v).await;
    control2.send(connect("tcp-sub", v)).await;
    assert!(matches!(control2.recv().await, Some(Packet::ConnAck(_))));
    let mut rest = Vec::new();
    let n = timeout(WAIT, tcp.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    let _ = n; // 3.1.1: the old connection is closed without a DISCONNECT
    server.shutdown().await;
}

fn user_prop<'a>(p: &'a Properties, key: &str) -> Option<&'a str> {
    p.user_properties
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| &v[..])
}

#[tokio::test]
async fn qos0_deliveries_and_publishes_travel_in_datagrams_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_broker(dir.path()).await;
    let v = ProtocolVersion::V5;
    let conn = connect_quic_with(&server, b"mqtt", true).await.unwrap();
    let mut control = MqttStream::open(&conn, v).await;
    let mut c = match connect("dg", v) {
        Packet::Connect(c) => c,
        _ => unreachable!(),
    };
    c.properties
        .user_properties
        .push(("quic-datagrams".into(), "on".into()));
    control.send(Packet::Connect(c)).await;
    match control.recv().await {
        Some(Packet::ConnAck(a)) => {
            assert_eq!(user_prop(&a.properties, "quic-datagrams"), Some("on"));
            let max: usize = user_prop(&a.properties, "quic-datagram-max-size")
                .unwrap()
                .parse()
                .unwrap();
            assert!(max >= 1000, "{max}");
        }
        other => panic!("{other:?}"),
    }
    control.send(subscribe("dg/#", QoS::AtLeastOnce)).await;
    assert!(matches!(control.recv().await, Some(Packet::SubAck(_))));
    // A QoS 0 PUBLISH sent as a datagram comes back as a datagram.
    let mut out = BytesMut::new();
    codec::encode(
        &publish("dg/x", b"via datagram", QoS::AtMostOnce, None),
        v,
        &mut out,
    );
    conn.send_datagram(out.freeze()).unwrap();
    let datagram = timeout(WAIT, conn.read_datagram()).await.unwrap().unwrap();
    let mut buf = BytesMut::from(&datagram[..]);
    match codec::decode(&mut buf, Some(v), u32::MAX).unwrap() {
        Some(Packet::Publish(p)) => assert_eq!(
            (&p.topic[..], &p.payload[..]),
            ("dg/x", &b"via datagram"[..])
        ),
        other => panic!("{other:?}"),
    }
    // QoS 1 stays on the stream; a zero-length probe and a malformed datagram change nothing.
    conn.send_datagram(bytes::Bytes::new()).unwrap();
    conn.send_datagram(bytes::Bytes::from_static(&[0x36, 0x00]))
        .unwrap();
    control
        .send(publish("dg/y", b"reliable", QoS::AtLeastOnce, Some(3)))
        .await;
    let mut got_publish = false;
    while !got_publish {
        match control.recv().await {
            Some(Packet::Publish(p)) => {
                assert_eq!(&p.payload[..], b"reliable");
                got_publish = true;
            }
            Some(Packet::PubAck(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    let m = server.metrics().await.unwrap();
    assert_eq!(
        (m.datagrams_received, m.datagrams_sent, m.datagrams_dropped),
        (1, 1, 1)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn flow_headers_are_accepted_or_refused_with_the_draft_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_broker(dir.path()).await;
    let v = ProtocolVersion::V5;
    let conn = connect_quic(&server, b"MQTT-next").await.unwrap();
    let mut control = MqttStream::open(&conn, v).await;
    // A control flow header (0x11, id 0, flags 0) before CONNECT.
    control.send.write_all(&[0x11, 0x00, 0x00]).await.unwrap();
    control.send(connect("flows", v)).await;
    assert!(matches!(control.recv().await, Some(Packet::ConnAck(_))));
    // A client data flow (0x12, id 2, expiry 300, flags 0x50) carrying a SUBSCRIBE.
    let mut data = MqttStream::open(&conn, v).await;
    data.send
        .write_all(&[0x12, 0x02, 0x41, 0x2C, 0x50])
        .await
        .unwrap();
    data.send(subscribe("f/t", QoS::AtMostOnce)).await;
    assert!(matches!(data.recv().await, Some(Packet::SubAck(_))));
    // A user-defined flow is refused with FLOW_REFUSED (0xBE); so is a server data flow (0xB5).
    for (header, code) in [
        (&[0x14u8, 0x02, b'h', b'i'][..], 0xBEu32),
        (&[0x13, 0x03, 0x00, 0x00][..], 0xB5),
    ] {
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(header).await.unwrap();
        let stopped = timeout(WAIT, send.stopped()).await.unwrap();
        assert_eq!(stopped.unwrap(), Some(quinn::VarInt::from_u32(code)));
    }
    control.send(Packet::PingReq).await;
    assert!(
        matches!(control.recv().await, Some(Packet::PingResp)),
        "the connection lives on"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_next_deliveries_arrive_on_server_streams_one_per_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_broker(dir.path()).await;
    let v = ProtocolVersion::V5;
    let conn = connect_quic(&server, b"MQTT-next").await.unwrap();
    let mut control = MqttStream::open(&conn, v).await;
    control.send(connect("mapped", v)).await;
    match control.recv().await {
        Some(Packet::ConnAck(a)) => assert_eq!(
            user_prop(&a.properties, "quic-stream-mapping"),
            Some("subscription")
        ),
        other => panic!("{other:?}"),
    }
    control.send(subscribe("m/a", QoS::AtLeastOnce)).await;
    assert!(matches!(control.recv().await, Some(Packet::SubAck(_))));
    control.send(subscribe("m/b", QoS::AtMostOnce)).await;
    assert!(matches!(control.recv().await, Some(Packet::SubAck(_))));
    control
        .send(publish("m/a", b"one", QoS::AtMostOnce, None))
        .await;
    control
        .send(publish("m/b", b"two", QoS::AtMostOnce, None))
        .await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut recv = timeout(WAIT, conn.accept_uni()).await.unwrap().unwrap();
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 256];
        // Header 0x13, a server flow id (odd), expiry, flags; then the PUBLISH.
        loop {
            let n = timeout(WAIT, recv.read(&mut chunk))
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            bytes.extend_from_slice(&chunk[..n]);
            if let Some((mqttd::codec::flow::FlowHeader::Data { kind: 0x13, id, .. }, len)) =
                mqttd::codec::flow::parse(&bytes).unwrap()
            {
                assert!(id.is_server_initiated());
                let mut rest = BytesMut::from(&bytes[len..]);
                if let Some(Packet::Publish(p)) =
                    codec::decode(&mut rest, Some(v), u32::MAX).unwrap()
                {
                    seen.push((id.0, String::from_utf8(p.payload.to_vec()).unwrap()));
                    break;
                }
            }
        }
    }
    seen.sort();
    assert_eq!(
        seen.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert_ne!(seen[0].0, seen[1].0, "one flow per subscription");
    server.shutdown().await;
}
