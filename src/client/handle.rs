//! The async API: [`Client`] (the connection and its control stream) and [`ClientStream`]
//! (another QUIC stream of the same connection).
//!
//! Handles only send requests to the connection task ([`super::driver`]) and wait for the
//! answer, so they are cheap, `Send`, and usable from many tasks at once.

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::dial::Dialer;
use super::driver::{Command, Driver, EarlyOp, Redial, Shared, COMMAND_QUEUE};
use super::error::ClientError;
use super::inbox::Inbound;
use super::link::LinkParts;
use super::options::ClientOptions;
use super::quic;
use super::quic_ext::QuicStats;
use super::state::StreamKey;
use super::types::{
    AckToken, Acknowledged, Connected, Message, Pipelined, PipelinedOutcome, PublishOutcome,
    ReceivedMessage, Subscription,
};
use crate::codec::{Properties, QoS, ReasonCode};

/// An MQTT client connection.
///
/// Clones share the connection, and its receive queue (each message goes to one `recv`
/// caller). Requests resolve when the server has answered them (QoS 0
/// publishes when queued for writing). Keep alive runs by itself. Dropping every handle
/// disconnects cleanly (with DISCONNECT); [`Client::abort`] drops the connection without it.
///
/// ```no_run
/// # async fn example() -> Result<(), mqttd::client::ClientError> {
/// use mqttd::client::{Client, ClientOptions};
/// use mqttd::codec::QoS;
/// let (client, _connack) = Client::connect(ClientOptions::new("127.0.0.1:1883")).await?;
/// client.subscribe("sensors/#", QoS::AtLeastOnce).await?;
/// client.publish("sensors/kitchen", "21.5", QoS::AtLeastOnce, false).await?;
/// let message = client.recv().await?;
/// println!("{}: {:?}", message.topic, message.payload);
/// client.disconnect().await
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    ops: Ops,
    inbox: Arc<Inbox>,
    dialer: Arc<Dialer>,
    options: Arc<ClientOptions>,
}

/// Another stream of a QUIC connection (multi-stream mode), opened with
/// [`Client::open_stream`]. Its packets travel independently of the other streams: a
/// subscription made on it delivers on it, and a lost packet on another stream does not delay
/// it. Dropping it finishes the stream; its unacknowledged publishes move to the control stream.
pub struct ClientStream {
    ops: Ops,
    inbox: Inbox,
}

/// The requests both handles make, on their stream.
#[derive(Clone)]
struct Ops {
    stream: StreamKey,
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

/// The receiving end of one stream's message queue.
struct Inbox {
    rx: Mutex<mpsc::Receiver<Inbound>>,
    shared: Arc<Shared>,
}

impl Inbox {
    fn new(capacity: usize, shared: Arc<Shared>) -> (mpsc::Sender<Inbound>, Inbox) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let inbox = Inbox {
            rx: Mutex::new(rx),
            shared,
        };
        (tx, inbox)
    }

    async fn recv(&self) -> Result<ReceivedMessage, ClientError> {
        let item = self.rx.lock().await.recv().await;
        // Room for a message that waits unacknowledged in the connection task.
        self.shared.space.notify_one();
        item.unwrap_or(Err(ClientError::Closed))
    }

    async fn recv_many(&self, out: &mut Vec<Inbound>, limit: usize) -> usize {
        let n = self.rx.lock().await.recv_many(out, limit.max(1)).await;
        self.shared.space.notify_one();
        if n == 0 {
            out.push(Err(ClientError::Closed));
            return 1;
        }
        n
    }
}

impl Client {
    /// Connects as `options` say and waits for the CONNACK.
    pub async fn connect(options: ClientOptions) -> Result<(Client, Connected), ClientError> {
        let dialer = Dialer::new(&options)?;
        let parts = dialer.dial(&options).await?;
        Client::start(options, dialer, parts, Vec::new()).await
    }

