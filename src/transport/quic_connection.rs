//! One QUIC connection, from the end of its handshake until the broker closes it.
//!
//! Its first client-initiated bidirectional stream is the control stream; further streams are
//! data streams, read only once the broker accepted the connection. The parts
//! run side by side, each with one job:
//! - [`QuicConnection::read_control`]: the control stream's packets, with the login verdict;
//! - [`QuicConnection::accept_bidi`] and [`QuicConnection::accept_uni`]: data streams, each
//!   read by its own task;
//! - [`QuicConnection::read_datagrams`]: QoS 0 PUBLISH in DATAGRAM frames;
//! - the [`Dispatcher`]: the broker's output to the stream writers, and the close;
//! - `migration::report_moves`: the client's new addresses, as the readers see them.
//!
//! Only the dispatcher (the broker's Close) ends a connection; the other parts wait once they
//! are done. The dispatcher runs in the connection's task, the control stream's reader in a
//! task of its own, the rest together in a third (see `serve`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::{mpsc, watch};
use tokio_util::task::AbortOnDropHandle;

use super::app_error;
use super::early::{EarlyData, StreamEvents};
use super::login::{LoginContext, LoginGate};
use super::migration::{Observed, PeerPath};
use super::quic_datagrams;
use super::quic_dispatch::Dispatcher;
use super::quic_registry::{StreamCounts, StreamKind as OpenKind};
use super::quic_settings::{QuicSettings, MQTT_NEXT};
use super::quic_streams::{self, Opening, Prefixed, StreamKind};
use super::stream::{read_packets, ReadEnd};
use crate::broker::{allowed_on_unidirectional_stream, ConnId, StreamId};
use crate::codec::ProtocolVersion;
use crate::handoff::{Event, Outbox};
use crate::rate::TokenBucket;

/// What the parts of one connection share.
struct QuicConnection {
    conn: ConnId,
    connection: quinn::Connection,
    events: mpsc::Sender<Event>,
    settings: QuicSettings,
    /// The 0-RTT gate of each stream (`early.rs`).
    early: EarlyData,
    /// The client's address as the readers see it (migration.rs).
    path: PeerPath,
    /// The broker task's output for the connection; its read pause holds every reader.
    outbox: Arc<Outbox>,
    /// The connection's protocol version once the broker accepted it (`Dispatcher::new`).
    accepted: watch::Receiver<Option<ProtocolVersion>>,
    /// Stream opens beyond the rate are refused (STOP_SENDING / RESET_STREAM with OVERLOAD),
    /// shared by both kinds of stream.
    opens: Mutex<TokenBucket>,
    /// Open streams by kind, for the admin API (quic_registry.rs).
    streams: Arc<StreamCounts>,
}

