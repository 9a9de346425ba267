//! Shared subscriptions in a cluster (README "Cluster", proto-ext/cluster.md "Shared
//! subscriptions"), sans-IO.
//!
//! On one node a `$share/GROUP/FILTER` group gets each message once, round robin over its
//! members (route.rs). In a cluster the members are spread over nodes, so "once per group" is
//! decided by NATS, never by a node: the local route skips shared subscriptions (except for
//! `$SYS`, which never leaves its node), and every message reaches the group through NATS, from
//! local publishers as from remote ones.
//!
//! - A node serves a group while it has a member with a connection: the broker says so with
//!   [`SharedOutput::Join`] when the first connected local member of (group, filter) appears
//!   and [`SharedOutput::Leave`] when the last one goes (unsubscribed, session ended, or
//!   connection lost). The cluster actor then subscribes to the group in NATS (a queue
//!   subscription for QoS 0, a pull from the group's durable JetStream consumer for QoS 1/2).
//! - NATS hands each message to one serving node, which gets it as
//!   [`Broker::cluster_shared_message`] and delivers it to ONE local member with a connection
//!   (round robin), with the usual rules: granted QoS, Retain As Published, subscription
//!   identifier, the ACL, and `$` topics never matched by a filter starting with a wildcard
//!   [MQTT-4.7.2-1] (NATS wildcards match them).
//! - A message from the group's JetStream consumer comes with a [`SharedToken`]; the broker
//!   answers [`SharedOutput::Done`] with `ack: true` once the member acknowledged it (PUBACK,
//!   or PUBREC for QoS 2: the member holds it then), or at once when it was delivered at QoS 0
//!   or dropped by MQTT's rules; with `ack: false` (give it to another node) when no local
//!   member has a connection, or when the member's connection is lost before it acknowledged
//!   [4.8.2: the Server MAY send it to another Client as soon as it loses the connection]. A
//!   message whose answer never comes (node killed, delivery dropped from a full queue) is
//!   redelivered by JetStream after `cluster.shared_ack_wait_ms` (the cluster actor tells
//!   JetStream the work is in progress meanwhile, for a while: `crate::cluster::shared`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::{AHashMap, AHashSet};
use bytestring::ByteString;

use super::session::Delivery;
use super::{Broker, Message, SessionId, StreamId, SubKey};
use crate::codec::QoS;
use crate::topic;

/// Identifies a message of a group's JetStream consumer until the broker answers for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedToken(pub u64);

/// What the broker asks the cluster actor to do for shared subscriptions.
#[derive(Debug, PartialEq, Eq)]
pub enum SharedOutput {
    /// This node has a connected member of `$share/group/filter` now: serve the group. A
    /// group that has no consumer in JetStream yet gets one that starts after stream sequence
    /// `after` (the last this node routed), so that no QoS 1/2 message published after the
    /// member's SUBACK escapes it.
    Join {
        group: ByteString,
        filter: ByteString,
        after: u64,
    },
    /// This node's last connected member of the group is gone: stop serving it.
    Leave {
        group: ByteString,
        filter: ByteString,
    },
    /// The message of `token` is done with here: acknowledge it to JetStream (`ack`), or hand
    /// it back so that another node's member gets it.
    Done { token: SharedToken, ack: bool },
}

/// Tokens still unanswered after this long are forgotten (JetStream redelivered their
/// messages long before): what a delivery dropped on the way (full queue, too large for the
/// client) would otherwise keep.
const FORGET_AFTER: Duration = Duration::from_secs(600);

type GroupKey = (ByteString, ByteString);

/// The cluster state of shared subscriptions (part of `ClusterState`).
#[derive(Debug, Default)]
pub(super) struct SharedState {
    /// The local subscriptions of each (group, filter).
    members: AHashMap<GroupKey, AHashSet<(SessionId, StreamId)>>,
    /// The groups this node serves (announced with `Join`).
    joined: AHashSet<GroupKey>,
    /// Messages delivered to a member at QoS 1/2, by (session, delivery seq), awaiting its
    /// acknowledgement.
    waiting: AHashMap<(SessionId, u64), (SharedToken, Instant)>,
    /// `waiting`'s keys in the order they came, to forget the stale ones.
    order: VecDeque<(Instant, SessionId, u64)>,
    /// Messages delivered from NATS to a member, and handed back to NATS.
    pub delivered: u64,
    pub handed_back: u64,
}

impl Broker {
    /// Whether shared subscriptions to `topic` are served through the cluster rather than by
    /// the local route: in a cluster, except `$SYS` (which never leaves its node).
    pub(super) fn shared_by_cluster(&self, topic: &str) -> bool {
        self.cluster.is_some() && !topic.starts_with(super::SYS_PREFIX)
    }

