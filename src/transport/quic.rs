//! MQTT over QUIC (UDP, default port 1884, ALPN `mqtt` or `mqttv5`, TLS 1.3 only).
//!
//! One QUIC connection is one MQTT connection. Its first client-initiated bidirectional stream
//! is the control stream and carries MQTT exactly as TCP does (single-stream mode, as EMQX).
//! Further bidirectional streams are data streams and further unidirectional streams carry
//! PUBLISH/SUBSCRIBE whose answers go on the control stream (implicit multi-stream mode, see
//! `proto-ext/multi-stream.md`). Every stream is read and written by the same loops as TCP; the
//! broker state machine decides what goes where.
//!
//! Per connection: one task owns the connection and dispatches the broker's output to one writer
//! task per stream, so a stream blocked by flow control never holds up another.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quinn::{Endpoint, RecvStream, SendStream, VarInt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use super::app_error;
use super::cert::Identity;
use super::early::{EarlyData, Handshake, QuicStats};
use super::migration::{Observed, PeerPath};
use super::quic_datagrams;
use super::quic_streams::{self, Opening, Prefixed, StreamKind};
use super::stream::{read_packets, write_packets, ReadEnd};
use crate::broker::{allowed_on_unidirectional_stream, CloseKind, ConnId, FlowEvent, StreamId};
use crate::codec::ProtocolVersion;
use crate::config::Config;
use crate::handoff::Event;
use crate::handoff::Outbox;
use crate::rate::TokenBucket;

/// ALPN protocol ids accepted on the listener: plain MQTT over QUIC (EMQX style) and the
/// MQTT-next draft (flow headers).
pub const ALPN: [&[u8]; 3] = [b"mqtt", b"mqttv5", MQTT_NEXT];
pub const MQTT_NEXT: &[u8] = b"MQTT-next";

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

/// Timeouts and limits the connection tasks need.
#[derive(Debug, Clone)]
pub struct QuicSettings {
    pub max_packet_size: u32,
    pub handshake_timeout: Duration,
    /// How long the client has to open its control stream.
    pub connect_timeout: Duration,
    /// What 0-RTT early data may do (`Off` when the TLS configuration refuses it).
    pub zero_rtt: crate::config::ZeroRtt,
    /// 0-RTT counters of the listener.
    pub stats: Arc<QuicStats>,
    /// Streams a client may open per second, and datagrams it may send (0: no limit).
    pub stream_opens_per_sec: u32,
    pub datagrams_per_sec: u32,
    /// Connections refused before their handshake (`super::admission`).
    pub admission: Arc<super::admission::Admission>,
    /// `quic.address_validation`: a Retry before every new connection.
    pub address_validation: bool,
    /// Connections being served; server shutdown waits until each has handed its last packets
    /// to QUIC and closed.
    pub flushing: TaskTracker,
}

impl QuicSettings {
    pub fn from_config(config: &Config) -> QuicSettings {
        let early = super::quic_tls::early_data_enabled(config, super::quic_tls::Listener::Quic);
        QuicSettings {
            max_packet_size: config.limits.max_packet_size,
            handshake_timeout: Duration::from_secs(config.quic.handshake_timeout_secs),
            connect_timeout: Duration::from_secs(config.limits.connect_timeout_secs),
            zero_rtt: if early {
                config.quic.zero_rtt
            } else {
                crate::config::ZeroRtt::Off
            },
            stats: Arc::default(),
            stream_opens_per_sec: config.limits.quic_stream_opens_per_sec,
            datagrams_per_sec: config.limits.quic_datagrams_per_sec,
            admission: Arc::new(super::admission::Admission::new(&config.limits)),
            address_validation: config.quic.address_validation,
            flushing: TaskTracker::new(),
        }
    }
}

/// The quinn server configuration: TLS 1.3 on ring, our ALPNs, bounded windows and streams.
pub fn server_config(
    config: &Config,
    identity: Identity,
) -> Result<quinn::ServerConfig, QuicSetupError> {
    // Tickets, the session cache and early data: quic_tls.rs.
    let tls =
        super::quic_tls::server_config(config, &identity, super::quic_tls::Listener::Quic, &ALPN)
            .map_err(QuicSetupError::Tls)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| QuicSetupError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.migration(config.quic.migration);

    let q = &config.quic;
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
    server.transport_config(Arc::new(transport));
    Ok(server)
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
    let connecting = match incoming.accept() {
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
                serve_connection(conn, connection, events, settings, early, gate).await;
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
            tracing::debug!(%remote, error = %e, "QUIC handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "QUIC handshake timed out");
            return;
        }
    };
    let early = EarlyData::confirmed(settings.stats.clone());
    serve_connection(conn, connection, events, settings, early, gate).await;
}

