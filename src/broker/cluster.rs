//! The broker's side of a cluster (README "Cluster", proto-ext/cluster.md), sans-IO.
//!
//! With [`Broker::enable_cluster`] every message published on this node (by a client, a will,
//! the embedding API or the admin API; never `$SYS`, which describes one node) is routed to
//! the local subscribers as before *and* handed out as [`ClusterOutput::Publish`] for the other
//! nodes; a retained message set or cleared here goes out as [`ClusterOutput::Retain`]. The
//! cluster actor beside the broker task (`crate::cluster`) carries them over NATS and brings
//! the other nodes' messages back as [`Broker::cluster_message`] and
//! [`Broker::cluster_retained`], which route and store locally without sending anything out
//! again (no loops).
//!
//! QoS 1/2 from a client: the PUBACK/PUBREC waits until the cluster actor reports that
//! JetStream stored the message ([`Broker::cluster_stored`]), so an acknowledged message is in
//! the stream, which every node reads. Several wait at once; their acknowledgements leave in
//! the order the PUBLISH packets came on each stream [MQTT-4.6.0-2] [MQTT-4.6.0-3], whatever
//! order the reports come in. A message JetStream refused is answered 0x80 (5.0) or closes
//! the connection (3.1.1, which has no code for it: the client sends it again after it
//! reconnects).

use std::collections::VecDeque;
use std::time::Instant;

use ahash::AHashMap;
use bytestring::ByteString;

use super::persist::record::{self, StoredMessage, WallClock};
use super::{Broker, ConnId, Message, SharedMessage, StreamId};
use crate::codec::{Ack, Packet, QoS, ReasonCode};

/// Identifies a QoS 1/2 message whose acknowledgement waits for the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterAck(pub u64);

/// What the broker asks the cluster actor to do.
#[derive(Debug)]
pub enum ClusterOutput {
    /// A message published on this node, for the other nodes' subscribers. With `ack`, the
    /// publisher's acknowledgement waits for [`Broker::cluster_stored`] with it.
    Publish {
        message: SharedMessage,
        ack: Option<ClusterAck>,
    },
    /// The retained message of `topic` was set (`Some`) or cleared (`None`) on this node.
    Retain {
        topic: ByteString,
        message: Option<SharedMessage>,
    },
    /// A client connected here: this node claims its client id cluster-wide, and the node
    /// that held it closes its connection ([`Broker::cluster_taken_over`]). `claim` numbers
    /// this node's claims, in order.
    Claim { client_id: ByteString, claim: u64 },
    /// The session of this client id ended here: the claim is given up (only if it is
    /// still this node's: fenced by the claim's revision), and so is its state.
    Release { client_id: ByteString },
    /// The will of this client id, held here, was set (`Some`) or went (`None`):
    /// cluster_wills.rs.
    Will {
        client_id: ByteString,
        will: Option<super::ClusterWill>,
    },
    /// A Clean Start 0 CONNECT on `conn` waits for its session: claim the client id (like
    /// `Claim`), have the node that held it hand it over, and answer with its state
    /// ([`Broker::cluster_fetched`]).
    Fetch {
        conn: ConnId,
        client_id: ByteString,
        claim: u64,
    },
    /// The state of a persistent session held here changed ([`super::StateRecord`]).
    State {
        client_id: ByteString,
        state: Vec<u8>,
    },
    /// Read the stream's messages from sequence `from` to `to` for a session that moved here
    /// ([`Broker::cluster_replayed`]).
    Replay {
        client_id: ByteString,
        from: u64,
        to: u64,
    },
    /// A takeover notice was handled (the session's final state, if any, is out): answer
    /// the node that took the client over, at `reply`.
    HandedOver {
        client_id: ByteString,
        reply: String,
    },
    /// Shared subscriptions served through the cluster (cluster_shared.rs).
    Shared(super::SharedOutput),
}

/// The cluster state of the broker.
#[derive(Debug, Default)]
pub(super) struct ClusterState {
    next_ack: u64,
    /// Which connection and stream each waiting acknowledgement belongs to.
    owners: AHashMap<ClusterAck, (ConnId, StreamId)>,
    /// Acknowledgements waiting, in the order of the PUBLISH packets, per connection and stream.
    waiting: AHashMap<(ConnId, StreamId), VecDeque<Held>>,
    /// This node's name.
    node: String,
    /// The last claim made for each client id with a session on this node.
    pub(super) claims: AHashMap<ByteString, u64>,
    next_claim: u64,
    /// NATS is lost: CONNECT refused (cluster_wills.rs).
    pub(super) link_down: bool,
    /// Messages that came from NATS: the other nodes' QoS 0, and every QoS 1/2 message of the
    /// stream (this node's own included).
    pub received: u64,
    /// Messages refused by the cluster (publisher told, or disconnected).
    pub failed: u64,
    /// Sessions moving here from other nodes (cluster_session.rs).
    pub(super) moving: super::cluster_session::Moving,
    /// Shared subscriptions (cluster_shared.rs).
    pub(super) shared: super::cluster_shared::SharedState,
}

