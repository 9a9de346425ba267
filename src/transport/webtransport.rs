//! MQTT over WebTransport (`quic.webtransport`, `proto-ext/webtransport.md`): browsers reach
//! the QUIC port through HTTP/3. A connection that negotiated ALPN `h3` is handed here by the
//! QUIC accept path; web-transport-quinn does the HTTP/3 part (SETTINGS, the extended CONNECT);
//! a session at the MQTT path is accepted (others get 404), and its first client-opened
//! bidirectional stream carries the MQTT connection exactly as single-stream QUIC does, read
//! and written by the same loops as every stream. QoS 0 may travel in the session's datagrams
//! with the negotiation of `proto-ext/datagrams.md`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use web_transport_quinn::{Request, Session};

use super::login::{LoginContext, LoginGate};
use super::stream::{read_packets, ReadEnd};
use crate::broker::{ConnId, StreamId, Transmit};
use crate::codec::{Packet, ProtocolVersion, ReasonCode};
use crate::handoff::Event;
use crate::rate::TokenBucket;

/// HTTP/3's "no error" connection close code (RFC 9114 8.1).
const H3_NO_ERROR: u32 = 0x100;

/// The ALPN of HTTP/3, on which WebTransport runs.
pub const ALPN_H3: &[u8] = b"h3";

/// What a WebTransport connection needs.
#[derive(Debug, Clone)]
pub struct WtSettings {
    /// The MQTT session's path (`websocket.path`).
    pub path: Arc<str>,
    pub max_packet_size: u32,
    /// Bound on the HTTP/3 handshake and the CONNECT request.
    pub handshake_timeout: Duration,
    /// How long the client has to open its MQTT stream.
    pub connect_timeout: Duration,
    pub datagrams_per_sec: u32,
}

impl WtSettings {
    /// `None` unless `quic.webtransport` is on.
    pub fn from_config(config: &crate::config::Config) -> Option<WtSettings> {
        config.quic.webtransport.then(|| WtSettings {
            path: config.websocket.path.as_str().into(),
            max_packet_size: config.limits.max_packet_size,
            handshake_timeout: Duration::from_secs(config.quic.handshake_timeout_secs),
            connect_timeout: Duration::from_secs(config.limits.connect_timeout_secs),
            datagrams_per_sec: config.limits.quic_datagrams_per_sec,
        })
    }
}

/// The QUIC listener's ALPN list: `mqtt` and friends, and `h3` when WebTransport is on.
pub fn alpn<'a>(config: &crate::config::Config, mqtt: &[&'a [u8]]) -> Vec<&'a [u8]> {
    let mut alpn = mqtt.to_vec();
    if config.quic.webtransport {
        alpn.push(ALPN_H3);
    }
    alpn
}

/// True when `connection` negotiated ALPN `h3`.
pub fn negotiated(connection: &quinn::Connection) -> bool {
    connection
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == ALPN_H3)
}

/// Serves one HTTP/3 connection: one WebTransport session carrying one MQTT connection.
pub async fn serve(
    conn: ConnId,
    connection: quinn::Connection,
    events: mpsc::Sender<Event>,
    settings: WtSettings,
    gate: Arc<LoginGate>,
) {
    let remote = connection.remote_address();
    let request = tokio::time::timeout(settings.handshake_timeout, Request::accept(connection));
    let request = match request.await {
        Ok(Ok(request)) => request,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "WebTransport request refused");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "WebTransport request timed out");
            return;
        }
    };
    if request.url.path() != &*settings.path {
        tracing::debug!(%remote, path = request.url.path(), "WebTransport session refused: 404");
        let connection = request.conn().clone();
        let _ = request.reject(http_404()).await;
        // Let the 404 reach the client before the connection goes (H3_NO_ERROR).
        let _ = tokio::time::timeout(Duration::from_secs(1), connection.closed()).await;
        connection.close(quinn::VarInt::from_u32(H3_NO_ERROR), b"");
        return;
    }
    let session = match request.ok().await {
        Ok(session) => session,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "WebTransport session failed");
            return;
        }
    };
    serve_session(conn, remote, session, events, settings, gate).await;
}

fn http_404() -> web_transport_quinn::http::StatusCode {
    web_transport_quinn::http::StatusCode::NOT_FOUND
}