/// Serves one QUIC connection until the broker closes it.
async fn serve_connection(
    conn: ConnId,
    connection: quinn::Connection,
    events: mpsc::Sender<Event>,
    settings: QuicSettings,
    early: EarlyData,
    gate: Arc<super::login::LoginGate>,
) {
    let _flushing = settings.flushing.token();
    let peer = super::migration::peer_label(connection.remote_address());
    let (path, moves) = PeerPath::new(connection.clone());
    let outbox = Arc::new(Outbox::default());
    if events
        .send(Event::Opened {
            conn,
            peer,
            outbox: outbox.clone(),
        })
        .await
        .is_err()
    {
        return;
    }
    let mqtt_next = negotiated_mqtt_next(&connection);
    let abnormal = if mqtt_next {
        app_error::MQTT_NEXT_UNSPECIFIED
    } else {
        app_error::ABNORMAL
    };
    let caps = crate::broker::QuicCaps {
        datagram_max: connection.max_datagram_size(),
        mqtt_next,
    };
    if events.send(Event::QuicCaps { conn, caps }).await.is_err() {
        return;
    }
    let control = tokio::select! {
        s = connection.accept_bi() => s.ok(),
        _ = tokio::time::sleep(settings.connect_timeout) => None,
    };
    // The control stream may open with a control flow header (0x11).
    let control = match control {
        Some((send, recv)) => match quic_streams::open(recv, StreamKind::Control).await {
            Opening::Mqtt { reader, .. } => Some((send, reader)),
            Opening::Refused { recv, code, why } => {
                quic_streams::refuse(recv, code, why);
                None
            }
            Opening::Failed => None,
        },
        None => None,
    };
    let Some((control_send, mut control_recv)) = control else {
        connection.close(VarInt::from_u32(abnormal), b"no control stream");
        let _ = events.send(Event::Lost { conn }).await;
        return;
    };
    // The control stream goes first when streams compete for the congestion window.
    let _ = control_send.set_priority(i32::MAX);

    let (version_tx, version_rx) = watch::channel(None::<ProtocolVersion>);
    let (accepted_tx, accepted_rx) = watch::channel(false);
    let (new_streams, mut new_streams_rx) = mpsc::channel::<(StreamId, SendStream)>(16);

    let control_reader = async {
        // Every event of the stream goes through its 0-RTT gate (early.rs), in order.
        let events = early.stream_events(conn, control_recv.inner().is_0rtt(), &events);
        // Mutual TLS: quinn/rustls verified the client's chain against tls.client_ca (0-RTT
        // is off then, so the handshake is complete here).
        let chain = connection.peer_identity().and_then(|any| {
            any.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
                .ok()
        });
        let login = super::login::LoginContext {
            gate: gate.clone(),
            peer: connection.remote_address(),
            identity: super::login::peer_identity(chain.as_deref().map(|c| c.as_slice())),
            preauthorized: None,
        };
        let mut version = None;
        let end = read_packets(
            conn,
            StreamId::CONTROL,
            &mut path.observe(&mut control_recv),
            &events,
            settings.max_packet_size,
            &mut version,
            |v| {
                let _ = version_tx.send(Some(v));
            },
            Some(&login),
            &outbox.read_pause,
        )
        .await;
        match end {
            ReadEnd::Failed(error) => {
                let _ = events.send(Event::DecodeError { conn, error }).await;
            }
            // FIN or reset of the control stream ends the MQTT connection.
            ReadEnd::Closed => {
                let _ = events.send(Event::Lost { conn }).await;
            }
            ReadEnd::BrokerGone => {}
        }
        // The broker's Close output ends the connection (dispatcher below).
        std::future::pending::<()>().await;
    };

    // Stream opens beyond the rate are refused (STOP_SENDING / RESET_STREAM with OVERLOAD),
    // shared by both kinds of stream.
    let opens = std::sync::Mutex::new(TokenBucket::new(
        settings.stream_opens_per_sec,
        std::time::Instant::now(),
    ));
    let open_allowed = || {
        opens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(std::time::Instant::now())
    };

    let bidi_acceptor = async {
        while let Ok((send, recv)) = connection.accept_bi().await {
            if !open_allowed() {
                refuse_overload(recv, Some(send));
                if events.send(Event::StreamRefused { conn }).await.is_err() {
                    break;
                }
                continue;
            }
            // Data streams are read only after a successful CONNACK; until then their bytes
            // wait in QUIC flow control.
            let Some(version) = wait_accepted(accepted_rx.clone(), version_rx.clone()).await else {
                break;
            };
            let stream = StreamId(VarInt::from(recv.id()).into_inner());
            let reader = match quic_streams::open(recv, StreamKind::Data).await {
                Opening::Mqtt { reader, .. } => reader,
                Opening::Refused { recv, code, why } => {
                    quic_streams::refuse(recv, code, why);
                    let mut send = send;
                    let _ = send.reset(VarInt::from_u32(code));
                    continue;
                }
                Opening::Failed => continue,
            };
            let _ = send.set_priority(0);
            if new_streams.send((stream, send)).await.is_err()
                || events
                    .send(Event::StreamOpened { conn, stream })
                    .await
                    .is_err()
            {
                break;
            }
            let stream_events = early.stream_events(conn, reader.inner().is_0rtt(), &events);
            tokio::spawn(read_data_stream(
                conn,
                stream,
                path.observe(reader),
                stream_events,
                settings.max_packet_size,
                version,
                outbox.clone(),
            ));
        }
        std::future::pending::<()>().await;
    };

    let uni_acceptor = async {
        while let Ok(recv) = connection.accept_uni().await {
            if !open_allowed() {
                refuse_overload(recv, None);
                if events.send(Event::StreamRefused { conn }).await.is_err() {
                    break;
                }
                continue;
            }
            let Some(version) = wait_accepted(accepted_rx.clone(), version_rx.clone()).await else {
                break;
            };
            let reader = match quic_streams::open(recv, StreamKind::Data).await {
                Opening::Mqtt { reader, .. } => reader,
                Opening::Refused { recv, code, why } => {
                    quic_streams::refuse(recv, code, why);
                    continue;
                }
                Opening::Failed => continue,
            };
            let stream_events = early.stream_events(conn, reader.inner().is_0rtt(), &events);
            tokio::spawn(read_uni_stream(
                conn,
                path.observe(reader),
                stream_events,
                settings.max_packet_size,
                version,
                outbox.clone(),
            ));
        }
        std::future::pending::<()>().await;
    };

    let datagram_reader = async {
        if let Some(version) = wait_accepted(accepted_rx.clone(), version_rx.clone()).await {
            quic_datagrams::read(
                conn,
                connection.clone(),
                events.clone(),
                version,
                settings.max_packet_size,
                TokenBucket::new(settings.datagrams_per_sec, std::time::Instant::now()),
                &path,
            )
            .await;
        }
        std::future::pending::<()>().await;
    };

    let dispatcher = async {
        let mut writers: HashMap<StreamId, StreamWriter> = HashMap::new();
        // Data streams are opened for reading once the control stream's writer has handed a
        // successful CONNACK to QUIC: with the control stream's higher priority, nothing sent on
        // a data stream can then overtake the CONNACK.
        // The broker marks the transmit that carries it (`Transmit::accepted`).
        let on_control_written = move |transmits: &[crate::broker::Transmit]| {
            if transmits.iter().any(|t| t.accepted) {
                accepted_tx.send_replace(true);
            }
        };
        writers.insert(
            StreamId::CONTROL,
            StreamWriter::spawn(conn, control_send, events.clone(), on_control_written),
        );
        let mut spare = Vec::new();
        let mut pending_closes = Vec::new();
        loop {
            let batch = tokio::select! {
                biased;
                Some((stream, send)) = new_streams_rx.recv() => {
                    writers.insert(stream, StreamWriter::spawn(conn, send, events.clone(), |_| {}));
                    continue;
                }
                batch = outbox.next_batch(std::mem::take(&mut spare)) => batch,
            };
            let (opens, closes): (Vec<_>, Vec<_>) = batch
                .server_flows
                .into_iter()
                .partition(|e| matches!(e, FlowEvent::Open { .. }));
            for event in opens {
                if let FlowEvent::Open {
                    stream,
                    flow_id,
                    priority,
                } = event
                {
                    let writer = StreamWriter::spawn_server(
                        conn,
                        connection.clone(),
                        flow_id,
                        priority,
                        events.clone(),
                    );
                    writers.insert(stream, writer);
                }
            }
            for event in closes {
                if let FlowEvent::Close { stream } = event {
                    if let Some(w) = writers.remove(&stream) {
                        // Finished after what is queued: transmits of this batch come first.
                        pending_closes.push(w);
                    }
                }
            }
            for transmit in batch.transmits {
                if transmit.stream == StreamId::DATAGRAM {
                    // What does not fit a datagram after all (the path MTU shrank, the buffer
                    // is full) goes on the control stream instead.
                    let fallback = send_datagrams(conn, &connection, transmit, &events).await;
                    if let (Some(t), Some(w)) = (fallback, writers.get(&StreamId::CONTROL)) {
                        w.outbox.push(t);
                        w.outbox.wake();
                    }
                    continue;
                }
                if let Some(w) = writers.get(&transmit.stream) {
                    w.outbox.push(transmit);
                    w.outbox.wake();
                }
            }
            for w in pending_closes.drain(..) {
                w.outbox.close(CloseKind::Normal);
                w.outbox.wake();
            }
            for stream in batch.closed_streams {
                if let Some(w) = writers.remove(&stream) {
                    w.outbox.close(CloseKind::Normal);
                    w.outbox.wake();
                }
            }
            if let Some(kind) = batch.close {
                for w in writers.values() {
                    w.outbox.close(kind);
                    w.outbox.wake();
                }
                // Let the control stream deliver its last packets (CONNACK refusal,
                // DISCONNECT) before the connection closes.
                if let Some(control) = writers.remove(&StreamId::CONTROL) {
                    let _ = tokio::time::timeout(Duration::from_secs(2), control.task).await;
                }
                let (code, reason) = match kind {
                    CloseKind::Normal => (app_error::NORMAL, String::new()),
                    CloseKind::Abnormal(code) => (abnormal, format!("reason code {code}")),
                };
                connection.close(VarInt::from_u32(code), reason.as_bytes());
                return;
            }
        }
    };

    tokio::select! {
        _ = dispatcher => {}
        _ = control_reader => {}
        _ = bidi_acceptor => {}
        _ = uni_acceptor => {}
        _ = datagram_reader => {}
        _ = super::migration::report_moves(conn, moves, events.clone()) => {}
    }
}