impl ClusterState {
    /// Whether this node holds the client id (its last claim here was not taken over).
    pub(super) fn holds(&self, client_id: &str) -> bool {
        self.claims.contains_key(client_id)
    }
}

#[derive(Debug)]
struct Held {
    ack: ClusterAck,
    qos: QoS,
    packet_id: u16,
    /// The answer when stored (a refusal by the ACL is answered in order too).
    code: ReasonCode,
    /// `None` while the cluster has not answered; then whether it stored the message.
    stored: Option<bool>,
}

/// The wire form of a message between nodes: the store's record of a message (topic, payload,
/// QoS, retain flag, forwarded properties, wall-clock expiry, publisher's client id).
pub fn encode_message(msg: &Message, now: Instant, wall: std::time::SystemTime) -> Vec<u8> {
    let clock = WallClock::new(now, wall);
    record::encode_retained(&StoredMessage::from_message(msg, &clock))
}

/// Decodes [`encode_message`]'s bytes; the expiry becomes an `Instant` of this node.
pub fn decode_message(
    bytes: &[u8],
    now: Instant,
    wall: std::time::SystemTime,
) -> Result<Message, record::RecordError> {
    let clock = WallClock::new(now, wall);
    Ok(record::decode_retained(bytes)?.into_message(&clock))
}

impl ClusterState {
    pub(super) fn claims_client(&self, client_id: &str) -> bool {
        self.claims.contains_key(client_id)
    }
}

impl Broker {
    /// Makes this broker the node `node` of a cluster: from now on what is published here
    /// also goes out as [`ClusterOutput`]s.
    pub fn enable_cluster(&mut self, node: &str) {
        self.cluster = Some(Box::new(ClusterState {
            node: node.to_string(),
            ..ClusterState::default()
        }));
        // Changed sessions are tracked: their state goes to the cluster (cluster_session.rs).
        self.sessions.track(true);
    }

    /// This node's name in a cluster (client identifiers the broker assigns carry it).
    pub(super) fn cluster_node(&self) -> Option<&str> {
        self.cluster.as_ref().map(|c| c.node.as_str())
    }

    pub fn is_clustered(&self) -> bool {
        self.cluster.is_some()
    }

    /// Messages received from NATS (see `ClusterState::received`), and messages the cluster
    /// refused.
    pub fn cluster_counts(&self) -> (u64, u64) {
        self.cluster
            .as_ref()
            .map_or((0, 0), |c| (c.received, c.failed))
    }

    /// Hands a message published on this node to the other nodes (not `$SYS`, not when
    /// running alone).
    pub(super) fn cluster_forward(&mut self, msg: &SharedMessage, ack: Option<ClusterAck>) {
        if self.cluster.is_none() || msg.topic.starts_with(super::SYS_PREFIX) {
            return;
        }
        self.out.cluster(ClusterOutput::Publish {
            message: msg.clone(),
            ack,
        });
    }

    /// Hands a retained change made on this node to the other nodes.
    pub(super) fn cluster_forward_retain(
        &mut self,
        topic: &ByteString,
        msg: Option<&SharedMessage>,
    ) {
        if self.cluster.is_none() || topic.starts_with(super::SYS_PREFIX) {
            return;
        }
        self.out.cluster(ClusterOutput::Retain {
            topic: topic.clone(),
            message: msg.cloned(),
        });
    }

    /// Starts waiting for the cluster before acknowledging a client's QoS 1/2 PUBLISH; `None`
    /// when running alone (acknowledge at once).
    pub(super) fn cluster_hold_ack(
        &mut self,
        conn: ConnId,
        stream: StreamId,
        qos: QoS,
        packet_id: u16,
    ) -> Option<ClusterAck> {
        let cluster = self.cluster.as_mut()?;
        cluster.next_ack += 1;
        let ack = ClusterAck(cluster.next_ack);
        cluster.owners.insert(ack, (conn, stream));
        cluster
            .waiting
            .entry((conn, stream))
            .or_default()
            .push_back(Held {
                ack,
                qos,
                packet_id,
                code: ReasonCode::SUCCESS,
                stored: None,
            });
        Some(ack)
    }