    /// Connects and sends `pipelined` requests (a SUBSCRIBE, QoS 0 messages) right behind
    /// the CONNECT, without waiting for the CONNACK. Over QUIC with a ticket from an earlier
    /// connection to this server, all of it goes out as 0-RTT early data: the CONNACK, and the
    /// SUBACK with it, arrive one round trip after the first packet ([`Connected::zero_rtt`]
    /// says whether the server took it; if it did not, everything was sent again after the
    /// handshake). QoS 1/2 messages cannot be pipelined (their outcome is an error).
    pub async fn connect_pipelined(
        options: ClientOptions,
        pipelined: Pipelined,
    ) -> Result<(Client, Connected, PipelinedOutcome), ClientError> {
        let dialer = Dialer::new(&options)?;
        let parts = dialer.dial(&options).await?;
        let mut ops = Vec::new();
        let subscribed = pipelined.subscription.map(|subscription| {
            let (reply, answer) = oneshot::channel();
            ops.push(EarlyOp::Subscribe {
                subscription,
                reply,
            });
            answer
        });
        let published: Vec<_> = pipelined
            .messages
            .into_iter()
            .map(|message| {
                let (reply, answer) = oneshot::channel();
                ops.push(EarlyOp::Publish { message, reply });
                answer
            })
            .collect();
        let (client, connected) = Client::start(options, dialer, parts, ops).await?;
        let outcome = PipelinedOutcome {
            subscribed: match subscribed {
                Some(answer) => Some(answer.await.unwrap_or(Err(ClientError::Closed))),
                None => None,
            },
            published: {
                let mut results = Vec::with_capacity(published.len());
                for answer in published {
                    results.push(answer.await.unwrap_or(Err(ClientError::Closed)));
                }
                results
            },
        };
        Ok((client, connected, outcome))
    }

