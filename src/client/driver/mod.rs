//! The connection task: one per client, owning the [`ClientState`] and every stream's I/O.
//!
//! It waits on four things at once: requests from the handles, packets and stream ends from the
//! stream tasks, the state machine's timer (keep alive), and room in a receive queue. After each
//! it drains the state machine: packets to the stream writers, completed operations to the
//! callers waiting for them, messages to the receive queues. It lives across reconnections, so a
//! session (and its unacknowledged messages) carries over; it ends on `disconnect` or when every
//! handle is dropped (which also disconnects cleanly).

mod closing;
mod establish;
mod quic_return;
mod redial;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use super::error::{io_reason, ClientError};
use super::inbox::{Inbound, Inboxes};
use super::link::{BoxRead, BoxWrite, LinkEvent, LinkParts, ReadSetup, StreamIo, Unwritten};
use super::options::ClientOptions;
use super::quic_ext::Counters;
use super::state::{ClientState, Completion, Event, Failure, OpId, StreamKey};
use super::types::{AckToken, Acknowledged, Connected, Message, PublishOutcome, Subscription};
use crate::codec::{self, Properties, ReasonCode};
use closing::{close_gracefully, close_soon};
pub(crate) use redial::Redial;

/// Requests queued from the handles before they wait.
pub(crate) const COMMAND_QUEUE: usize = 64;
/// Reports queued from the stream tasks before they wait.
const LINK_QUEUE: usize = 64;
/// Above this many bytes not yet written, new requests wait for the writers.
const HIGH_WATER: usize = 1024 * 1024;
/// At most this many further requests or stream reports are handled before the state machine
/// is drained (its packets encoded and handed to the writers in one batch per stream).
const DRAIN_BATCH: usize = 256;
/// How long a clean close waits for the server to close its side after DISCONNECT.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// QUIC application error codes closing a connection (proto-ext/transport-quic.md, section 3):
/// after DISCONNECT, and without it.
const QUIC_NORMAL: u32 = 0;
const QUIC_ABNORMAL: u32 = 1;

/// What the handles and the driver share.
pub(crate) struct Shared {
    /// Whether a connection is up (CONNACK received), for `Client::connection_state`.
    pub up: watch::Sender<bool>,
    /// The current QUIC connection, to open more streams on.
    pub quic: Mutex<Option<quinn::Connection>>,
    /// A `recv` took a message: waiting ones may move into the queue.
    pub space: Notify,
    /// Datagrams and server streams, across connections.
    pub counters: Arc<Counters>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            up: watch::channel(false).0,
            quic: Mutex::default(),
            space: Notify::new(),
            counters: Arc::default(),
        }
    }
}