/// Refuses a stream opened over the rate limit: STOP_SENDING (and RESET_STREAM on the send
/// half of a bidirectional stream) with the OVERLOAD code.
fn refuse_overload(mut recv: RecvStream, send: Option<SendStream>) {
    tracing::debug!("QUIC stream refused: opened too fast");
    let _ = recv.stop(VarInt::from_u32(app_error::OVERLOAD));
    if let Some(mut send) = send {
        let _ = send.reset(VarInt::from_u32(app_error::OVERLOAD));
    }
}

/// True when the handshake chose the MQTT-next ALPN.
fn negotiated_mqtt_next(connection: &quinn::Connection) -> bool {
    connection
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == MQTT_NEXT)
}

/// Sends each packet of `transmit` as one datagram; returns those that could not be sent.
async fn send_datagrams(
    conn: ConnId,
    connection: &quinn::Connection,
    transmit: crate::broker::Transmit,
    events: &mpsc::Sender<Event>,
) -> Option<crate::broker::Transmit> {
    let mut sent = 0;
    let mut fallback = bytes::BytesMut::new();
    let mut fallback_count = 0;
    for frame in transmit.frames() {
        // Only PUBLISH packets go in datagrams: each accounts for its encoded length.
        match connection.send_datagram(bytes::Bytes::copy_from_slice(frame)) {
            Ok(()) => sent += frame.len(),
            Err(_) => {
                fallback.extend_from_slice(frame);
                fallback_count += 1;
            }
        }
    }
    if sent > 0 {
        let _ = events.send(Event::Written { conn, bytes: sent }).await;
    }
    (fallback_count > 0).then(|| crate::broker::Transmit {
        conn,
        stream: StreamId::CONTROL,
        version: transmit.version,
        accounted: fallback.len(),
        bytes: fallback,
        count: fallback_count,
        accepted: false,
    })
}

