//! MQTT over WebSocket (`listeners.ws`, `listeners.wss`) with a raw WebSocket client that
//! decides how MQTT packets are cut into frames: one byte per frame, several packets in one
//! frame [MQTT-6.0.0-2]; the refusals (not an upgrade, a wrong path, an unknown subprotocol,
//! a text frame, a giant frame) leave other clients untouched; a trusted proxy's PROXY
//! protocol header and `X-Forwarded-For` name the client.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[path = "common/in_process.rs"]
mod in_process;
#[path = "common/ws_client.rs"]
mod ws_client;

use ws_client::*;

async fn broker(configure: impl FnOnce(&mut mqttd::Config)) -> in_process::Broker {
    in_process::start(|c| {
        c.listeners.ws = Some("127.0.0.1:0".parse().unwrap());
        c.listeners.wss = Some("127.0.0.1:0".parse().unwrap());
        configure(c);
    })
    .await
}

fn ws_addr(b: &in_process::Broker) -> SocketAddr {
    b.server.ws_addr().expect("a ws listener")
}

#[tokio::test]
async fn packets_split_at_every_byte_and_packed_into_one_frame() {
    let b = broker(|_| {}).await;
    let addr = ws_addr(&b);

    // The subscriber sends CONNECT, then SUBSCRIBE, one byte per frame.
    let mut sub = connect(addr).await;
    for byte in connect_packet("split-sub") {
        send(&mut sub, &[byte]).await;
    }
    let mut sub_buf = Default::default();
    let packets = read_packets(&mut sub, &mut sub_buf, 1).await;
    assert!(matches!(packets[0], mqttd::codec::Packet::ConnAck(_)));
    for byte in subscribe_packet(1, "split/#") {
        send(&mut sub, &[byte]).await;
    }
    let packets = read_packets(&mut sub, &mut sub_buf, 1).await;
    assert!(matches!(packets[0], mqttd::codec::Packet::SubAck(_)));

    // The publisher packs CONNECT and three PUBLISHes into one frame, then sends a packet
    // whose halves straddle two frames, each frame also holding another packet's end.
    let mut publisher = connect(addr).await;
    let mut frame = connect_packet("split-pub");
    for i in 0..3 {
        frame.extend(publish_packet("split/a", format!("m{i}").as_bytes()));
    }
    send(&mut publisher, &frame).await;
    let (p4, p5) = (
        publish_packet("split/b", b"m3"),
        publish_packet("split/b", b"m4"),
    );
    let (p4a, p4b) = p4.split_at(3);
    send(&mut publisher, p4a).await;
    send(&mut publisher, &[p4b, &p5[..1]].concat()).await;
    send(&mut publisher, &p5[1..]).await;

    let packets = read_packets(&mut sub, &mut sub_buf, 5).await;
    let payloads: Vec<Vec<u8>> = packets
        .into_iter()
        .map(|p| match p {
            mqttd::codec::Packet::Publish(p) => p.payload.to_vec(),
            other => panic!("expected PUBLISH, got {other:?}"),
        })
        .collect();
    assert_eq!(payloads, [b"m0", b"m1", b"m2", b"m3", b"m4"]);

    // The broker sees WebSocket peers under their own label.
    let clients = b.server.clients().await.unwrap();
    let peer = clients
        .iter()
        .find(|c| c.client_id.as_deref() == Some("split-sub"))
        .map(|c| c.peer.clone())
        .unwrap();
    assert!(peer.starts_with("ws:127.0.0.1:"), "{peer}");
    b.server.shutdown().await;
}

/// Sends `request` on a fresh TCP connection and returns everything the broker answers
/// before it closes.
async fn http_exchange(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("the broker answers and closes")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Waits for the Close frame that ends `ws` and returns its code.
async fn close_code<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("closed") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_harms_no_one_else() {
    let b = broker(|c| c.limits.max_packet_size = 64 * 1024).await;
    let addr = ws_addr(&b);
    // A client that must stay unaffected throughout.
    let mut bystander = connect(addr).await;
    let mut buf = mqtt_connect(&mut bystander, "bystander").await;
    mqtt_subscribe(&mut bystander, &mut buf, "still/here").await;

    // A plain HTTP request: 426 with a message saying what this endpoint is.
    let answer = http_exchange(addr, "GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 426 "), "{answer}");
    assert!(
        answer.contains("\"error\":") && answer.contains("WebSocket upgrade"),
        "{answer}"
    );

    // A wrong path: 404 naming the right one.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let refused = handshake(tcp, addr, "/ws", "mqtt").await.unwrap_err();
    let text = refused.to_string();
    assert!(text.contains("404"), "{text}");
    let answer = http_exchange(
        addr,
        "GET /elsewhere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 404 ") && answer.contains("/mqtt"),
        "{answer}"
    );

    // An unknown subprotocol: 400.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let refused = handshake(tcp, addr, "/mqtt", "chat").await.unwrap_err();
    assert!(refused.to_string().contains("400"), "{refused}");

    // A text frame closes the connection with 1003 Unsupported Data [MQTT-6.0.0-1].
    let mut texter = connect(addr).await;
    let _ = mqtt_connect(&mut texter, "texter").await;
    texter.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(close_code(&mut texter).await, Some(CloseCode::Unsupported));

    // A frame over limits.max_packet_size closes with 1009 Message Too Big; the broker refuses
    // it from its header, before reading (or buffering) the payload.
    let mut giant = connect(addr).await;
    let _ = mqtt_connect(&mut giant, "giant").await;
    let frame = giant_frame_header(1 << 30);
    giant.get_mut().write_all(&frame).await.unwrap();
    assert_eq!(close_code(&mut giant).await, Some(CloseCode::Size));

    // The bystander still gets its messages, from a client that connects now.
    let mut publisher = connect(addr).await;
    let _ = mqtt_connect(&mut publisher, "late-publisher").await;
    send(&mut publisher, &publish_packet("still/here", b"yes")).await;
    let (topic, payload) = next_publish(&mut bystander, &mut buf).await;
    assert_eq!((topic.as_str(), &payload[..]), ("still/here", &b"yes"[..]));
    b.server.shutdown().await;
}