/// Serves one QUIC connection until the broker closes it.
pub(super) async fn serve(
    conn: ConnId,
    connection: quinn::Connection,
    events: mpsc::Sender<Event>,
    settings: QuicSettings,
    early: EarlyData,
    gate: Arc<LoginGate>,
    qlog: Option<super::qlog::Pending>,
) {
    let _flushing = settings.flushing.token();
    let peer = super::migration::peer_label(connection.remote_address());
    let registry = settings.connections.clone();
    let registered = registry.register(conn, connection.clone());
    let streams = registered.streams.clone();
    let (path, moves) = PeerPath::new(connection.clone());
    let Some(outbox) = crate::handoff::open_connection(&events, conn, peer).await else {
        return;
    };
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
    let Some((control_send, control_recv)) = accept_control(&connection, &settings).await else {
        connection.close(VarInt::from_u32(abnormal), b"no control stream");
        let _ = events.send(Event::Lost { conn }).await;
        return;
    };
    // The control stream goes first when streams compete for the congestion window.
    let _ = control_send.set_priority(i32::MAX);

    let (accepted_tx, accepted) = watch::channel(None);
    let (new_streams, new_streams_rx) = mpsc::channel::<(StreamId, SendStream)>(16);
    let dispatcher = Dispatcher::new(
        conn,
        connection.clone(),
        events.clone(),
        abnormal,
        control_send,
        accepted_tx,
        streams.clone(),
    );
    let opens = Mutex::new(TokenBucket::new(
        settings.stream_opens_per_sec,
        Instant::now(),
    ));
    let this = Arc::new(QuicConnection {
        conn,
        connection: connection.clone(),
        events: events.clone(),
        settings,
        early,
        path,
        outbox,
        accepted,
        opens,
        streams,
    });
    // The parts that wake often run in tasks of their own: `select!` polls every branch each
    // time its task wakes, and most parts poll quinn (each under the connection's lock), so
    // one task for all of them polled five futures for every batch the broker sent and every
    // packet the client sent. The control stream's reader and the dispatcher wake per
    // packet and per batch; the acceptors, datagrams and path changes are rare and share one.
    // Both tasks end with the connection (aborted on drop).
    let control = AbortOnDropHandle::new(tokio::spawn({
        let this = this.clone();
        async move { this.read_control(control_recv, gate, qlog).await }
    }));
    let rare = AbortOnDropHandle::new(tokio::spawn({
        let this = this.clone();
        async move {
            tokio::select! {
                _ = then_wait(this.accept_bidi(new_streams)) => {}
                _ = then_wait(this.accept_uni()) => {}
                _ = then_wait(this.read_datagrams()) => {}
                _ = super::migration::report_moves(conn, moves, events) => {}
            }
        }
    }));
    dispatcher.run(&this.outbox, new_streams_rx).await;
    drop(control);
    drop(rare);
}

/// Runs `part`, then waits: a part that is done does not end the connection.
async fn then_wait(part: impl std::future::Future<Output = ()>) {
    part.await;
    std::future::pending::<()>().await;
}

/// The control stream, within the connect timeout; it may open with a control flow header
/// (0x11).
async fn accept_control(
    connection: &quinn::Connection,
    settings: &QuicSettings,
) -> Option<(SendStream, Prefixed<RecvStream>)> {
    let (send, recv) = tokio::select! {
        s = connection.accept_bi() => s.ok()?,
        _ = tokio::time::sleep(settings.connect_timeout) => return None,
    };
    match quic_streams::open(recv, StreamKind::Control).await {
        Opening::Mqtt { reader, .. } => Some((send, reader)),
        Opening::Refused { recv, code, why } => {
            quic_streams::refuse(recv, code, why);
            None
        }
        Opening::Failed => None,
    }
}

