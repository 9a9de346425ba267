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
use std::time::Duration;

use quinn::{Endpoint, VarInt};
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

    server.transport_config(Arc::new(transport_config(&config.quic)));
    Ok(server)
}

/// The transport parameters of every connection (`super::qlog` builds one per traced
/// connection: quinn's transport configuration is not `Clone`).
pub fn transport_config(q: &crate::config::Quic) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(q.max_bidi_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(q.max_uni_streams))
        .stream_receive_window(VarInt::from_u32(q.stream_receive_window))
        .receive_window(VarInt::from_u32(q.receive_window))
        .send_window(u64::from(q.send_window))
        .max_idle_timeout(
            quinn::IdleTimeout::try_from(Duration::from_secs(q.idle_timeout_secs)).ok(),
        )
        // QoS 0 in DATAGRAM frames (proto-ext/datagrams.md).
        .datagram_receive_buffer_size(Some(super::quic_datagrams::RECEIVE_BUFFER));
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(q.max_udp_payload);
    transport.mtu_discovery_config(Some(mtu));
    if q.ack_delay_ms > 0 {
        // Ask clients to acknowledge within ack_delay_ms (ACK frequency extension): their
        // max_ack_delay is part of our probe timeout, so a lost packet with nothing after it
        // (the last message of a quiet topic) is resent sooner. See benches/lossy.sh.
        let mut ack = quinn::AckFrequencyConfig::default();
        ack.max_ack_delay(Some(Duration::from_millis(u64::from(q.ack_delay_ms))))
            // A gap in packet numbers is still acknowledged at once, as without the extension.
            .reordering_threshold(VarInt::from_u32(1));
        transport.ack_frequency_config(Some(ack));
    }
    transport
}

/// Binds the UDP socket. `endpoint` decides the connection IDs (`super::cid`).
pub fn bind(
    addr: SocketAddr,
    server: quinn::ServerConfig,
    endpoint: quinn::EndpointConfig,
) -> Result<Endpoint, QuicSetupError> {
    let bind_error = |source| QuicSetupError::Bind { addr, source };
    let socket = std::net::UdpSocket::bind(addr).map_err(bind_error)?;
    Endpoint::new(
        endpoint,
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(bind_error)
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
        // Past the connection limits: refused before any TLS work (admission.rs).
        let Some(ticket) = settings.admission.try_admit(incoming.remote_address().ip()) else {
            tracing::debug!(remote = %incoming.remote_address(), "QUIC connection refused before its handshake: connection limit");
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
        Some(super::qlog::Decision::Off) | None => (incoming.accept(), None),
    };
    let connecting = match accepted {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "QUIC connection refused");
            return;
        }
    };
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