impl Shared {
    pub fn quic_connection(&self) -> Option<quinn::Connection> {
        self.quic.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_quic(&self, connection: Option<quinn::Connection>) {
        *self.quic.lock().unwrap_or_else(|p| p.into_inner()) = connection;
    }
}

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// A request from a handle.
pub(crate) enum Command {
    Publish {
        stream: StreamKey,
        message: Message,
        reply: Reply<PublishOutcome>,
    },
    Subscribe {
        stream: StreamKey,
        subscription: Subscription,
        reply: Reply<Acknowledged>,
    },
    Unsubscribe {
        stream: StreamKey,
        filters: Vec<ByteString>,
        properties: Properties,
        reply: Reply<Acknowledged>,
    },
    /// A data stream the handle opened on the QUIC connection with this `stable_id`.
    AttachStream {
        connection: usize,
        reader: BoxRead,
        writer: BoxWrite,
        inbox: mpsc::Sender<Inbound>,
        reply: Reply<StreamKey>,
    },
    DetachStream {
        stream: StreamKey,
    },
    Reconnect {
        parts: LinkParts,
        reply: Reply<Connected>,
    },
    /// Rebind the QUIC connection to a new local socket.
    Migrate {
        reply: Reply<std::net::SocketAddr>,
    },
    Disconnect {
        reply: Reply<()>,
    },
    Abort {
        reply: oneshot::Sender<()>,
    },
    /// Manual acknowledgements: the application is done with a received message.
    Ack {
        token: AckToken,
    },
}

/// A request sent right behind CONNECT, before the CONNACK.
pub(crate) enum EarlyOp {
    Subscribe {
        subscription: Subscription,
        reply: Reply<Acknowledged>,
    },
    Publish {
        message: Message,
        reply: Reply<PublishOutcome>,
    },
}

/// A caller waiting for an operation.
enum Waiter {
    Publish(Reply<PublishOutcome>),
    Ack(Reply<Acknowledged>),
}

impl Waiter {
    fn complete(self, result: Result<Completion, Failure>, loss: &str) {
        let error = |f: Failure| match f {
            Failure::ConnectionLost => ClientError::ConnectionLost(loss.to_owned()),
            Failure::SessionLost => ClientError::SessionLost,
            Failure::StreamClosed => ClientError::StreamClosed,
        };
        match (self, result) {
            (Waiter::Publish(reply), Ok(Completion::Published(outcome))) => {
                let result = if outcome.code.is_error() {
                    Err(ClientError::Rejected {
                        operation: "publish",
                        code: outcome.code,
                        reason_string: outcome.reason_string,
                    })
                } else {
                    Ok(outcome)
                };
                let _ = reply.send(result);
            }
            (Waiter::Ack(reply), Ok(Completion::Subscribed(a) | Completion::Unsubscribed(a))) => {
                let _ = reply.send(Ok(a));
            }
            (Waiter::Publish(reply), Err(f)) => {
                let _ = reply.send(Err(error(f)));
            }
            (Waiter::Ack(reply), Err(f)) => {
                let _ = reply.send(Err(error(f)));
            }
            // An operation completes with its own kind.
            _ => {}
        }
    }
}

/// The streams of the current connection.
struct Link {
    epoch: u64,
    streams: AHashMap<StreamKey, StreamIo>,
    quic: Option<(quinn::Endpoint, quinn::Connection)>,
    unwritten: Arc<Unwritten>,
    /// QUIC: the server stream acceptor and the datagram reader.
    ext_tasks: Vec<JoinHandle<()>>,
}

impl Link {
    fn stop_ext_tasks(&mut self) {
        for task in self.ext_tasks.drain(..) {
            task.abort();
        }
    }
}

pub(crate) struct Driver {
    options: ClientOptions,
    state: ClientState,
    shared: Arc<Shared>,
    link: Option<Link>,
    /// Numbers connections, to recognise reports from an earlier one.
    epoch: u64,
    next_stream: u64,
    link_tx: mpsc::Sender<LinkEvent>,
    link_rx: mpsc::Receiver<LinkEvent>,
    waiters: AHashMap<OpId, Waiter>,
    inboxes: Inboxes,
    /// The last CONNACK, taken by `establish`.
    connected: Option<Connected>,
    /// Why the last connection ended, for operations that fail because of it.
    loss: String,
    /// Automatic reconnection, when configured (`ClientOptions::reconnect`).
    redial: Option<Redial>,
    /// On a fallback connection: when to check whether QUIC answers again.
    quic_return: quic_return::QuicReturn,
}

impl Driver {
    pub fn new(
        options: ClientOptions,
        shared: Arc<Shared>,
        control_inbox: mpsc::Sender<Inbound>,
    ) -> Driver {
        let mut state = ClientState::new(options.connect_packet(), Instant::now());
        state.set_manual_acks(options.manual_acks);
        state.set_resume_operations(options.reconnect.is_some());
        state.set_auth(options.auth.clone());
        let (link_tx, link_rx) = mpsc::channel(LINK_QUEUE);
        let mut inboxes = Inboxes::new(options.inbox_capacity);
        inboxes.insert(StreamKey::CONTROL, control_inbox);
        Driver {
            options,
            state,
            shared,
            link: None,
            epoch: 0,
            next_stream: 0,
            link_tx,
            link_rx,
            waiters: AHashMap::new(),
            inboxes,
            connected: None,
            loss: "not connected".into(),
            redial: None,
            quic_return: Default::default(),
        }
    }