    /// Queues an acknowledgement that needs no cluster behind those that wait on the same
    /// stream, so the order holds; false when none waits (send it at once).
    pub(super) fn cluster_queue_answer(
        &mut self,
        conn: ConnId,
        stream: StreamId,
        qos: QoS,
        packet_id: u16,
        code: ReasonCode,
    ) -> bool {
        let Some(cluster) = self.cluster.as_mut() else {
            return false;
        };
        let Some(queue) = cluster.waiting.get_mut(&(conn, stream)) else {
            return false;
        };
        cluster.next_ack += 1;
        queue.push_back(Held {
            ack: ClusterAck(cluster.next_ack),
            qos,
            packet_id,
            code,
            stored: Some(true),
        });
        true
    }

    /// Whether a QoS 2 PUBLISH with this packet id still waits for the cluster on `stream`
    /// (a retransmission then needs no answer: the PUBREC follows).
    pub(super) fn cluster_waits_for(&self, conn: ConnId, stream: StreamId, packet_id: u16) -> bool {
        self.cluster.as_ref().is_some_and(|c| {
            c.waiting
                .get(&(conn, stream))
                .is_some_and(|q| q.iter().any(|h| h.packet_id == packet_id))
        })
    }

    /// The cluster actor's report on a held message: JetStream stored it (`true`) or not.
    /// Acknowledgements leave in order: each waits for those before it on its stream.
    pub fn cluster_stored(&mut self, ack: ClusterAck, stored: bool, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let Some(key) = cluster.owners.remove(&ack) else {
            return;
        };
        let Some(queue) = cluster.waiting.get_mut(&key) else {
            return;
        };
        if let Some(h) = queue.iter_mut().find(|h| h.ack == ack) {
            h.stored = Some(stored);
        }
        let mut ready = Vec::new();
        while queue.front().is_some_and(|h| h.stored.is_some()) {
            ready.extend(queue.pop_front());
        }
        if queue.is_empty() {
            cluster.waiting.remove(&key);
        }
        let (conn, stream) = key;
        for held in ready {
            self.answer_held(conn, stream, held, now);
        }
        self.reap(now);
    }

    fn answer_held(&mut self, conn: ConnId, stream: StreamId, held: Held, now: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (version, session) = (c.version, c.session);
        let mut ack = Ack::new(held.packet_id);
        ack.code = held.code;
        if held.stored != Some(true) {
            if let Some(cluster) = self.cluster.as_mut() {
                cluster.failed += 1;
            }
            if held.qos == QoS::ExactlyOnce {
                // The flow ends: the packet id is free again.
                if let Some(s) = session.and_then(|sid| self.sessions.get_mut(&sid)) {
                    s.incoming_qos2.remove(&(stream, held.packet_id));
                }
            }
            if !version.is_v5() {
                // 3.1.1 has no failure code: the client sends it again once reconnected.
                tracing::info!(
                    conn = conn.0,
                    "closing: the cluster did not store a QoS 1/2 message"
                );
                self.close_with(conn, ReasonCode::UNSPECIFIED_ERROR, now);
                return;
            }
            ack.code = ReasonCode::UNSPECIFIED_ERROR;
        }
        let packet = match held.qos {
            QoS::ExactlyOnce => Packet::PubRec(ack),
            _ => Packet::PubAck(ack),
        };
        self.send(conn, stream, packet);
    }

