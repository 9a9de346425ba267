//! A raw MQTT-over-WebSocket client for tests: tungstenite frames carrying hand-made MQTT
//! 3.1.1 packets, so a test decides exactly how packets are cut into frames. Included with
//! `#[path = "common/ws_client.rs"] mod ws_client;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures_util::{SinkExt, StreamExt};
use mqttd::codec::{self, Packet, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const WAIT: Duration = Duration::from_secs(10);

/// Opens a WebSocket to `ws://addr/path` over `stream`, offering `protocols`.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    addr: SocketAddr,
    path: &str,
    protocols: &str,
) -> Result<WebSocketStream<S>, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(protocols).unwrap(),
        );
    }
    let (ws, response) = tokio_tungstenite::client_async(request, stream).await?;
    if protocols.split(',').any(|p| p.trim() == "mqtt") {
        assert_eq!(
            response.headers().get("Sec-WebSocket-Protocol").unwrap(),
            "mqtt",
            "[MQTT-6.0.0-4] the server selects mqtt"
        );
    }
    Ok(ws)
}

/// A plain-TCP WebSocket to `addr` at `/mqtt` with subprotocol `mqtt`.
pub async fn connect(addr: SocketAddr) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    handshake(tcp, addr, "/mqtt", "mqtt").await.unwrap()
}

fn string(out: &mut BytesMut, s: &str) {
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

fn packet(first: u8, body: BytesMut) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(first);
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if len == 0 {
            break;
        }
    }
    out.put_slice(&body);
    out.to_vec()
}

/// CONNECT (3.1.1, clean session, keep alive 60 s).
pub fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    string(&mut body, "MQTT");
    body.put_slice(&[4, 0x02, 0, 60]);
    string(&mut body, client_id);
    packet(0x10, body)
}

/// SUBSCRIBE to `filter` at QoS 0.
pub fn subscribe_packet(packet_id: u16, filter: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u16(packet_id);
    string(&mut body, filter);
    body.put_u8(0);
    packet(0x82, body)
}

/// PUBLISH at QoS 0.
pub fn publish_packet(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = BytesMut::new();
    string(&mut body, topic);
    body.put_slice(payload);
    packet(0x30, body)
}

/// Reads binary frames until `count` whole packets decode; panics on a text frame, a close or
/// after [`WAIT`].
pub async fn read_packets<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    buf: &mut BytesMut,
    count: usize,
) -> Vec<Packet> {
    let mut packets = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        while let Some(p) = codec::decode(buf, Some(ProtocolVersion::V3_1_1), 1 << 20).unwrap() {
            packets.push(p);
        }
        if packets.len() >= count {
            return packets;
        }
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {count} packets, got {packets:?}"));
        match next {
            Some(Ok(Message::Binary(data))) => buf.extend_from_slice(&data),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected binary frames, got {other:?} after {packets:?}"),
        }
    }
}

/// Sends `bytes` as one binary frame.
pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, bytes: &[u8]) {
    ws.send(Message::Binary(bytes.to_vec().into()))
        .await
        .unwrap();
}

/// CONNECT and CONNACK; returns the read buffer to go on with.
pub async fn mqtt_connect<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    client_id: &str,
) -> BytesMut {
    send(ws, &connect_packet(client_id)).await;
    let mut buf = BytesMut::new();
    let packets = read_packets(ws, &mut buf, 1).await;
    match &packets[0] {
        Packet::ConnAck(ack) => assert_eq!(ack.code, mqttd::codec::ReasonCode::SUCCESS),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    buf
}

/// SUBSCRIBE and SUBACK.
pub async fn mqtt_subscribe<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    buf: &mut BytesMut,
    filter: &str,
) {
    send(ws, &subscribe_packet(1, filter)).await;
    let packets = read_packets(ws, buf, 1).await;
    assert!(matches!(packets[0], Packet::SubAck(_)), "{packets:?}");
}

/// Waits for one PUBLISH and returns its topic and payload.
pub async fn next_publish<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    buf: &mut BytesMut,
) -> (String, Vec<u8>) {
    match read_packets(ws, buf, 1).await.remove(0) {
        Packet::Publish(p) => (p.topic.to_string(), p.payload.to_vec()),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}
