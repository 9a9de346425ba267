//! Events from the transports and the embedding API to the broker task.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::Outbox;
use crate::broker::{ClientInfo, ConnId, HandlerId, Message, Metrics, SharedMessage, StreamId};
use crate::codec::{DecodeError, Packet, QoS, ReasonCode};

pub enum Event {
    Opened {
        conn: ConnId,
        peer: String,
        outbox: Arc<Outbox>,
    },
    Packets {
        conn: ConnId,
        stream: StreamId,
        packets: Vec<Packet>,
        /// Bytes read from the connection for these packets: once the broker task has handled
        /// them it hands them back to the connection's [`super::ReadPause`], which bounds what a
        /// reader may have read and not yet seen handled. 0: not counted (datagrams, tests).
        read: usize,
    },
    DecodeError {
        conn: ConnId,
        error: DecodeError,
    },
    Lost {
        conn: ConnId,
    },
    /// The verdict on the credentials of the CONNECT that follows (transport::login).
    Login {
        conn: ConnId,
        login: crate::auth::Login,
    },
    /// A reloaded ACL (SIGHUP); `None` allows everything.
    SetAcl {
        acl: Option<Arc<crate::auth::Acl>>,
    },
    /// QUIC: what the connection can do (datagram size, ALPN MQTT-next).
    QuicCaps {
        conn: ConnId,
        caps: crate::broker::QuicCaps,
    },
    /// QUIC: a zero-length datagram (liveness probe).
    DatagramProbe {
        conn: ConnId,
    },
    /// QUIC: a datagram that is not exactly one decodable MQTT packet.
    DatagramMalformed {
        conn: ConnId,
    },
    /// QUIC: a stream the client opened too fast was refused (`quic_stream_opens_per_sec`).
    StreamRefused {
        conn: ConnId,
    },
    /// QUIC: datagrams dropped because the client sent them too fast (`quic_datagrams_per_sec`).
    DatagramsRateLimited {
        conn: ConnId,
        count: u64,
    },
    /// QUIC: the client opened a data stream.
    StreamOpened {
        conn: ConnId,
        stream: StreamId,
    },
    /// QUIC: a data stream ended (FIN or reset).
    StreamClosed {
        conn: ConnId,
        stream: StreamId,
    },
    /// QUIC: a data stream sent bytes that do not decode.
    StreamError {
        conn: ConnId,
        stream: StreamId,
        error: DecodeError,
    },
    Written {
        conn: ConnId,
        bytes: usize,
    },
    /// QUIC: the client now sends from another address (connection migration).
    PeerAddressChanged {
        conn: ConnId,
        peer: String,
    },
    /// QUIC 0-RTT: the next CONNECT arrived before the handshake was confirmed; hold its will.
    HoldWill {
        conn: ConnId,
    },
    /// QUIC 0-RTT: the handshake is confirmed; a held will now counts.
    HandshakeConfirmed {
        conn: ConnId,
    },
    /// The broker's counters and connections, for the server handle.
    Inspect {
        reply: oneshot::Sender<(Metrics, Vec<ClientInfo>)>,
    },
    /// A query or action of the admin API (`crate::admin`), run on the broker task with the
    /// broker and the current time; it answers through a oneshot channel it holds.
    Admin(AdminTask),
    AppSubscribe {
        handler: HandlerId,
        filter: String,
        qos: QoS,
        deliver: mpsc::Sender<SharedMessage>,
        reply: oneshot::Sender<Result<(), ReasonCode>>,
    },
    AppPublish {
        message: Box<Message>,
        reply: oneshot::Sender<Result<usize, ReasonCode>>,
    },
    /// From the cluster actor (`crate::cluster`).
    Cluster(ClusterEvent),
    Shutdown,
}

/// What the other nodes of a cluster tell this one, through the cluster actor.
pub enum ClusterEvent {
    /// A message published on another node.
    Message(Box<Message>),
    /// The cluster's retained message of a topic was set (`Some`) or cleared.
    Retained {
        topic: bytestring::ByteString,
        message: Option<Box<Message>>,
    },
    /// Another node accepted a connection for this client id after this node's claim
    /// number `claim` (`Broker::cluster_taken_over`).
    TakenOver {
        client_id: bytestring::ByteString,
        claim: u64,
        /// Where to answer once the session is handed over (its final state written).
        reply: Option<String>,
    },
    /// The answer to a fetch (`Broker::cluster_fetched`): the session's state record, if one
    /// is stored; `Err` when NATS could not be asked.
    Fetched {
        conn: crate::broker::ConnId,
        client_id: bytestring::ByteString,
        state: Result<Option<Vec<u8>>, ()>,
    },
    /// Messages read again from the stream for a session that moved here
    /// (`Broker::cluster_replayed`).
    Replayed {
        client_id: bytestring::ByteString,
        messages: Vec<Message>,
        done: bool,
    },
    /// JetStream stored a held QoS 1/2 message (`true`) or did not.
    Stored {
        ack: crate::broker::ClusterAck,
        stored: bool,
    },
    /// Nodes declared dead, their wills, this node's NATS link (`Broker::cluster_liveness`).
    Liveness(crate::broker::LivenessEvent),
    /// A message for the shared subscription `$share/group/filter`, which NATS gave to this
    /// node (`Broker::cluster_shared_message`); `token` when it awaits an answer.
    Shared {
        group: bytestring::ByteString,
        filter: bytestring::ByteString,
        message: Box<Message>,
        token: Option<crate::broker::SharedToken>,
    },
}

/// See [`Event::Admin`].
pub type AdminTask = Box<dyn FnOnce(&mut crate::broker::Broker, std::time::Instant) + Send>;

/// Capacity of the channel into the broker task. Senders wait when it is full, which slows
/// down reading from sockets: backpressure reaches the publishers.
pub const EVENT_QUEUE: usize = 4096;
