//! MQTT over QUIC (UDP, default port 1884, ALPN `mqtt` or `mqttv5`, TLS 1.3 only).
//!
//! One QUIC connection is one MQTT connection. Its first client-initiated bidirectional stream
//! is the control stream and carries MQTT exactly as TCP does (single-stream mode, as EMQX).
//! Further bidirectional streams are data streams and further unidirectional streams carry
//! PUBLISH/SUBSCRIBE whose answers go on the control stream (implicit multi-stream mode, see
//! `proto-ext/multi-stream.md`). Every stream is read and written by the same loops as TCP; the
//! broker state machine decides what goes where.
//!
//! This file is the listener: settings, the quinn configuration, the accept loop and the
//! handshake (with 0-RTT). Per connection: `quic_connection.rs` reads its streams and datagrams,
//! `quic_dispatch.rs` hands the broker's output to one writer task per stream, so a stream
//! blocked by flow control never holds up another.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use quinn::Endpoint;
use tokio::sync::{mpsc, watch};

use super::cert::Identity;
use super::early::{EarlyData, Handshake};
pub use super::quic_settings::{QuicSettings, ALPN, MQTT_NEXT};
use crate::broker::ConnId;
use crate::config::Config;
use crate::handoff::Event;

#[derive(Debug, thiserror::Error)]
pub enum QuicSetupError {
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot listen for MQTT over QUIC on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The quinn server configuration: TLS 1.3 on ring, our ALPNs, bounded windows and streams.
pub fn server_config(
    config: &Config,
    identity: Identity,
    webtransport_dev_cert: Option<Arc<super::wt_cert::DevCert>>,
) -> Result<quinn::ServerConfig, QuicSetupError> {
    // Tickets, the session cache and early data: quic_tls.rs; ALPN h3 and its certificate:
    // webtransport.rs.
    let alpn = super::webtransport::alpn(config, &ALPN);
    let mut tls =
        super::quic_tls::server_config(config, &identity, super::quic_tls::Listener::Quic, &alpn)
            .map_err(QuicSetupError::Tls)?;
    if let Some(dev) = webtransport_dev_cert {
        tls.cert_resolver = Arc::new(super::wt_cert::ByAlpn {
            usual: tls.cert_resolver.clone(),
            dev,
        });
    }
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| QuicSetupError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.migration(config.quic.migration);

    server.transport_config(Arc::new(super::quic_transport::transport_config(
        &config.quic,
        super::quic_transport::PathKind::Network,
    )));
    Ok(server)
}

/// `server` for peers on this host: the same but for the transport (`PathKind::Loopback`).
pub fn loopback_server_config(
    config: &Config,
    server: &quinn::ServerConfig,
) -> Arc<quinn::ServerConfig> {
    let mut server = server.clone();
    server.transport_config(Arc::new(super::quic_transport::transport_config(
        &config.quic,
        super::quic_transport::PathKind::Loopback,
    )));
    Arc::new(server)
}

/// Binds the UDP socket with `quic`'s buffer sizes. `endpoint` decides the connection IDs
/// (`super::cid`).
pub fn bind(
    addr: SocketAddr,
    quic: &crate::config::Quic,
    server: quinn::ServerConfig,
    endpoint: quinn::EndpointConfig,
) -> Result<Endpoint, QuicSetupError> {
    let bind_error = |source| QuicSetupError::Bind { addr, source };
    let socket = std::net::UdpSocket::bind(addr).map_err(bind_error)?;
    size_buffers(&socket, quic);
    Endpoint::new(
        endpoint,
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(bind_error)
}

/// Sets the socket's buffers (`quic.udp_receive_buffer`, `quic.udp_send_buffer`).
fn size_buffers(socket: &std::net::UdpSocket, quic: &crate::config::Quic) {
    use crate::udp_buffers::{size, Direction};
    let receive = quic.udp_receive_buffer as usize;
    size(
        socket,
        Direction::Receive,
        receive,
        "quic.udp_receive_buffer",
    );
    let send = quic.udp_send_buffer as usize;
    size(socket, Direction::Send, send, "quic.udp_send_buffer");
}

/// Accepts connections until `shutdown` turns true; each gets its own task, so a slow
/// handshake never blocks the accept loop.
pub async fn accept_loop(
    endpoint: Endpoint,
    events: mpsc::Sender<Event>,
    ids: Arc<AtomicU64>,
    settings: QuicSettings,
    gate: Arc<super::login::LoginGate>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = shutdown.changed() => return,
        };
        let Some(incoming) = incoming else { return };
        // Address validation: a stateless Retry first; the client's next Initial carries the
        // token that proves its address (RFC 9000 8.1.2).
        if settings.address_validation && incoming.may_retry() {
            settings.stats.retry_sent();
            if incoming.retry().is_err() {
                tracing::debug!("QUIC Retry not sent: the address was already validated");
            }
            continue;
        }
        // Past the connection limits or rate: refused before any TLS work (admission.rs).
        let admitted = settings
            .admission
            .try_admit(incoming.remote_address().ip(), std::time::Instant::now());
        let Some(ticket) = admitted else {
            tracing::debug!(remote = %incoming.remote_address(), "QUIC connection refused before its handshake: connection limit or rate");
            incoming.refuse();
            continue;
        };
        let conn = ConnId(ids.fetch_add(1, Ordering::Relaxed));
        let (events, settings, gate) = (events.clone(), settings.clone(), gate.clone());
        tokio::spawn(async move {
            serve_incoming(conn, incoming, events, settings, gate).await;
            drop(ticket);
        });
    }
}

