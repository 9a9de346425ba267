//! Routing and delivery: from one published message to the subscribers' connections.
//!
//! The trie gives every matching subscription once; overlapping subscriptions of one session
//! collapse into one delivery at the highest granted QoS carrying every subscription identifier
//! (3.3.4, [MQTT-3.3.4-2] .. [MQTT-3.3.4-5]); a shared subscription group gets each message
//! once, round robin over its online members (4.8.2). The payload is never copied: every queue
//! holds the same `Arc<Message>` and every PUBLISH the same `Bytes`.

use std::sync::Arc;
use std::time::Instant;

use ahash::AHashMap;
use bytestring::ByteString;

use super::session::{Delivery, Inflight, Matched, Outgoing, SubEntry};
use super::{Broker, ConnId, HandlerId, SessionId, SharedMessage, StreamId, SubKey};
use crate::codec::{Properties, Publish, PublishRef, QoS};

/// Reused buffers, so routing a message does not allocate in the steady state.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    direct: AHashMap<(SessionId, StreamId), Matched>,
    shared: Vec<(ByteString, ByteString, SessionId, SubEntry)>,
    apps: Vec<HandlerId>,
}

impl Broker {
    /// Stores (or clears) the retained message and routes `msg` to every subscriber. Returns how
    /// many subscribers (sessions, shared groups, in-process handlers) it reached.
    pub(super) fn publish_message(
        &mut self,
        msg: SharedMessage,
        publisher: Option<SessionId>,
        now: Instant,
    ) -> usize {
        self.publish_message_acked(msg, publisher, None, now)
    }

    /// [`Broker::publish_message`] for a client's QoS 1/2 PUBLISH whose acknowledgement waits
    /// for the cluster (`ack`, cluster.rs).
    pub(super) fn publish_message_acked(
        &mut self,
        msg: SharedMessage,
        publisher: Option<SessionId>,
        ack: Option<super::ClusterAck>,
        now: Instant,
    ) -> usize {
        if msg.retain && self.settings.session.retain_available {
            self.retain(&msg, true);
        }
        self.cluster_forward(&msg, ack);
        if self.routed_by_stream(&msg) {
            // In a cluster the stream brings it back, to this node's subscribers too, in the
            // one order every node sees (cluster.rs): how many it reaches is not known here.
            return 1;
        }
        self.route(msg, publisher, now)
    }

    /// Stores or clears the retained message of its topic, within `max_retained_messages` and
    /// `max_retained_bytes`: a message that does not fit is not stored, and the topic's older
    /// retained message is removed too (a new subscriber must never get a stale value).
    /// `share`: a change made on this node, which the other nodes of a cluster must learn.
    pub(super) fn retain(&mut self, msg: &SharedMessage, share: bool) {
        if share {
            self.cluster_forward_retain(&msg.topic, (!msg.payload.is_empty()).then_some(msg));
        }
        let old = self.retained.remove(&msg.topic);
        if let Some(old) = &old {
            self.retained_bytes -= retained_size(old);
        }
        // [MQTT-3.3.1-6] [MQTT-3.3.1-7]: an empty retained message clears the topic.
        if msg.payload.is_empty() {
            self.persist.retained_changed(&msg.topic, None);
            return;
        }
        let limits = &self.settings.limits;
        let size = retained_size(msg);
        if self.retained.len() >= limits.max_retained_messages
            || self.retained_bytes + size > limits.max_retained_bytes
        {
            self.metrics.retained_refused += 1;
            tracing::debug!(topic = %msg.topic, "retained store full, message not retained");
            if old.is_some() {
                self.persist.retained_changed(&msg.topic, None);
            }
            return;
        }
        // [MQTT-3.3.1-5]
        self.retained.insert(&msg.topic, msg.clone());
        self.retained_bytes += size;
        // `$SYS` describes this run only (sys.rs): kept in memory, never stored.
        if !msg.topic.starts_with(super::SYS_PREFIX) {
            self.persist.retained_changed(&msg.topic, Some(msg));
        }
    }