impl QuicConnection {
    /// The control stream until it ends: its end (or bytes that do not decode) ends the MQTT
    /// connection, through the broker.
    async fn read_control(
        &self,
        mut recv: Prefixed<RecvStream>,
        gate: Arc<LoginGate>,
        qlog: Option<super::qlog::Pending>,
    ) {
        let conn = self.conn;
        // Every event of the stream goes through its 0-RTT gate (early.rs), in order.
        let mut events = self
            .early
            .stream_events(conn, recv.inner().is_0rtt(), &self.events);
        // Mutual TLS: quinn/rustls verified the client's chain against tls.client_ca (0-RTT
        // is off then, so the handshake is complete here).
        let chain = self.connection.peer_identity().and_then(|any| {
            any.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
                .ok()
        });
        let login = LoginContext {
            gate,
            peer: self.connection.remote_address(),
            identity: super::login::peer_identity(chain.as_deref().map(|c| c.as_slice())),
            preauthorized: None,
        };
        let _open = self.streams.open(OpenKind::Control);
        let mut version = None;
        let end = read_packets(
            conn,
            StreamId::CONTROL,
            &mut self.path.observe(&mut recv),
            &mut events,
            self.settings.max_packet_size,
            &mut version,
            // qlog with a client id filter: the CONNECT decides whether the trace is kept.
            |connect| {
                if let Some(qlog) = &qlog {
                    qlog.decide(&connect.client_id);
                }
            },
            Some(&login),
            &self.outbox.read_pause,
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
    }

    /// Bidirectional data streams: each one's send half goes to the dispatcher
    /// (`new_streams`), its receive half to a reader task.
    async fn accept_bidi(&self, new_streams: mpsc::Sender<(StreamId, SendStream)>) {
        let conn = self.conn;
        while let Ok((send, recv)) = self.connection.accept_bi().await {
            if !self.open_allowed() {
                refuse_overload(recv, Some(send));
                if self.stream_refused().await.is_err() {
                    break;
                }
                continue;
            }
            // Data streams are read only after a successful CONNACK; until then their bytes
            // wait in QUIC flow control.
            let Some(version) = self.wait_accepted().await else {
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
                || self
                    .events
                    .send(Event::StreamOpened { conn, stream })
                    .await
                    .is_err()
            {
                break;
            }
            let stream_events =
                self.early
                    .stream_events(conn, reader.inner().is_0rtt(), &self.events);
            let open = self.streams.open(OpenKind::Bidi);
            tokio::spawn(read_data_stream(
                open,
                conn,
                stream,
                self.path.observe(reader),
                stream_events,
                self.settings.max_packet_size,
                version,
                self.outbox.clone(),
            ));
        }
    }

    /// Unidirectional streams, each read by its own task.
    async fn accept_uni(&self) {
        let conn = self.conn;
        while let Ok(recv) = self.connection.accept_uni().await {
            if !self.open_allowed() {
                refuse_overload(recv, None);
                if self.stream_refused().await.is_err() {
                    break;
                }
                continue;
            }
            let Some(version) = self.wait_accepted().await else {
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
            let stream_events =
                self.early
                    .stream_events(conn, reader.inner().is_0rtt(), &self.events);
            let open = self.streams.open(OpenKind::Uni);
            tokio::spawn(read_uni_stream(
                open,
                conn,
                self.path.observe(reader),
                stream_events,
                self.settings.max_packet_size,
                version,
                self.outbox.clone(),
            ));
        }
    }

    /// DATAGRAM frames, once the connection is accepted.
    async fn read_datagrams(&self) {
        if let Some(version) = self.wait_accepted().await {
            quic_datagrams::read(
                self.conn,
                self.connection.clone(),
                self.events.clone(),
                version,
                self.settings.max_packet_size,
                TokenBucket::new(self.settings.datagrams_per_sec, Instant::now()),
                &self.path,
            )
            .await;
        }
    }

    fn open_allowed(&self) -> bool {
        self.opens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(Instant::now())
    }

    async fn stream_refused(&self) -> Result<(), mpsc::error::SendError<Event>> {
        self.events
            .send(Event::StreamRefused { conn: self.conn })
            .await
    }

    /// Waits for a successful CONNACK; returns the connection's protocol version, or `None` if
    /// the connection ended first.
    async fn wait_accepted(&self) -> Option<ProtocolVersion> {
        let mut accepted = self.accepted.clone();
        let version = *accepted.wait_for(Option::is_some).await.ok()?;
        version
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

/// A data stream: its packets are the broker's to judge (it ends the stream on a violation).
#[allow(clippy::too_many_arguments)]
async fn read_data_stream(
    _open: super::quic_registry::OpenStream,
    conn: ConnId,
    stream: StreamId,
    mut recv: Observed<Prefixed<RecvStream>>,
    mut events: StreamEvents,
    max_packet_size: u32,
    version: ProtocolVersion,
    outbox: Arc<Outbox>,
) {
    let mut version = Some(version);
    match read_packets(
        conn,
        stream,
        &mut recv,
        &mut events,
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
    _open: super::quic_registry::OpenStream,
    conn: ConnId,
    mut recv: Observed<Prefixed<RecvStream>>,
    mut events: StreamEvents,
    max_packet_size: u32,
    version: ProtocolVersion,
    outbox: Arc<Outbox>,
) {
    let (filtered, rx) = mpsc::channel::<Event>(16);
    let events = &mut events;
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