/// The header of a masked binary frame announcing `len` payload bytes.
fn giant_frame_header(len: u64) -> Vec<u8> {
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]); // masking key
    frame
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

#[tokio::test]
async fn wss_carries_mqtt_with_the_quic_certificate() {
    let b = broker(|_| {}).await;
    let addr = b.server.wss_addr().expect("a wss listener");
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector(&b.cert)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let mut ws = handshake(tls, addr, "/mqtt", "mqtt").await.unwrap();
    let mut buf = mqtt_connect(&mut ws, "over-wss").await;
    mqtt_subscribe(&mut ws, &mut buf, "wss/t").await;
    // One frame: the PUBLISH and the start of a PINGREQ; the next: its end.
    let mut frame = publish_packet("wss/t", b"secure");
    frame.push(0xC0);
    send(&mut ws, &frame).await;
    send(&mut ws, &[0x00]).await;
    let packets = read_packets(&mut ws, &mut buf, 2).await;
    assert!(matches!(&packets[0], mqttd::codec::Packet::Publish(p) if &p.payload[..] == b"secure"));
    assert!(matches!(packets[1], mqttd::codec::Packet::PingResp));
    let clients = b.server.clients().await.unwrap();
    assert!(clients.iter().any(|c| c.peer.starts_with("wss:127.0.0.1:")));
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_others_cannot() {
    use mqttd::config::ProxyTrust;
    let b = broker(|c| {
        c.websocket.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.websocket.ws_proxy = ProxyTrust::Both;
        c.websocket.path = "/broker".into();
        // Anonymous access is for loopback peers only by default, and these are not.
        c.auth.allow_anonymous = Some(true);
    })
    .await;
    let addr = ws_addr(&b);
    let peer_of = |id: &'static str| {
        let server = &b.server;
        async move {
            let clients = server.clients().await.unwrap();
            clients
                .into_iter()
                .find(|c| c.client_id.as_deref() == Some(id))
                .map(|c| c.peer)
                .unwrap()
        }
    };

    // PROXY protocol v1 from the trusted proxy: its client is the peer.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 8083\r\n")
        .await
        .unwrap();
    let mut ws = handshake(tcp, addr, "/broker", "mqtt").await.unwrap();
    let _ = mqtt_connect(&mut ws, "via-proxy-protocol").await;
    // (Without allow_anonymous, the broker would refuse it as a remote anonymous client.)
    assert_eq!(peer_of("via-proxy-protocol").await, "ws:203.0.113.7:40000");

    // Then X-Forwarded-For (nginx behind HAProxy): the last untrusted entry wins.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 127.0.0.1 127.0.0.1 40001 8083\r\n")
        .await
        .unwrap();
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/broker"
        ))
        .unwrap();
    let headers = request.headers_mut();
    headers.insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    headers.insert("X-Forwarded-For", "6.6.6.6, 198.51.100.4".parse().unwrap());
    let (mut ws2, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    let _ = mqtt_connect(&mut ws2, "via-forwarded-for").await;
    assert_eq!(peer_of("via-forwarded-for").await, "ws:198.51.100.4:0");

    // Without the PROXY header a trusted proxy's connection is refused (it must send one).
    let tcp = TcpStream::connect(addr).await.unwrap();
    assert!(handshake(tcp, addr, "/broker", "mqtt").await.is_err());
    drop((ws, ws2));
    b.server.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_peer_cannot_claim_an_address() {
    use mqttd::config::ProxyTrust;
    let b = broker(|c| {
        c.websocket.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        c.websocket.ws_proxy = ProxyTrust::XForwardedFor;
    })
    .await;
    let addr = ws_addr(&b);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/mqtt"
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("X-Forwarded-For", "198.51.100.4".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    let _ = mqtt_connect(&mut ws, "spoofer").await;
    let clients = b.server.clients().await.unwrap();
    let peer = &clients
        .iter()
        .find(|c| c.client_id.as_deref() == Some("spoofer"))
        .unwrap()
        .peer;
    assert!(peer.starts_with("ws:127.0.0.1:"), "{peer}");
    b.server.shutdown().await;
}