    pub(super) fn route(
        &mut self,
        msg: SharedMessage,
        publisher: Option<SessionId>,
        now: Instant,
    ) -> usize {
        // (Taken out of an Option: `mem::take` would build a new hash map, and with it a
        // random hash state, for every message.)
        let mut scratch = self.scratch.take().unwrap_or_default();
        scratch.direct.clear();
        scratch.shared.clear();
        scratch.apps.clear();
        // In a cluster, NATS gives each message to one member of a group (cluster_shared.rs).
        let shared_here = !self.shared_by_cluster(&msg.topic);
        self.subscriptions
            .for_each_match(&msg.topic, |filter, key: &SubKey, entry| match &key.group {
                None => {
                    // [MQTT-3.8.3-3] No Local: not to the publisher's own subscription.
                    if entry.options.no_local && Some(key.session) == publisher {
                        return;
                    }
                    scratch
                        .direct
                        .entry((key.session, key.stream))
                        .or_insert_with(|| Matched::new(filter, entry))
                        .add(entry);
                }
                Some(_) if !shared_here => {}
                Some(group) => {
                    scratch
                        .shared
                        .push((group.clone(), filter.clone(), key.session, entry.clone()))
                }
            });
        self.app_subscriptions
            .for_each_match(&msg.topic, |_, handler, _| scratch.apps.push(*handler));

        let mut reached = scratch.direct.len() + scratch.apps.len();
        for ((sid, _), acc) in scratch.direct.drain() {
            // ACL: a subscription may match topics its client may not read (access.rs).
            if !self.may_read(sid, &msg.topic) {
                self.metrics.acl_denied += 1;
                self.metrics.dropped_acl += 1;
                reached -= 1;
                continue;
            }
            if acc.qos(&msg) == QoS::AtMostOnce {
                self.deliver_at_most_once(sid, acc.outgoing(&msg), publisher, now);
            } else {
                self.deliver(sid, acc.into_delivery(&msg), publisher, now);
            }
        }
        scratch
            .shared
            .sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut rest = &scratch.shared[..];
        while let Some(first) = rest.first() {
            let n = rest
                .iter()
                .take_while(|e| e.0 == first.0 && e.1 == first.1)
                .count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let first_filter = first.1.clone();
            // ACL: only members that may read the topic take part in the round robin.
            let mut readers = Vec::new();
            let group = if self.acl.is_some() {
                for member in group {
                    if self.may_read(member.2, &msg.topic) {
                        readers.push(member.clone());
                    }
                }
                if readers.is_empty() {
                    self.metrics.acl_denied += 1;
                    self.metrics.dropped_acl += 1;
                    continue;
                }
                &readers[..]
            } else {
                group
            };
            if let Some((sid, entry)) = self.pick_shared(group) {
                reached += 1;
                let delivery = Delivery {
                    msg: msg.clone(),
                    qos: msg.qos.min(entry.options.qos),
                    retain: msg.retain && entry.options.retain_as_published,
                    sub_ids: entry.id.into_iter().collect(),
                    stream: entry.stream,
                    datagram: entry.datagram,
                    flow: Some(first_filter),
                    priority: entry.priority,
                    seq: 0,
                };
                self.deliver(sid, delivery, publisher, now);
            }
        }
        for handler in scratch.apps.drain(..) {
            self.out.app(handler, msg.clone());
        }
        self.scratch = Some(scratch);
        if reached == 0 && !msg.topic.starts_with(super::SYS_PREFIX) {
            self.metrics.dropped_no_subscribers += 1;
        }
        reached
    }