/// Waits for a successful CONNACK; returns the connection's protocol version, or `None` if the
/// connection ended first.
async fn wait_accepted(
    mut accepted: watch::Receiver<bool>,
    version: watch::Receiver<Option<ProtocolVersion>>,
) -> Option<ProtocolVersion> {
    accepted.wait_for(|a| *a).await.ok()?;
    *version.borrow()
}

/// A data stream: its packets are the broker's to judge (it ends the stream on a violation).
async fn read_data_stream(
    conn: ConnId,
    stream: StreamId,
    mut recv: Observed<Prefixed<RecvStream>>,
    events: mpsc::Sender<Event>,
    max_packet_size: u32,
    version: ProtocolVersion,
    outbox: Arc<Outbox>,
) {
    let mut version = Some(version);
    match read_packets(
        conn,
        stream,
        &mut recv,
        &events,
        max_packet_size,
        &mut version,
        |_| {},
        None,
        &outbox.read_pause,
    )
    .await
    {
        ReadEnd::Closed => {
            let _ = events.send(Event::StreamClosed { conn, stream }).await;
        }
        ReadEnd::Failed(error) => {
            let _ = recv
                .get_mut()
                .inner_mut()
                .stop(VarInt::from_u32(app_error::ABNORMAL));
            let _ = events
                .send(Event::StreamError {
                    conn,
                    stream,
                    error,
                })
                .await;
        }
        ReadEnd::BrokerGone => {}
    }
}