    /// Messages delivered from the cluster to shared subscribers here, and handed back.
    pub fn cluster_shared_counts(&self) -> (u64, u64) {
        self.cluster
            .as_ref()
            .map_or((0, 0), |c| (c.shared.delivered, c.shared.handed_back))
    }

    /// A subscription went into the trie (insert_into_trie).
    pub(super) fn cluster_shared_added(
        &mut self,
        sid: SessionId,
        group: &ByteString,
        filter: &str,
        stream: StreamId,
    ) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let key = (group.clone(), ByteString::from(filter));
        cluster
            .shared
            .members
            .entry(key.clone())
            .or_default()
            .insert((sid, stream));
        self.shared_refresh(&key);
    }

    /// A subscription left the trie (remove_from_trie); when its session is gone, the
    /// messages it had not acknowledged go back to the group.
    pub(super) fn cluster_shared_removed(
        &mut self,
        sid: SessionId,
        group: &ByteString,
        filter: &str,
        stream: StreamId,
    ) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let key = (group.clone(), ByteString::from(filter));
        if let Some(set) = cluster.shared.members.get_mut(&key) {
            set.remove(&(sid, stream));
            if set.is_empty() {
                cluster.shared.members.remove(&key);
            }
        }
        if self.sessions.get(&sid).is_none() {
            self.shared_hand_back(sid);
        }
        self.shared_refresh(&key);
    }

    /// A session got a connection, or lost it (connect.rs, close.rs): the groups it is a
    /// member of may start or stop being served here; on a loss, what it had not
    /// acknowledged goes back to the group.
    pub(super) fn cluster_shared_presence(&mut self, sid: SessionId) {
        if self.cluster.is_none() {
            return;
        }
        let Some(session) = self.sessions.get(&sid) else {
            self.shared_hand_back(sid);
            return;
        };
        let online = session.conn.is_some();
        let keys: Vec<GroupKey> = session
            .subscriptions
            .keys()
            .filter_map(|(filter, _)| match topic::parse_shared(filter) {
                Some(Ok(s)) => Some((ByteString::from(s.group), ByteString::from(s.filter))),
                _ => None,
            })
            .collect();
        if !online {
            self.shared_hand_back(sid);
        }
        for key in keys {
            self.shared_refresh(&key);
        }
    }

    /// The local members of a group that have a connection.
    fn shared_online(&self, key: &GroupKey) -> Vec<(SessionId, StreamId)> {
        let Some(members) = self
            .cluster
            .as_ref()
            .and_then(|c| c.shared.members.get(key))
        else {
            return Vec::new();
        };
        let mut online: Vec<(SessionId, StreamId)> = members
            .iter()
            .filter(|(sid, _)| self.sessions.get(sid).is_some_and(|s| s.conn.is_some()))
            .copied()
            .collect();
        // A stable order for the round robin (the set's is arbitrary).
        online.sort_unstable_by_key(|(sid, stream)| (sid.0, stream.0));
        online
    }

    /// Announces that this node starts or stops serving a group, when that changed. (Not
    /// for `$SYS` filters: those topics never leave their node, the local route serves them.)
    fn shared_refresh(&mut self, key: &GroupKey) {
        if key.1.starts_with(super::SYS_PREFIX) {
            return;
        }
        let online = !self.shared_online(key).is_empty();
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let output = if online && cluster.shared.joined.insert(key.clone()) {
            SharedOutput::Join {
                group: key.0.clone(),
                filter: key.1.clone(),
                after: cluster.moving.position,
            }
        } else if !online && cluster.shared.joined.remove(key) {
            SharedOutput::Leave {
                group: key.0.clone(),
                filter: key.1.clone(),
            }
        } else {
            return;
        };
        self.out.cluster(super::ClusterOutput::Shared(output));
    }

    /// Hands the messages a session had not acknowledged back to the group.
    fn shared_hand_back(&mut self, sid: SessionId) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let mut back = Vec::new();
        cluster.shared.waiting.retain(|(s, _), (token, _)| {
            if *s == sid {
                back.push(*token);
                false
            } else {
                true
            }
        });
        cluster.shared.handed_back += back.len() as u64;
        for token in back {
            self.shared_done(token, false);
        }
    }

    fn shared_done(&mut self, token: SharedToken, ack: bool) {
        self.out
            .cluster(super::ClusterOutput::Shared(SharedOutput::Done {
                token,
                ack,
            }));
    }

    /// A member acknowledged a delivery (PUBACK, or PUBREC for QoS 2; also a PUBREC with an
    /// error code: the member decided): if it came from a group's JetStream consumer, it is
    /// acknowledged there.
    pub(super) fn cluster_shared_acked(&mut self, sid: SessionId, seq: u64) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if let Some((token, _)) = cluster.shared.waiting.remove(&(sid, seq)) {
            self.shared_done(token, true);
        }
    }

    /// A message for the group `$share/group/filter`, which NATS gave to this node: delivered
    /// to one local member with a connection. `token`: it came from the group's JetStream
    /// consumer, and waits for [`SharedOutput::Done`].
    pub fn cluster_shared_message(
        &mut self,
        group: &str,
        filter: &str,
        msg: Message,
        token: Option<SharedToken>,
        now: Instant,
    ) {
        let answer = |broker: &mut Broker, ack: bool| {
            if let Some(token) = token {
                if !ack {
                    if let Some(c) = broker.cluster.as_mut() {
                        c.shared.handed_back += 1;
                    }
                }
                broker.shared_done(token, ack);
            }
        };
        if self.cluster.is_none() {
            return;
        }
        self.shared_forget_stale(now);
        // [MQTT-3.3.2-5] an expired message is not delivered. [MQTT-4.7.2-1] NATS's wildcards
        // match `$` topics, MQTT's do not; NATS's subjects may also be wider than the filter.
        if msg.is_expired(now)
            || msg.topic.starts_with(super::SYS_PREFIX)
            || !topic::matches(filter, &msg.topic)
        {
            answer(self, true);
            return;
        }
        let key = (ByteString::from(group), ByteString::from(filter));
        let online = self.shared_online(&key);
        if online.is_empty() {
            // No member here (it just left): another node's member gets it.
            answer(self, false);
            return;
        }
        // ACL: only members that may read the topic take part in the round robin.
        let mut readers = Vec::with_capacity(online.len());
        for (sid, stream) in online {
            if self.may_read(sid, &msg.topic) {
                readers.push((sid, stream));
            }
        }
        if readers.is_empty() {
            self.metrics.acl_denied += 1;
            self.metrics.dropped_acl += 1;
            answer(self, true);
            return;
        }
        let cursor = self.shared_cursor.entry(key.clone()).or_insert(0);
        *cursor = cursor.wrapping_add(1);
        let Some(&(sid, stream)) = readers.get(*cursor % readers.len()) else {
            answer(self, false);
            return;
        };
        let sub_key = SubKey {
            session: sid,
            group: Some(key.0.clone()),
            stream,
        };
        let Some(entry) = self.subscriptions.get(filter, &sub_key).cloned() else {
            answer(self, false);
            return;
        };
        let msg = Arc::new(msg);
        let qos = msg.qos.min(entry.options.qos);
        let delivery = Delivery {
            msg: msg.clone(),
            qos,
            // [MQTT-3.3.1-12] [MQTT-3.3.1-13] Retain As Published.
            retain: msg.retain && entry.options.retain_as_published,
            sub_ids: entry.id.into_iter().collect(),
            stream: entry.stream,
            datagram: entry.datagram,
            flow: Some(key.1.clone()),
            priority: entry.priority,
            seq: 0,
        };
        let seq = self.deliver(sid, delivery, None, now);
        if let Some(c) = self.cluster.as_mut() {
            c.shared.delivered += 1;
        }
        match token {
            // Not taken (cannot happen to a message without a stream sequence): back.
            Some(token) if seq == 0 => self.shared_done(token, false),
            // At QoS 0 the member never acknowledges: done once sent (or dropped).
            Some(token) if qos == QoS::AtMostOnce => self.shared_done(token, true),
            Some(token) => {
                if let Some(c) = self.cluster.as_mut() {
                    c.shared.waiting.insert((sid, seq), (token, now));
                    c.shared.order.push_back((now, sid, seq));
                }
            }
            None => {}
        }
        self.reap(now);
    }

    /// Forgets the tokens older than [`FORGET_AFTER`] (their messages went back to the group
    /// through JetStream's redelivery long ago).
    fn shared_forget_stale(&mut self, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let shared = &mut cluster.shared;
        while let Some(&(at, sid, seq)) = shared.order.front() {
            if now.saturating_duration_since(at) < FORGET_AFTER {
                break;
            }
            shared.order.pop_front();
            if shared
                .waiting
                .get(&(sid, seq))
                .is_some_and(|(_, t)| *t == at)
            {
                shared.waiting.remove(&(sid, seq));
            }
        }
        // Acknowledged entries leave `waiting` at once but stay in `order` until their time:
        // bound `order` by what `waiting` holds.
        if shared.order.len() > 2 * shared.waiting.len() + 1024 {
            let waiting = &shared.waiting;
            shared
                .order
                .retain(|(at, sid, seq)| waiting.get(&(*sid, *seq)).is_some_and(|(_, t)| t == at));
        }
    }
}