    /// Turns on automatic reconnection (`ClientOptions::reconnect`).
    pub fn set_redial(&mut self, redial: Option<Redial>) {
        self.redial = redial;
    }

    /// Starts a publish: QoS 0 is answered at once, QoS 1/2 when its flow completes.
    fn start_publish(
        &mut self,
        stream: StreamKey,
        mut message: Message,
        reply: Reply<PublishOutcome>,
        now: Instant,
    ) {
        message.datagram |= self.options.send_datagrams;
        if message.datagram && message.qos == codec::QoS::AtMostOnce && !self.state.is_connected() {
            // Before CONNACK the server drops datagrams: it goes behind the CONNECT instead.
            Counters::add(&self.shared.counters.datagrams_fallback, 1);
        }
        match self.state.publish(stream, message, now) {
            Ok(Some(op)) => {
                self.waiters.insert(op, Waiter::Publish(reply));
            }
            Ok(None) => {
                let _ = reply.send(Ok(PublishOutcome {
                    packet_id: None,
                    code: ReasonCode::SUCCESS,
                    reason_string: None,
                }));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Waits for the acknowledgement of a started SUBSCRIBE/UNSUBSCRIBE, or answers its error.
    fn await_ack(&mut self, started: Result<OpId, ClientError>, reply: Reply<Acknowledged>) {
        match started {
            Ok(op) => {
                self.waiters.insert(op, Waiter::Ack(reply));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Queues a request behind the CONNECT (before the CONNACK).
    fn pipeline(&mut self, op: EarlyOp, now: Instant) {
        match op {
            EarlyOp::Subscribe {
                subscription,
                reply,
            } => {
                let started = self.state.subscribe(StreamKey::CONTROL, subscription, now);
                self.await_ack(started, reply)
            }
            EarlyOp::Publish { message, reply } => {
                self.start_publish(StreamKey::CONTROL, message, reply, now)
            }
        }
    }

    /// Moves the QUIC connection to a new local UDP socket (a new port, as after a NAT
    /// rebinding or a change of network); returns the new local address.
    fn migrate(&mut self) -> Result<std::net::SocketAddr, ClientError> {
        let Some(link) = &self.link else {
            return Err(ClientError::NotConnected);
        };
        let Some((endpoint, connection)) = &link.quic else {
            return Err(ClientError::Unsupported(
                "migration needs the QUIC transport".into(),
            ));
        };
        if self.options.quic_endpoint.is_some() {
            return Err(ClientError::Unsupported(
                "this connection shares its UDP socket (ClientOptions::quic_endpoint): moving it would move every connection on it".into(),
            ));
        }
        let bind: std::net::SocketAddr = if connection.remote_address().is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = std::net::UdpSocket::bind(bind)?;
        endpoint.rebind(socket)?;
        let local = endpoint.local_addr()?;
        tracing::debug!(%local, "QUIC connection moved to a new local socket");
        Ok(local)
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            self.flush();
            let deadline = self.state.poll_timeout();
            let unwritten = self.link.as_ref().map(|l| l.unwritten.clone());
            let busy = unwritten.as_ref().is_some_and(|u| u.get() > HIGH_WATER);
            let backlog = self.inboxes.has_backlog();
            let shared = self.shared.clone();
            let redial_at = self.redial.as_ref().and_then(|r| r.at);
            let quic_check_at = self.quic_return.at;
            let checking = self.quic_return.check.is_some();
            tokio::select! {
                command = commands.recv(), if !busy => match command {
                    Some(command) => {
                        if !self.command(command).await {
                            return;
                        }
                        // Requests that queued meanwhile go out in the same batch.
                        for _ in 0..DRAIN_BATCH {
                            if self.link.as_ref().is_some_and(|l| l.unwritten.get() > HIGH_WATER) {
                                break;
                            }
                            let Ok(command) = commands.try_recv() else { break };
                            if !self.command(command).await {
                                return;
                            }
                        }
                    }
                    // Every handle is gone: leave cleanly.
                    None => {
                        self.disconnect().await;
                        return;
                    }
                },
                Some(event) = self.link_rx.recv() => {
                    self.link_event(event);
                    for _ in 0..DRAIN_BATCH {
                        let Ok(event) = self.link_rx.try_recv() else { break };
                        self.link_event(event);
                    }
                }
                _ = sleep_until(deadline) => {
                    if let Err(error) = self.state.handle_timeout(Instant::now()) {
                        self.lose(error);
                    }
                }
                _ = shared.space.notified(), if backlog => {
                    let now = Instant::now();
                    for token in self.inboxes.drain() {
                        self.state.acknowledge(token, now);
                    }
                }
                _ = drained(unwritten), if busy => {}
                _ = sleep_until(redial_at), if redial_at.is_some() => self.redial().await,
                _ = sleep_until(quic_check_at), if quic_check_at.is_some() => self.check_quic(),
                answered = quic_return::checked(&mut self.quic_return.check), if checking => {
                    self.quic_checked(answered).await
                }
            }
        }
    }

    /// Handles one request; false when the driver must stop.
    async fn command(&mut self, command: Command) -> bool {
        let now = Instant::now();
        match command {
            Command::Publish {
                stream,
                message,
                reply,
            } => self.start_publish(stream, message, reply, now),
            Command::Subscribe {
                stream,
                subscription,
                reply,
            } => {
                if let Some(redial) = self
                    .redial
                    .as_mut()
                    .filter(|_| stream == StreamKey::CONTROL)
                {
                    redial.subscriptions.push(subscription.clone());
                }
                let started = self.state.subscribe(stream, subscription, now);
                self.await_ack(started, reply)
            }
            Command::Unsubscribe {
                stream,
                filters,
                properties,
                reply,
            } => {
                if let Some(redial) = self
                    .redial
                    .as_mut()
                    .filter(|_| stream == StreamKey::CONTROL)
                {
                    redial.unsubscribed(&filters);
                }
                let started = self.state.unsubscribe(stream, filters, properties, now);
                self.await_ack(started, reply)
            }
            Command::AttachStream {
                connection,
                reader,
                writer,
                inbox,
                reply,
            } => {
                let _ = reply.send(self.attach(connection, reader, writer, inbox));
            }
            Command::DetachStream { stream } => self.detach(stream, now),
            Command::Reconnect { parts, reply } => {
                if self.link.is_some() {
                    self.disconnect().await;
                }
                let _ = reply.send(self.establish(parts, false, Vec::new()).await);
            }
            Command::Migrate { reply } => {
                let _ = reply.send(self.migrate());
            }
            Command::Disconnect { reply } => {
                self.disconnect().await;
                let _ = reply.send(Ok(()));
                return false;
            }
            Command::Abort { reply } => {
                self.abort();
                let _ = reply.send(());
            }
            Command::Ack { token } => self.state.acknowledge(token, now),
        }
        true
    }

    fn attach(
        &mut self,
        connection: usize,
        reader: BoxRead,
        writer: BoxWrite,
        inbox: mpsc::Sender<Inbound>,
    ) -> Result<StreamKey, ClientError> {
        let Some(link) = &mut self.link else {
            return Err(ClientError::NotConnected);
        };
        if !matches!(&link.quic, Some((_, c)) if c.stable_id() == connection) {
            // The connection the stream was opened on is gone.
            return Err(ClientError::NotConnected);
        }
        self.next_stream += 1;
        let key = StreamKey(self.next_stream);
        self.state.open_stream(key)?;
        let setup = ReadSetup {
            epoch: link.epoch,
            stream: key,
            version: self.state.version(),
            max_packet_size: self.options.decode_limit(),
            buffered: BytesMut::new(),
        };
        let io = StreamIo::spawn(
            setup,
            reader,
            writer,
            self.link_tx.clone(),
            link.unwritten.clone(),
        );
        link.streams.insert(key, io);
        self.inboxes.insert(key, inbox);
        Ok(key)
    }

    /// A stream handle was dropped: finish the stream.
    fn detach(&mut self, stream: StreamKey, now: Instant) {
        if stream == StreamKey::CONTROL {
            return;
        }
        if let Some(io) = self.link.as_mut().and_then(|l| l.streams.remove(&stream)) {
            let (_writer, reader) = io.finish();
            reader.abort();
        }
        self.state.stream_closed(stream, now);
        self.inboxes.close(stream, ClientError::StreamClosed);
    }

    fn link_event(&mut self, event: LinkEvent) {
        let now = Instant::now();
        let current = |epoch: u64| self.link.as_ref().is_some_and(|l| l.epoch == epoch);
        match event {
            LinkEvent::Packets {
                epoch,
                stream,
                packets,
            } if current(epoch) => {
                for packet in packets {
                    if let Err(error) = self.state.handle_packet(stream, packet, now) {
                        self.lose(error);
                        return;
                    }
                }
            }
            LinkEvent::ServerStream { epoch, stream }
                if current(epoch) && self.state.open_server_stream(stream).is_err() =>
            {
                tracing::debug!(?stream, "server stream after the connection ended");
            }
            LinkEvent::Datagram { epoch, packet } if current(epoch) => {
                let packet = *packet;
                let counters = &self.shared.counters;
                if self.state.handle_datagram(packet, now) {
                    Counters::add(&counters.datagrams_received, 1);
                } else {
                    Counters::add(&counters.datagrams_dropped, 1);
                }
            }
            LinkEvent::Ended {
                epoch,
                stream,
                error,
            } if current(epoch) && is_server_stream(stream) => match error {
                // A malformed packet on any stream breaks the whole connection.
                Some(ClientError::Decode(e)) => {
                    let error = self.state.decode_error(e, now);
                    self.lose(error);
                }
                // The server finished or reset one of its streams: the connection lives on
                // (what it carried for QoS 1/2 is in the session, flows.md section 7).
                _ => self.state.stream_closed(stream, now),
            },
            LinkEvent::Ended {
                epoch,
                stream,
                error,
            } if current(epoch) => {
                let error = match error {
                    // A malformed packet on any stream breaks the whole connection.
                    Some(ClientError::Decode(e)) => self.state.decode_error(e, now),
                    Some(ClientError::Io(e)) => ClientError::ConnectionLost(io_reason(&e)),
                    Some(other) => other,
                    None if stream == StreamKey::CONTROL => {
                        ClientError::ConnectionLost("the server closed the connection".into())
                    }
                    None => {
                        // The server finished a data stream.
                        if let Some(io) = self.link.as_mut().and_then(|l| l.streams.remove(&stream))
                        {
                            io.abort();
                        }
                        self.state.stream_closed(stream, now);
                        self.inboxes.close(stream, ClientError::StreamClosed);
                        return;
                    }
                };
                self.lose(error);
            }
            // From an earlier connection.
            _ => {}
        }
    }

    /// Drains the state machine: events to callers and queues, packets to writers.
    fn flush(&mut self) {
        loop {
            let now = Instant::now();
            let mut progress = false;
            while let Some(event) = self.state.poll_event() {
                progress = true;
                match event {
                    Event::Connected(connected) => self.connected = Some(connected),
                    Event::Completed { op, result } => {
                        if let Some(waiter) = self.waiters.remove(&op) {
                            waiter.complete(result, &self.loss);
                        }
                    }
                    Event::Message {
                        stream,
                        message,
                        ack,
                    } => {
                        // Manual acknowledgements: the application sends them (`Command::Ack`).
                        let ack = ack.filter(|_| !self.options.manual_acks);
                        if let Some(token) = self.inboxes.deliver(stream, message, ack) {
                            self.state.acknowledge(token, now);
                        }
                    }
                }
            }
            let mut batches: Vec<(StreamKey, BytesMut)> = Vec::new();
            while let Some((stream, packet)) = self.state.poll_transmit() {
                progress = true;
                if stream == StreamKey::DATAGRAM {
                    // One datagram per packet; what does not fit keeps its place in the
                    // control stream's batch.
                    let mut one = BytesMut::new();
                    codec::encode(&packet, self.state.version(), &mut one);
                    let one = one.freeze();
                    if self.send_datagram(&one) {
                        continue;
                    }
                    let control = batches.iter_mut().find(|(s, _)| *s == StreamKey::CONTROL);
                    match control {
                        Some((_, batch)) => batch.extend_from_slice(&one),
                        None => batches.push((StreamKey::CONTROL, BytesMut::from(&one[..]))),
                    }
                    continue;
                }
                if !batches.iter().any(|(s, _)| *s == stream) {
                    batches.push((stream, BytesMut::new()));
                }
                if let Some((_, batch)) = batches.iter_mut().find(|(s, _)| *s == stream) {
                    codec::encode(&packet, self.state.version(), batch);
                }
            }
            if let Some(link) = &self.link {
                for (stream, bytes) in batches {
                    let io = link
                        .streams
                        .get(&stream)
                        .or_else(|| link.streams.get(&StreamKey::CONTROL));
                    if let Some(io) = io {
                        io.write(bytes.freeze());
                    }
                }
            }
            if !progress {
                return;
            }
        }
    }

    /// Sends one encoded PUBLISH in a datagram; false when it cannot go in one (TCP, larger
    /// than the path allows, a server without datagram support): the caller puts it on the
    /// control stream instead.
    fn send_datagram(&self, bytes: &Bytes) -> bool {
        let connection = self
            .link
            .as_ref()
            .and_then(|l| l.quic.as_ref())
            .map(|(_, c)| c);
        let counters = &self.shared.counters;
        let sent = connection.is_some_and(|c| {
            c.max_datagram_size().is_some_and(|max| bytes.len() <= max)
                && c.send_datagram(bytes.clone()).is_ok()
        });
        if sent {
            Counters::add(&counters.datagrams_sent, 1);
        } else {
            Counters::add(&counters.datagrams_fallback, 1);
        }
        sent
    }

    /// The connection failed: write what is queued (a DISCONNECT with the reason), close it,
    /// and fail what waited on it.
    fn lose(&mut self, error: ClientError) {
        tracing::debug!(%error, "connection lost");
        self.flush();
        if let Some(link) = self.link.take() {
            close_soon(link);
        }
        self.shared.set_quic(None);
        self.end_connection(error);
    }

    fn end_connection(&mut self, error: ClientError) {
        self.shared.up.send_replace(false);
        self.quic_return.stop();
        if let Some(redial) = &mut self.redial {
            redial.schedule(Instant::now());
        }
        self.loss = error.to_string();
        self.state.connection_lost();
        self.flush();
        self.inboxes.connection_lost(error);
    }

    /// Drops the connection without DISCONNECT (the server publishes the will).
    fn abort(&mut self) {
        if let Some(mut link) = self.link.take() {
            link.stop_ext_tasks();
            for (_, io) in link.streams {
                io.abort();
            }
            if let Some((_, connection)) = link.quic {
                connection.close(QUIC_ABNORMAL.into(), b"abort");
            }
        }
        self.shared.set_quic(None);
        self.end_connection(ClientError::ConnectionLost(
            "the connection was aborted".into(),
        ));
    }

    /// DISCONNECT, then wait (briefly) for the server to close its side, so that when this
    /// returns the server has seen the DISCONNECT.
    async fn disconnect(&mut self) {
        let now = Instant::now();
        if self.state.is_connected() {
            self.state.disconnect(now);
            self.flush();
        }
        if let Some(link) = self.link.take() {
            self.shared.set_quic(None);
            close_gracefully(link, &mut self.link_rx).await;
        }
        self.loss = "the client disconnected".into();
        self.shared.up.send_replace(false);
        self.quic_return.stop();
        if let Some(redial) = &mut self.redial {
            redial.at = None;
        }
        self.state.connection_lost();
        self.flush();
    }
}

/// A server-initiated stream (topic-to-stream mapping), as opposed to ours.
fn is_server_stream(stream: StreamKey) -> bool {
    stream.0 >= StreamKey::SERVER_BASE && stream != StreamKey::DATAGRAM
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

async fn drained(unwritten: Option<Arc<Unwritten>>) {
    match unwritten {
        Some(u) => u.drained().await,
        None => std::future::pending().await,
    }
}