/// A unidirectional stream (the `mqtt5` crate publishes this way): PUBLISH, SUBSCRIBE and
/// UNSUBSCRIBE whose answers and deliveries go on the control stream. Anything else, or bytes
/// that do not decode, stop this stream only.
async fn read_uni_stream(
    conn: ConnId,
    mut recv: Observed<Prefixed<RecvStream>>,
    events: mpsc::Sender<Event>,
    max_packet_size: u32,
    version: ProtocolVersion,
    outbox: Arc<Outbox>,
) {
    let (filtered, rx) = mpsc::channel::<Event>(16);
    let events = &events;
    // Owns `rx`: when it stops forwarding, the reader's next send fails and it stops too.
    let forward = async move {
        let mut rx = rx;
        while let Some(event) = rx.recv().await {
            if let Event::Packets { packets, .. } = &event {
                if !packets.iter().all(allowed_on_unidirectional_stream) {
                    return false;
                }
            }
            if events.send(event).await.is_err() {
                return true;
            }
        }
        true
    };
    let read = async {
        let mut version = Some(version);
        let end = read_packets(
            conn,
            StreamId::CONTROL,
            &mut recv,
            &filtered,
            max_packet_size,
            &mut version,
            |_| {},
            None,
            &outbox.read_pause,
        )
        .await;
        drop(filtered);
        end
    };
    let (end, clean) = tokio::join!(read, forward);
    if !clean || matches!(end, ReadEnd::Failed(_)) {
        tracing::debug!(
            conn = conn.0,
            "unidirectional stream stopped: packet not allowed or malformed"
        );
        let _ = recv
            .get_mut()
            .inner_mut()
            .stop(VarInt::from_u32(app_error::ABNORMAL));
    }
}

/// The writer task of one stream and the outbox that feeds it.
struct StreamWriter {
    outbox: Arc<Outbox>,
    task: JoinHandle<()>,
}

impl StreamWriter {
    /// A server-initiated unidirectional stream for a flow: its header (0x13), then packets.
    fn spawn_server(
        conn: ConnId,
        connection: quinn::Connection,
        flow_id: u64,
        priority: i32,
        events: mpsc::Sender<Event>,
    ) -> StreamWriter {
        let outbox = Arc::new(Outbox::default());
        let task = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                let Ok(mut send) = connection.open_uni().await else {
                    return;
                };
                let _ = send.set_priority(priority);
                let mut header = bytes::BytesMut::new();
                crate::codec::flow::encode_server_data(
                    crate::codec::flow::FlowId(flow_id),
                    0,
                    crate::codec::flow::FlowFlags::default(),
                    &mut header,
                );
                if send.write_all(&header).await.is_err() {
                    return;
                }
                write_packets(conn, &mut send, &outbox, &events, |_| {}).await;
                let _ = send.finish();
                let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
            }
        });
        StreamWriter { outbox, task }
    }

    fn spawn(
        conn: ConnId,
        mut send: SendStream,
        events: mpsc::Sender<Event>,
        written: impl FnMut(&[crate::broker::Transmit]) + Send + 'static,
    ) -> StreamWriter {
        let outbox = Arc::new(Outbox::default());
        let task = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                write_packets(conn, &mut send, &outbox, &events, written).await;
                // A graceful FIN, then wait (bounded) until the peer has everything.
                let _ = send.finish();
                let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
            }
        });
        StreamWriter { outbox, task }
    }
}