    /// Round robin over the group's members with a connection; offline members only when none
    /// is online (their session queues the message).
    fn pick_shared(
        &mut self,
        members: &[(ByteString, ByteString, SessionId, SubEntry)],
    ) -> Option<(SessionId, SubEntry)> {
        let (group, filter) = members.first().map(|m| (&m.0, &m.1))?;
        let online: Vec<usize> = (0..members.len())
            .filter(|&i| {
                members
                    .get(i)
                    .and_then(|m| self.sessions.get(&m.2))
                    .is_some_and(|s| s.conn.is_some())
            })
            .collect();
        let cursor = self
            .shared_cursor
            .entry((group.clone(), filter.clone()))
            .or_insert(0);
        *cursor = cursor.wrapping_add(1);
        let index = match online.len() {
            0 => *cursor % members.len(),
            n => online.get(*cursor % n).copied().unwrap_or_default(),
        };
        members.get(index).map(|m| (m.2, m.3.clone()))
    }

    /// Hands one delivery to a session: straight to its connection when the QoS window and the
    /// outbound buffer allow, else into the session queue (QoS 1/2) or dropped (QoS 0).
    /// Returns the delivery's `seq` (0: not delivered, no such session or already replayed).
    pub(super) fn deliver(
        &mut self,
        sid: SessionId,
        mut delivery: Delivery,
        publisher: Option<SessionId>,
        now: Instant,
    ) -> u64 {
        if delivery.qos == QoS::AtMostOnce {
            return self.deliver_at_most_once(sid, delivery.outgoing(), publisher, now);
        }
        let Some(session) = self.sessions.get_mut(&sid) else {
            return 0;
        };
        if session.replayed(&delivery.msg) {
            return 0;
        }
        delivery.seq = self.persist.next_seq();
        let seq = delivery.seq;
        let conn = session
            .conn
            .and_then(|c| self.conns.get(&c).map(|state| (c, state)));
        let Some((conn, c)) = conn else {
            // Offline: QoS 1/2 wait in the session [MQTT-3.1.2-5].
            self.enqueue(sid, delivery);
            return seq;
        };
        let slow = self.budget.is_behind(c.unwritten);
        let window_open = session.inflight.len() < c.send_window;
        let queue_empty = session.queue.is_empty();
        if slow {
            self.hold_publisher(publisher, conn, now);
        }
        if queue_empty && window_open && !slow {
            if let Err(delivery) = self.start_flow(sid, conn, delivery, now) {
                self.enqueue(sid, delivery);
            }
            return seq;
        }
        self.enqueue(sid, delivery);
        // A window that stays full backs the queue up while the connection keeps up: past
        // the queue's high mark the publisher is paused as well (budget.rs), so the queue
        // does not overflow and drop what it holds.
        if !slow {
            let backed_up = self
                .sessions
                .get(&sid)
                .zip(self.conns.get(&conn))
                .is_some_and(|(s, c)| {
                    self.queue_budget
                        .backed_up(s.queue.len(), s.queued_bytes, c.send_window)
                });
            if backed_up {
                self.hold_publisher(publisher, conn, now);
            }
        }
        seq
    }

    /// [`Broker::deliver`] for QoS 0, borrowed (route.rs calls it with a subscriber's fold of
    /// the message, which never becomes a `Delivery`): sent at once or dropped, never queued;
    /// an offline session does not keep it [MQTT-3.1.2-5].
    fn deliver_at_most_once(
        &mut self,
        sid: SessionId,
        delivery: Outgoing<'_>,
        publisher: Option<SessionId>,
        now: Instant,
    ) -> u64 {
        let Some(session) = self.sessions.get(&sid) else {
            return 0;
        };
        if session.replayed(delivery.msg) {
            return 0;
        }
        let seq = self.persist.next_seq();
        let Some(conn) = session.conn else {
            return seq;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return seq;
        };
        // The output budget (budget.rs): behind, a connection still takes QoS 0 while it holds
        // the publisher back (throttle.rs); full, or once it is stuck, QoS 0 to it is dropped.
        let standing = self.budget.standing(c.unwritten);
        if standing < super::budget::Standing::Behind {
            // The common case, with the connection at hand (no second lookup).
            let mut wire = Wire {
                out: &mut self.out,
                metrics: &mut self.metrics,
                latency: &mut self.latency_memo,
            };
            wire.publish(conn, c, delivery, None, false, now);
            return seq;
        }
        let over_hard_limit = standing >= super::budget::Standing::Full;
        let holds = self.hold_publisher(publisher, conn, now);
        if !holds || over_hard_limit {
            self.metrics.dropped_qos0 += 1;
        } else {
            self.transmit_publish(sid, conn, delivery, None, false, now);
        }
        seq
    }