async fn serve_incoming(
    conn: ConnId,
    incoming: quinn::Incoming,
    events: mpsc::Sender<Event>,
    settings: QuicSettings,
    gate: Arc<super::login::LoginGate>,
) {
    let remote = incoming.remote_address();
    // qlog on demand: a traced connection gets its own transport configuration (qlog.rs).
    let (accepted, qlog) = match settings.qlog.as_ref().map(|q| q.decide(conn, remote)) {
        Some(super::qlog::Decision::File(config)) => (incoming.accept_with(config), None),
        Some(super::qlog::Decision::Pending(config, pending)) => {
            (incoming.accept_with(config), Some(pending))
        }
        Some(super::qlog::Decision::Off) | None => match &settings.loopback_config {
            Some(config)
                if super::quic_transport::PathKind::of(remote.ip())
                    == super::quic_transport::PathKind::Loopback =>
            {
                (incoming.accept_with(config.clone()), None)
            }
            _ => (incoming.accept(), None),
        },
    };
    let connecting = match accepted {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "QUIC connection refused");
            return;
        }
    };
    // The ALPN decides how the connection is served (MQTT or WebTransport), and it is known
    // only once the whole ClientHello is in: Chromium's (with a post-quantum key share) spans
    // two Initial packets, and quinn hands a server connection out at 0.5-RTT even before the
    // second arrives, so without this wait such a connection was served as MQTT and never
    // answered (found by benches/webtransport_setup.sh). No round trip is added.
    let mut connecting = connecting;
    match tokio::time::timeout(settings.handshake_timeout, connecting.handshake_data()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            settings.stats.handshake_failed();
            tracing::debug!(%remote, error = %e, "QUIC handshake failed");
            return;
        }
        Err(_) => {
            settings.stats.handshake_timed_out();
            tracing::debug!(%remote, "QUIC handshake timed out");
            return;
        }
    }
    // 0-RTT: serve the connection from 0.5-RTT on; broker::early decides what early data may do.
    let connecting = if settings.zero_rtt != crate::config::ZeroRtt::Off {
        match connecting.into_0rtt() {
            Ok((connection, accepted)) => {
                let (tx, rx) = watch::channel(Handshake::Pending);
                tokio::spawn(super::early::confirm(
                    connection.clone(),
                    accepted,
                    settings.handshake_timeout,
                    tx,
                ));
                let early = EarlyData::new(settings.zero_rtt, rx, settings.stats.clone());
                serve_by_alpn(conn, connection, events, settings, early, gate, qlog).await;
                return;
            }
            Err(connecting) => connecting,
        }
    } else {
        connecting
    };
    let connection = match tokio::time::timeout(settings.handshake_timeout, connecting).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            settings.stats.handshake_failed();
            tracing::debug!(%remote, error = %e, "QUIC handshake failed");
            return;
        }
        Err(_) => {
            settings.stats.handshake_timed_out();
            tracing::debug!(%remote, "QUIC handshake timed out");
            return;
        }
    };
    let early = EarlyData::confirmed(settings.stats.clone());
    serve_by_alpn(conn, connection, events, settings, early, gate, qlog).await;
}

/// ALPN `h3` is WebTransport (when enabled); every other ALPN is MQTT over QUIC.
async fn serve_by_alpn(
    conn: ConnId,
    connection: quinn::Connection,
    events: mpsc::Sender<Event>,
    settings: QuicSettings,
    early: EarlyData,
    gate: Arc<super::login::LoginGate>,
    qlog: Option<super::qlog::Pending>,
) {
    match &settings.webtransport {
        Some(wt) if super::webtransport::negotiated(&connection) => {
            let _flushing = settings.flushing.token();
            super::webtransport::serve(conn, connection, events, wt.clone(), gate).await
        }
        _ => {
            super::quic_connection::serve(conn, connection, events, settings, early, gate, qlog)
                .await
        }
    }
}