    /// Connects over a stream the caller opened (a TLS session, a Unix socket, an in-memory
    /// pipe...). `options.server` and `options.transport` are not used.
    pub async fn connect_over<S>(
        stream: S,
        options: ClientOptions,
    ) -> Result<(Client, Connected), ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        Client::start(options, Dialer::Given, split(stream), Vec::new()).await
    }

    async fn start(
        options: ClientOptions,
        dialer: Dialer,
        parts: LinkParts,
        pipelined: Vec<EarlyOp>,
    ) -> Result<(Client, Connected), ClientError> {
        let shared = Arc::new(Shared::default());
        let (inbox_tx, inbox) = Inbox::new(options.inbox_capacity, shared.clone());
        let dialer = Arc::new(dialer);
        let mut driver = Driver::new(options.clone(), shared.clone(), inbox_tx);
        driver.set_redial(Redial::new(&options, dialer.clone())?);
        let connected = driver
            .establish(parts, options.clean_start, pipelined)
            .await?;
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        tokio::spawn(driver.run(commands_rx));
        let client = Client {
            ops: Ops {
                stream: StreamKey::CONTROL,
                commands,
                shared,
            },
            inbox: Arc::new(inbox),
            dialer,
            options: Arc::new(options),
        };
        Ok((client, connected))
    }

    /// Connects again, asking the server to resume the session (clean start 0). If it does
    /// (`session_present`), unacknowledged publishes are retransmitted with DUP and their
    /// PUBREL resent [MQTT-4.4.0-1]; else they are discarded. A live connection is closed first
    /// (with DISCONNECT, so no will). The server keeps a session only if it was asked to: a
    /// Session Expiry Interval above 0 (5.0, [`ClientOptions::session_expiry`]), or clean start
    /// 0 on the previous connection (3.1.1).
    pub async fn reconnect(&self) -> Result<Connected, ClientError> {
        let parts = self.dialer.dial(&self.options).await?;
        self.ops.reconnect(parts).await
    }

    /// [`Client::reconnect`] over a stream the caller opened.
    pub async fn reconnect_over<S>(&self, stream: S) -> Result<Connected, ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        self.ops.reconnect(split(stream)).await
    }

    /// Publishes `payload` to `topic`; resolves when the QoS flow completes: at once for QoS 0,
    /// at PUBACK for QoS 1, at PUBCOMP for QoS 2. An error reason code from the server is
    /// [`ClientError::Rejected`].
    ///
    /// If the connection drops first the result is [`ClientError::ConnectionLost`], and the
    /// outcome is unknown: a QoS 1/2 message stays in the session and [`Client::reconnect`]
    /// retransmits it.
    pub async fn publish(
        &self,
        topic: impl Into<ByteString>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<PublishOutcome, ClientError> {
        let message = Message::new(topic, payload).qos(qos).retain(retain);
        self.ops.publish(message).await
    }

    /// Publishes a [`Message`] with properties (5.0).
    pub async fn publish_with(&self, message: Message) -> Result<PublishOutcome, ClientError> {
        self.ops.publish(message).await
    }

    /// Starts a publish and returns once it is queued on the connection, with a future of its
    /// outcome (what [`Client::publish_with`] returns). Publishes started one after another
    /// go out in that order, so a caller can keep many in flight from one task and still
    /// keep their order, as a bridge does.
    pub async fn start_publish(&self, message: Message) -> Result<PendingPublish, ClientError> {
        let (reply, answer) = oneshot::channel();
        let stream = self.ops.stream;
        self.ops
            .commands
            .send(Command::Publish {
                stream,
                message,
                reply,
            })
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(PendingPublish { answer })
    }

    /// Manual acknowledgements ([`ClientOptions::manual_acks`]): the application is done with
    /// the message `token` came with ([`ReceivedMessage::ack`]); its PUBACK (QoS 1) or PUBREC
    /// (QoS 2) goes to the server. Without manual acknowledgements this does nothing.
    pub async fn ack(&self, token: AckToken) -> Result<(), ClientError> {
        self.ops
            .commands
            .send(Command::Ack { token })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Whether the connection is up (true from each CONNACK until the connection ends); with
    /// [`ClientOptions::reconnect`] it follows the automatic reconnections.
    pub fn connection_state(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ops.shared.up.subscribe()
    }

    /// Subscribes to one filter; returns the granted QoS code, or [`ClientError::Rejected`] if
    /// the server refused it.
    pub async fn subscribe(
        &self,
        filter: impl Into<ByteString>,
        qos: QoS,
    ) -> Result<ReasonCode, ClientError> {
        self.ops.subscribe(filter.into(), qos).await
    }

    /// Subscribes to several filters with options and properties; returns every code (a
    /// refused filter does not make this an error).
    pub async fn subscribe_with(
        &self,
        subscription: Subscription,
    ) -> Result<Acknowledged, ClientError> {
        self.ops.subscribe_with(subscription).await
    }

    /// Unsubscribes from one filter; returns 0x00, or 0x11 No Subscription Existed (5.0).
    pub async fn unsubscribe(
        &self,
        filter: impl Into<ByteString>,
    ) -> Result<ReasonCode, ClientError> {
        self.ops.unsubscribe(filter.into()).await
    }

    /// Unsubscribes from several filters, with properties (5.0).
    pub async fn unsubscribe_with(
        &self,
        filters: Vec<ByteString>,
        properties: Properties,
    ) -> Result<Acknowledged, ClientError> {
        self.ops.unsubscribe_with(filters, properties).await
    }

    /// The next message received on the control stream (and on data streams whose handle was
    /// dropped).
    ///
    /// Messages wait in a queue of `ClientOptions::inbox_capacity`. QoS 1/2 messages are
    /// acknowledged once they are in it; when it is full they wait unacknowledged and the
    /// server's sending stops at our Receive Maximum, so none is lost; QoS 0 messages beyond
    /// a second queue's worth of backlog are dropped. When the connection ends, `recv` returns
    /// the error once (after the messages already queued) and then waits for messages of the
    /// next connection ([`Client::reconnect`]); after `disconnect` it returns
    /// [`ClientError::Closed`].
    pub async fn recv(&self) -> Result<ReceivedMessage, ClientError> {
        self.inbox.recv().await
    }

    /// Waits for at least one message and appends what is queued, up to `limit` items, to
    /// `out`; returns how many it appended. The same items, in the same order, as that many
    /// [`Client::recv`] calls (an error among them ends the connection as `recv` reports it),
    /// with one wake-up instead of one per message.
    pub async fn recv_many(
        &self,
        out: &mut Vec<Result<ReceivedMessage, ClientError>>,
        limit: usize,
    ) -> usize {
        self.inbox.recv_many(out, limit).await
    }

    /// Opens another stream of the QUIC connection (multi-stream mode).
    pub async fn open_stream(&self) -> Result<ClientStream, ClientError> {
        let Some(connection) = self.ops.shared.quic_connection() else {
            return Err(match self.dialer.as_ref() {
                Dialer::Quic(_) | Dialer::WithFallback { .. } => ClientError::NotConnected,
                _ => ClientError::Unsupported("several streams need the QUIC transport".into()),
            });
        };
        let (send, recv) = quic::open_stream(&connection).await?;
        let (inbox_tx, inbox) = Inbox::new(self.options.inbox_capacity, self.ops.shared.clone());
        let (reply, answer) = oneshot::channel();
        let command = Command::AttachStream {
            connection: connection.stable_id(),
            reader: Box::new(recv),
            writer: Box::new(send),
            inbox: inbox_tx,
            reply,
        };
        let stream = self.ops.request(command, answer).await?;
        let ops = Ops {
            stream,
            ..self.ops.clone()
        };
        Ok(ClientStream { ops, inbox })
    }

    /// What the QUIC extensions carried so far on this client (all its connections): QoS 0
    /// publishes sent in datagrams or fallen back to the stream, datagrams received and
    /// dropped, server streams accepted and refused.
    pub fn quic_stats(&self) -> QuicStats {
        self.ops.shared.counters.snapshot()
    }

    /// Moves the QUIC connection to a new local UDP socket, as a NAT rebinding or a switch
    /// from Wi-Fi to cellular would: the server sees a new address, validates the path and
    /// carries on with the same connection (streams, subscriptions, inflight messages, keep
    /// alive). Returns the new local address. TCP connections cannot do this
    /// ([`ClientError::Unsupported`]).
    pub async fn migrate(&self) -> Result<std::net::SocketAddr, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.ops.request(Command::Migrate { reply }, answer).await
    }

    /// Sends DISCONNECT and closes the connection; the session stays on the server if its
    /// expiry allows. Other clones of this handle get [`ClientError::Closed`] afterwards.
    pub async fn disconnect(self) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        match self
            .ops
            .request(Command::Disconnect { reply }, answer)
            .await
        {
            Ok(()) | Err(ClientError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Drops the connection without DISCONNECT, as a crash or a network failure would: the
    /// server publishes the will. The client stays usable with [`Client::reconnect`].
    pub async fn abort(&self) {
        let (reply, answer) = oneshot::channel();
        if self
            .ops
            .commands
            .send(Command::Abort { reply })
            .await
            .is_ok()
        {
            let _ = answer.await;
        }
    }
}

/// The outcome of a publish started with [`Client::start_publish`].
pub struct PendingPublish {
    answer: oneshot::Receiver<Result<PublishOutcome, ClientError>>,
}

impl std::future::Future for PendingPublish {
    type Output = Result<PublishOutcome, ClientError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.answer)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

impl ClientStream {
    /// The stream's number within the connection (1 and up; the control stream is 0).
    pub fn id(&self) -> u64 {
        self.ops.stream.0
    }

    /// [`Client::publish`] on this stream.
    pub async fn publish(
        &self,
        topic: impl Into<ByteString>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<PublishOutcome, ClientError> {
        let message = Message::new(topic, payload).qos(qos).retain(retain);
        self.ops.publish(message).await
    }

    pub async fn publish_with(&self, message: Message) -> Result<PublishOutcome, ClientError> {
        self.ops.publish(message).await
    }

    /// [`Client::subscribe`] on this stream: matching messages arrive on this stream.
    pub async fn subscribe(
        &self,
        filter: impl Into<ByteString>,
        qos: QoS,
    ) -> Result<ReasonCode, ClientError> {
        self.ops.subscribe(filter.into(), qos).await
    }

    pub async fn subscribe_with(
        &self,
        subscription: Subscription,
    ) -> Result<Acknowledged, ClientError> {
        self.ops.subscribe_with(subscription).await
    }

    pub async fn unsubscribe(
        &self,
        filter: impl Into<ByteString>,
    ) -> Result<ReasonCode, ClientError> {
        self.ops.unsubscribe(filter.into()).await
    }

    /// The next message received on this stream; [`ClientError::StreamClosed`] or
    /// [`ClientError::ConnectionLost`] once it ended.
    pub async fn recv(&self) -> Result<ReceivedMessage, ClientError> {
        self.inbox.recv().await
    }

    /// [`Client::recv_many`] for this stream.
    pub async fn recv_many(
        &self,
        out: &mut Vec<Result<ReceivedMessage, ClientError>>,
        limit: usize,
    ) -> usize {
        self.inbox.recv_many(out, limit).await
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        let command = Command::DetachStream {
            stream: self.ops.stream,
        };
        if let Err(mpsc::error::TrySendError::Full(command)) = self.ops.commands.try_send(command) {
            // The queue is busy: hand the request over to a task rather than wait here.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let commands = self.ops.commands.clone();
                runtime.spawn(async move { commands.send(command).await });
            }
        }
    }
}

impl Ops {
    async fn request<T>(
        &self,
        command: Command,
        answer: oneshot::Receiver<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| ClientError::Closed)?;
        answer.await.unwrap_or(Err(ClientError::Closed))
    }

    async fn publish(&self, message: Message) -> Result<PublishOutcome, ClientError> {
        let (reply, answer) = oneshot::channel();
        let stream = self.stream;
        self.request(
            Command::Publish {
                stream,
                message,
                reply,
            },
            answer,
        )
        .await
    }

    async fn subscribe(&self, filter: ByteString, qos: QoS) -> Result<ReasonCode, ClientError> {
        let acknowledged = self
            .subscribe_with(Subscription::new().filter(filter, qos))
            .await?;
        single_code("subscribe", acknowledged)
    }

    async fn subscribe_with(
        &self,
        subscription: Subscription,
    ) -> Result<Acknowledged, ClientError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Subscribe {
            stream: self.stream,
            subscription,
            reply,
        };
        self.request(command, answer).await
    }

    async fn unsubscribe(&self, filter: ByteString) -> Result<ReasonCode, ClientError> {
        let acknowledged = self
            .unsubscribe_with(vec![filter], Properties::default())
            .await?;
        single_code("unsubscribe", acknowledged)
    }

    async fn unsubscribe_with(
        &self,
        filters: Vec<ByteString>,
        properties: Properties,
    ) -> Result<Acknowledged, ClientError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Unsubscribe {
            stream: self.stream,
            filters,
            properties,
            reply,
        };
        self.request(command, answer).await
    }

    async fn reconnect(&self, parts: LinkParts) -> Result<Connected, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.request(Command::Reconnect { parts, reply }, answer)
            .await
    }
}

/// The one code of a single-filter SUBACK / UNSUBACK, failures as errors.
fn single_code(
    operation: &'static str,
    acknowledged: Acknowledged,
) -> Result<ReasonCode, ClientError> {
    let code = acknowledged
        .codes
        .first()
        .copied()
        .unwrap_or(ReasonCode::SUCCESS);
    if code.is_error() {
        return Err(ClientError::Rejected {
            operation,
            code,
            reason_string: acknowledged.properties.reason_string.clone(),
        });
    }
    Ok(code)
}

fn split<S>(stream: S) -> LinkParts
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    LinkParts {
        reader: Box::new(reader),
        writer: Box::new(writer),
        quic: None,
        early: None,
        fallback: false,
    }
}