    /// Appends to the session queue. The queue only ever holds QoS 1/2 (QoS 0 is dropped before
    /// it would wait); when it is full the oldest queued message is dropped and counted, so a
    /// subscriber that comes back gets the most recent data.
    fn enqueue(&mut self, sid: SessionId, delivery: Delivery) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let limits = &self.settings.limits;
        let size = delivery.size();
        if size > limits.max_queued_bytes {
            // Larger than the whole queue may hold: dropping everything else would not help.
            self.metrics.dropped_queue_full += 1;
            tracing::debug!(client = %session.client_id, size, "message larger than max_queued_bytes not queued");
            return;
        }
        while session.queue.len() >= limits.max_queued_messages
            || session.queued_bytes + size > limits.max_queued_bytes
        {
            if session.pop_queued().is_none() {
                break;
            }
            self.metrics.dropped_queue_full += 1;
            tracing::debug!(client = %session.client_id, "session queue full, oldest message dropped");
        }
        session.push_queued(delivery);
    }

    /// Moves queued messages to the connection while the window and buffer allow; then lets
    /// the publishers the connection holds go on if it has caught up.
    pub(super) fn pump_queue(&mut self, sid: SessionId, now: Instant) {
        loop {
            let Some(session) = self.sessions.get_mut(&sid) else {
                return;
            };
            let Some(conn) = session.conn else { return };
            let Some(c) = self.conns.get(&conn) else {
                return;
            };
            if self.budget.is_behind(c.unwritten) {
                return;
            }
            if session.queue.is_empty() || session.inflight.len() >= c.send_window {
                self.release_if_drained(sid, conn);
                return;
            }
            let Some(delivery) = session.pop_queued() else {
                return;
            };
            if delivery.qos == QoS::AtMostOnce {
                self.transmit_publish(sid, conn, delivery.outgoing(), None, false, now);
            } else if let Err(delivery) = self.start_flow(sid, conn, delivery, now) {
                if let Some(session) = self.sessions.get_mut(&sid) {
                    session.unpop_queued(delivery);
                }
                return;
            }
        }
    }

    /// Builds the PUBLISH for one connection (expiry, subscription identifiers, topic alias)
    /// and queues it. A message that expired or exceeds the client's Maximum Packet Size is
    /// dropped as if delivered [MQTT-3.3.2-5] [MQTT-3.1.2-25] (its inflight entry, if any,
    /// goes too). Returns whether it was sent.
    pub(super) fn transmit_publish(
        &mut self,
        sid: SessionId,
        conn: ConnId,
        delivery: Outgoing<'_>,
        packet_id: Option<u16>,
        dup: bool,
        now: Instant,
    ) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let mut wire = Wire {
            out: &mut self.out,
            metrics: &mut self.metrics,
            latency: &mut self.latency_memo,
        };
        let sent = wire.publish(conn, c, delivery, packet_id, dup, now);
        if !sent {
            if let (Some(id), Some(s)) = (packet_id, self.sessions.get_mut(&sid)) {
                s.inflight.remove(&id);
            }
        }
        sent
    }

    /// Starts a QoS 1/2 flow: the delivery moves into the session's inflight table under a
    /// new packet identifier and is sent from there (no copy of it). `None` when every
    /// identifier is in use; the delivery is handed back.
    fn start_flow(
        &mut self,
        sid: SessionId,
        conn: ConnId,
        delivery: Delivery,
        now: Instant,
    ) -> Result<(), Delivery> {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return Ok(());
        };
        let Some(id) = session.allocate_packet_id() else {
            return Err(delivery);
        };
        let Some(Inflight::Published(delivery)) = session
            .inflight
            .insert_new(id, Inflight::Published(delivery))
        else {
            return Ok(());
        };
        let sent = match self.conns.get_mut(&conn) {
            Some(c) => {
                let mut wire = Wire {
                    out: &mut self.out,
                    metrics: &mut self.metrics,
                    latency: &mut self.latency_memo,
                };
                wire.publish(conn, c, delivery.outgoing(), Some(id), false, now)
            }
            None => false,
        };
        if !sent {
            session.inflight.remove(&id);
        }
        Ok(())
    }
}