    /// Forgets what a closed connection waited for.
    pub(super) fn cluster_forget_connection(&mut self, conn: ConnId) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        cluster.waiting.retain(|(c, _), queue| {
            if *c == conn {
                for h in queue.iter() {
                    cluster.owners.remove(&h.ack);
                }
                false
            } else {
                true
            }
        });
    }

    /// A message published on another node: routed to the local subscribers (with its retain
    /// flag, for Retain As Published), never stored as retained (the retained bucket does
    /// that) and never sent out again.
    ///
    /// QoS 1/2 messages come from the cluster's stream, this node's own included (the
    /// publisher's node does not route them at once: route.rs), with their sequence number.
    /// No Local compares client ids, which are unique in the cluster [MQTT-3.8.3-3].
    pub fn cluster_message(&mut self, msg: Message, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        cluster.received += 1;
        if let Some(seq) = msg.cluster_seq {
            self.cluster_note_position(seq);
        }
        // [MQTT-3.3.2-5] an expired message is not delivered.
        if msg.is_expired(now) || msg.topic.starts_with(super::SYS_PREFIX) {
            return;
        }
        let publisher = msg
            .origin
            .as_ref()
            .and_then(|id| self.client_ids.get(id))
            .copied();
        self.route(std::sync::Arc::new(msg), publisher, now);
        self.reap(now);
    }

    /// Whether this node leaves a message it publishes to the cluster's stream, which
    /// routes it here too (QoS 1/2, not `$SYS`): see [`Broker::cluster_message`].
    pub(super) fn routed_by_stream(&self, msg: &Message) -> bool {
        self.cluster.is_some()
            && msg.qos != QoS::AtMostOnce
            && !msg.topic.starts_with(super::SYS_PREFIX)
    }

    /// The cluster's retained message of `topic` changed (set, or cleared with `None`):
    /// stored locally without being sent out again.
    pub fn cluster_retained(&mut self, topic: ByteString, msg: Option<Message>, now: Instant) {
        if self.cluster.is_none() || topic.starts_with(super::SYS_PREFIX) {
            return;
        }
        let msg = match msg {
            Some(m) if !m.is_expired(now) => m,
            // Cleared, or expired: an empty retained message clears the topic.
            _ => Message {
                topic: topic.clone(),
                payload: bytes::Bytes::new(),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: Default::default(),
                expires_at: None,
                origin: None,
                received_at: None,
                cluster_seq: None,
            },
        };
        if self.settings.session.retain_available {
            self.retain(&std::sync::Arc::new(msg), false);
        }
    }

    /// A client's connection was accepted here: claim its client id in the cluster.
    pub(super) fn cluster_claim(&mut self, client_id: &ByteString) {
        if self.cluster.is_none() {
            return;
        }
        let claim = self.cluster_next_claim(client_id);
        self.out.cluster(ClusterOutput::Claim {
            client_id: client_id.clone(),
            claim,
        });
    }

    /// Numbers a new claim of `client_id` by this node.
    pub(super) fn cluster_next_claim(&mut self, client_id: &ByteString) -> u64 {
        let Some(cluster) = self.cluster.as_mut() else {
            return 0;
        };
        cluster.next_claim += 1;
        cluster.claims.insert(client_id.clone(), cluster.next_claim);
        cluster.next_claim
    }

    /// A session ended here: give its claim up.
    pub(super) fn cluster_release(&mut self, client_id: &ByteString) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.claims.remove(client_id).is_some() {
            self.out.cluster(ClusterOutput::Release {
                client_id: client_id.clone(),
            });
        }
    }

    /// Another node accepted a connection for `client_id` after this node's claim number
    /// `claim` (the last one the cluster actor had made when it learnt it). The client lives
    /// there now: its connection here gets DISCONNECT 0x8E [MQTT-3.1.4-3] and its session here
    /// ends without its will (the client is connected elsewhere). A claim made here after
    /// `claim` (a newer connection, its claim not yet made) wins instead: the other node is
    /// told in turn when that claim is made.
    ///
    /// A persistent session's final state goes out first, then the answer to `reply` (the
    /// other node waits for it before it reads the state: cluster_session.rs).
    pub fn cluster_taken_over(
        &mut self,
        client_id: &str,
        claim: u64,
        reply: Option<String>,
        now: Instant,
        wall: std::time::SystemTime,
    ) {
        self.cluster_hand_over(client_id, claim, now, wall);
        if let Some(reply) = reply {
            let client_id = ByteString::from(client_id);
            self.out
                .cluster(ClusterOutput::HandedOver { client_id, reply });
        }
    }

    fn cluster_hand_over(
        &mut self,
        client_id: &str,
        claim: u64,
        now: Instant,
        wall: std::time::SystemTime,
    ) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.claims.get(client_id).is_some_and(|&c| c > claim) {
            return;
        }
        cluster.claims.remove(client_id);
        let Some(sid) = self.client_ids.get(client_id).copied() else {
            return;
        };
        self.cluster_final_state(sid, &WallClock::new(now, wall));
        let conn = self.sessions.get_mut(&sid).and_then(|s| {
            s.will = None;
            s.conn
        });
        tracing::info!(client = %client_id, "session taken over by another node");
        self.metrics.sessions_taken_over += 1;
        self.end_session(sid, now);
        if let Some(conn) = conn {
            self.close_with(conn, ReasonCode::SESSION_TAKEN_OVER, now);
        }
        self.reap(now);
    }
}