async fn serve_session(
    conn: ConnId,
    remote: SocketAddr,
    session: Session,
    events: mpsc::Sender<Event>,
    settings: WtSettings,
    gate: Arc<LoginGate>,
) {
    let stream = tokio::time::timeout(settings.connect_timeout, session.accept_bi()).await;
    let Ok(Ok((mut send, mut recv))) = stream else {
        session.close(1, b"no MQTT stream");
        return;
    };
    let peer = format!("wt:{remote}");
    let Some(outbox) = crate::handoff::open_connection(&events, conn, peer).await else {
        return;
    };
    // Datagrams as on QUIC: the broker sends QoS 0 in them to a client that asked.
    let max = session.max_datagram_size();
    let caps = crate::broker::QuicCaps {
        datagram_max: (max > 0).then_some(max),
        mqtt_next: false,
    };
    if events.send(Event::QuicCaps { conn, caps }).await.is_err() {
        return;
    }
    let (accepted_tx, accepted_rx) = watch::channel(None::<ProtocolVersion>);
    let login = LoginContext {
        gate,
        peer: remote,
        identity: None,
        preauthorized: None,
    };
    let read = async {
        let mut version = None;
        let end = read_packets(
            conn,
            StreamId::CONTROL,
            &mut recv,
            &events,
            settings.max_packet_size,
            &mut version,
            |_| {},
            Some(&login),
            &outbox.read_pause,
        )
        .await;
        if let ReadEnd::Failed(error) = end {
            let _ = events.send(Event::DecodeError { conn, error }).await;
            std::future::pending::<()>().await;
        }
    };
    let write = async {
        let mut buf = BytesMut::new();
        let mut version = None;
        loop {
            let batch = outbox.next_batch(Vec::new()).await;
            let mut accounted = 0;
            for transmit in batch.transmits {
                version.get_or_insert(transmit.version);
                if transmit.stream == StreamId::DATAGRAM {
                    let (sent, fallback) = send_datagrams(&session, transmit);
                    if sent > 0
                        && events
                            .send(Event::Written { conn, bytes: sent })
                            .await
                            .is_err()
                    {
                        return;
                    }
                    accounted += fallback.len();
                    buf.extend_from_slice(&fallback);
                    continue;
                }
                if accepted_tx.borrow().is_none() && transmit.packets().iter().any(is_accepted) {
                    let _ = accepted_tx.send(Some(transmit.version));
                }
                accounted += transmit.accounted;
                buf.extend_from_slice(&transmit.bytes);
            }
            if !buf.is_empty() {
                if send.write_all(&buf).await.is_err() {
                    return;
                }
                buf.clear();
                if events
                    .send(Event::Written {
                        conn,
                        bytes: accounted,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if batch.close.is_some() {
                let _ = send.shutdown().await;
                return;
            }
        }
    };
    let datagrams = async {
        let mut accepted = accepted_rx.clone();
        let Ok(version) = accepted.wait_for(Option::is_some).await.map(|v| *v) else {
            return std::future::pending().await;
        };
        read_datagrams(
            conn,
            &session,
            &events,
            version.unwrap_or(ProtocolVersion::V5),
            &settings,
        )
        .await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = read => {}
        _ = write => {
            // Let the last packets (a DISCONNECT, a refusing CONNACK) reach the client.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        _ = datagrams => {}
        _ = session.closed() => {}
    }
    session.close(0, b"");
    let _ = events.send(Event::Lost { conn }).await;
}

fn is_accepted(packet: &Packet) -> bool {
    matches!(packet, Packet::ConnAck(ack) if ack.code == ReasonCode::SUCCESS)
}

/// Sends each packet of a datagram transmit as one datagram (a slice of the broker's buffer,
/// no copy, as on QUIC); returns the bytes sent and what did not fit (for the stream).
fn send_datagrams(session: &Session, transmit: Transmit) -> (usize, BytesMut) {
    let mut sent = 0;
    let mut fallback = BytesMut::new();
    for frame in transmit.into_frames() {
        let size = frame.len();
        if let Err(e) = session.send_datagram(frame.clone()) {
            tracing::trace!(error = %e, "WebTransport datagram not sent: on the stream instead");
            fallback.extend_from_slice(&frame);
        } else {
            sent += size;
        }
    }
    (sent, fallback)
}

/// The client's datagrams once its CONNECT is accepted, each classified as on QUIC.
async fn read_datagrams(
    conn: ConnId,
    session: &Session,
    events: &mpsc::Sender<Event>,
    version: ProtocolVersion,
    settings: &WtSettings,
) {
    let mut rate = TokenBucket::new(settings.datagrams_per_sec, std::time::Instant::now());
    while let Ok(datagram) = session.read_datagram().await {
        if !rate.allow(std::time::Instant::now()) {
            let _ = events
                .send(Event::DatagramsRateLimited { conn, count: 1 })
                .await;
            continue;
        }
        let event =
            super::quic_datagrams::classify(conn, datagram, version, settings.max_packet_size);
        if let Some(event) = event {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}