/// What turning a delivery into a PUBLISH touches, borrowed apart from the sessions so that
/// the delivery can stay in its session's inflight table meanwhile.
struct Wire<'a> {
    out: &'a mut super::output::OutputQueue,
    metrics: &'a mut super::Metrics,
    latency: &'a mut super::metrics::LatencyMemo,
}

impl Wire<'_> {
    /// See [`Broker::transmit_publish`]; the caller handles the inflight entry of a delivery
    /// that was dropped (returns false).
    fn publish(
        &mut self,
        conn: ConnId,
        c: &mut super::connection::Connection,
        delivery: Outgoing<'_>,
        packet_id: Option<u16>,
        dup: bool,
        now: Instant,
    ) -> bool {
        let msg = delivery.msg;
        let remaining = msg.remaining_expiry(now);
        let version = c.version;
        // 5.0: the message's forwarded properties, with what is particular to this delivery
        // (a copy only when there is something to add; 3.x writes no properties at all).
        let mut own: Option<Properties> = None;
        if version.is_v5() && (remaining.is_some() || !delivery.sub_ids.is_empty()) {
            let mut p = msg.properties.clone();
            // [MQTT-3.3.2-6] the remaining lifetime, not the original interval.
            if remaining.is_some() {
                p.message_expiry_interval = remaining;
            }
            if !delivery.sub_ids.is_empty() {
                p.subscription_identifiers = delivery.sub_ids.to_vec();
            }
            own = Some(p);
        }
        let mut publish = PublishRef {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: msg.topic.as_bytes(),
            packet_id,
            properties: own.as_ref().unwrap_or(&msg.properties),
            topic_alias: None,
            payload: &msg.payload,
        };
        let mut len = publish.encoded_len(version);
        if remaining == Some(0) {
            self.metrics.dropped_expired += 1;
            return false;
        }
        if len > c.max_packet_size_out as usize {
            self.metrics.dropped_too_large += 1;
            return false;
        }
        // QoS 0 goes in a datagram when the client asked and it fits; never with a topic alias
        // (datagrams are unordered: an alias could arrive before the packet establishing it).
        let datagram = delivery.qos == QoS::AtMostOnce
            && (c.datagrams_out || delivery.datagram)
            && c.datagram_max.is_some_and(|max| len <= max);
        let stream = if datagram {
            self.metrics.datagrams_sent += 1;
            StreamId::DATAGRAM
        } else {
            let stream = c.route_stream(delivery.stream);
            // Topic-to-stream mapping: deliveries of control-stream subscriptions go on
            // server streams when the client asked (data-stream bindings take precedence).
            let key = match c.flows.mapping {
                _ if stream != StreamId::CONTROL => None,
                super::server_flows::StreamMapping::Off => None,
                super::server_flows::StreamMapping::PerSubscription => delivery.flow.cloned(),
                super::server_flows::StreamMapping::PerTopic => Some(msg.topic.clone()),
            };
            match key {
                Some(key) => {
                    let (stream, opened) = c.flows.stream_for(key, delivery.priority, now);
                    for event in opened {
                        self.out.server_flow(conn, event);
                    }
                    stream
                }
                None => stream,
            }
        };
        // Topic aliases only on the control stream: an alias established on one stream could
        // be used on another before it arrives.
        if stream == StreamId::CONTROL && c.topic_alias_max_out > 0 {
            if let Some((alias, known)) = assign_alias(c, &msg.topic) {
                publish.topic_alias = Some(alias);
                if known {
                    publish.topic = b"";
                }
                len = publish.encoded_len(version);
            }
        }
        self.metrics.messages_sent += 1;
        if let Some(at) = msg.received_at {
            let us = self.latency.micros(at, now);
            self.metrics.delivery_latency.observe_us(us);
        }
        c.unwritten += len;
        self.out
            .publish(conn, stream, version, &publish, len, c.transmit_hint);
        true
    }
}

/// Topic alias toward the client (3.3.2.3.4): reuse an alias for a topic sent before, or
/// establish a new one while the client's maximum allows [MQTT-3.3.2-8]. Aliases are never
/// remapped, so a packet in flight can never be misread. Returns the alias and whether it was
/// known before (then the topic is left out).
fn assign_alias(c: &mut super::connection::Connection, topic: &ByteString) -> Option<(u16, bool)> {
    if let Some(&alias) = c.aliases_out.get(topic) {
        Some((alias, true))
    } else if c.aliases_out.len() < usize::from(c.topic_alias_max_out) {
        let alias = c.aliases_out.len() as u16 + 1;
        c.aliases_out.insert(topic.clone(), alias);
        Some((alias, false))
    } else {
        None
    }
}

/// What a retained message counts against `max_retained_bytes`: payload, topic, and a
/// per-level estimate of the store's trie nodes.
pub(super) fn retained_size(msg: &super::Message) -> usize {
    msg.payload.len() + msg.topic.len() + 64 * super::limits::levels(&msg.topic)
}

/// Messages up to this size (topic and payload) get their own allocation when accepted.
const DETACH_LIMIT: usize = 4096;

/// A small message's topic and payload are slices of the connection's read buffer, shared
/// with every packet read along with it. Copied out once (one allocation), the message no
/// longer pins that buffer while it waits in queues or the retained store, and its reference
/// count, touched once per delivery and once per written copy, is no longer the one the
/// reader bumps for every packet it splits off (a contended cache line on another core).
/// Larger payloads stay shared, never copied.
fn detach(topic: ByteString, payload: bytes::Bytes) -> (ByteString, bytes::Bytes) {
    if topic.len() + payload.len() > DETACH_LIMIT {
        return (topic, payload);
    }
    let mut buf = bytes::BytesMut::with_capacity(topic.len() + payload.len());
    buf.extend_from_slice(topic.as_bytes());
    buf.extend_from_slice(&payload);
    let payload = buf.split_off(topic.len()).freeze();
    match ByteString::try_from(buf.freeze()) {
        Ok(copy) => (copy, payload),
        // Cannot happen (the bytes came from a ByteString); keep the original then.
        Err(_) => (topic, payload),
    }
}

/// Creates the shared message for a PUBLISH received from a client.
pub(super) fn message_from(
    p: Publish,
    topic: ByteString,
    origin: ByteString,
    now: Instant,
) -> SharedMessage {
    // `forwardable` drops the expiry interval; `expires_at` keeps it.
    let properties = p.properties;
    let expires_at = properties
        .message_expiry_interval
        .map(|s| now + std::time::Duration::from_secs(u64::from(s)));
    let (topic, payload) = detach(topic, p.payload);
    Arc::new(super::Message {
        topic,
        payload,
        qos: p.qos,
        retain: p.retain,
        properties: super::connect::forwardable(properties),
        expires_at,
        origin: Some(origin),
        received_at: Some(now),
        cluster_seq: None,
    })
}
