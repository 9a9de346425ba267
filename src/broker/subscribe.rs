//! SUBSCRIBE and UNSUBSCRIBE (3.8 to 3.11), retained messages on subscribe, and the embedding
//! API's in-process subscriptions.

use std::time::Instant;

use bytestring::ByteString;

use super::connect::cap_qos;
use super::session::{Delivery, SubEntry};
use super::{Broker, ConnId, HandlerId, Message, SessionId, SharedMessage, StreamId, SubKey};
use crate::codec::{
    Packet, QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use crate::topic;

impl Broker {
    pub(super) fn handle_subscribe(
        &mut self,
        conn: ConnId,
        stream: StreamId,
        s: Subscribe,
        now: Instant,
    ) {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.session) else {
            return;
        };
        // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
        let shared_no_local = s
            .filters
            .iter()
            .any(|(f, o)| o.no_local && matches!(topic::parse_shared(f), Some(Ok(_))));
        if shared_no_local || s.properties.subscription_identifiers.len() > 1 {
            self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now);
            return;
        }
        // [MQTT-4.8.2-1] [MQTT-4.8.2-2] a malformed `$share/` filter is a protocol error, not
        // a refused subscription.
        if s.filters
            .iter()
            .any(|(f, _)| matches!(topic::parse_shared(f), Some(Err(()))))
        {
            self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, now);
            return;
        }
        let sub_id = s.properties.subscription_identifiers.first().copied();
        let datagram = super::datagram::wants_datagrams(&s.properties);
        let priority = super::server_flows::priority(&s.properties);
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        for (filter, options) in s.filters {
            codes.push(self.subscribe_one(
                sid,
                stream,
                filter,
                options,
                sub_id,
                (datagram, priority),
                &mut retained,
            ));
        }
        // [MQTT-3.8.4-1] SUBACK, then the retained messages [MQTT-3.3.1-9].
        let suback = SubAck {
            packet_id: s.packet_id,
            properties: Default::default(),
            codes,
        };
        self.send(conn, stream, Packet::SubAck(suback));
        for delivery in retained {
            self.deliver(sid, delivery, None, now);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn subscribe_one(
        &mut self,
        sid: SessionId,
        stream: StreamId,
        filter: ByteString,
        options: SubscriptionOptions,
        sub_id: Option<u32>,
        (datagram, priority): (bool, i32),
        retained: &mut Vec<Delivery>,
    ) -> ReasonCode {
        if !topic::is_valid_filter(&filter) || self.too_deep(&filter) {
            return ReasonCode::TOPIC_FILTER_INVALID;
        }
        let (trie_filter, is_shared) = match topic::parse_shared(&filter) {
            Some(Ok(shared)) => (shared.filter.to_owned(), true),
            Some(Err(())) => return ReasonCode::TOPIC_FILTER_INVALID,
            None => (filter.to_string(), false),
        };
        // ACL: read access covering the whole filter (SUBACK 0x87; 3.1.1 encodes 0x80).
        let rules = self.session_rules(sid);
        if rules
            .as_ref()
            .is_some_and(|r| !r.may_subscribe(&trie_filter))
        {
            self.metrics.acl_denied += 1;
            tracing::debug!(session = sid.0, %filter, "SUBSCRIBE not authorized");
            return ReasonCode::NOT_AUTHORIZED;
        }
        let granted = cap_qos(options.qos, self.settings.session.max_qos);
        let entry = SubEntry {
            options: SubscriptionOptions {
                qos: granted,
                ..options
            },
            id: sub_id,
            stream,
            datagram,
            priority,
        };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return ReasonCode::UNSPECIFIED_ERROR;
        };
        // A new subscription beyond `max_subscriptions` is refused; replacing one is not.
        if session.subscriptions.len() >= self.settings.limits.max_subscriptions
            && !session
                .subscriptions
                .contains_key(&(filter.clone(), stream))
        {
            self.metrics.subscriptions_refused += 1;
            return ReasonCode::QUOTA_EXCEEDED;
        }
        // [MQTT-3.8.4-3] a subscription to an existing filter replaces it.
        let existed = session
            .subscriptions
            .insert((filter.clone(), stream), entry.clone())
            .is_some();
        self.insert_into_trie(sid, &filter, entry);

        // Retain Handling (3.8.3.1): 0 always, 1 only for a new subscription, 2 never. Shared
        // subscriptions get no retained messages [MQTT-3.8.4-...] (4.8.2).
        let send_retained = !is_shared
            && self.settings.session.retain_available
            && (options.retain_handling == 0 || (options.retain_handling == 1 && !existed));
        if send_retained {
            let mut denied = 0;
            self.retained
                .for_each_match(&trie_filter, |topic, msg: &SharedMessage| {
                    // Never a retained message the subscriber may not read.
                    if rules.as_ref().is_some_and(|r| !r.may_read(topic)) {
                        denied += 1;
                        return true;
                    }
                    retained.push(Delivery {
                        msg: msg.clone(),
                        qos: msg.qos.min(granted),
                        // [MQTT-3.3.1-8] retained messages sent on subscribe keep RETAIN = 1.
                        retain: true,
                        sub_ids: sub_id.into_iter().collect(),
                        stream,
                        datagram,
                        flow: Some(filter.clone()),
                        priority,
                        seq: 0,
                    });
                    true
                });
            self.metrics.acl_denied += denied;
        }
        ReasonCode(granted as u8)
    }

    pub(super) fn handle_unsubscribe(
        &mut self,
        conn: ConnId,
        stream: StreamId,
        u: Unsubscribe,
        _now: Instant,
    ) {
        let Some(sid) = self.conns.get(&conn).and_then(|c| c.session) else {
            return;
        };
        let mut codes = Vec::with_capacity(u.filters.len());
        for filter in &u.filters {
            // On QUIC only the stream that made a subscription can remove it (0x11 elsewhere).
            let removed = self
                .sessions
                .get_mut(&sid)
                .and_then(|s| s.subscriptions.remove(&(filter.clone(), stream)));
            let code = if removed.is_some() {
                self.remove_from_trie(sid, filter, stream);
                ReasonCode::SUCCESS
            } else if topic::is_valid_filter(filter) {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            } else {
                ReasonCode::TOPIC_FILTER_INVALID
            };
            codes.push(code);
        }
        // [MQTT-3.10.4-4] UNSUBACK even when nothing was removed.
        let unsuback = UnsubAck {
            packet_id: u.packet_id,
            properties: Default::default(),
            codes,
        };
        self.send(conn, stream, Packet::UnsubAck(unsuback));
    }

    /// Adds a session's subscription (keyed by `entry.stream`) to the trie.
    pub(super) fn insert_into_trie(&mut self, sid: SessionId, filter: &str, entry: SubEntry) {
        let (trie_filter, group) = match topic::parse_shared(filter) {
            Some(Ok(shared)) => (shared.filter, Some(ByteString::from(shared.group))),
            _ => (filter, None),
        };
        let stream = entry.stream;
        let key = SubKey {
            session: sid,
            group: group.clone(),
            stream,
        };
        self.subscriptions.insert(trie_filter, key, entry);
        if let Some(group) = &group {
            self.cluster_shared_added(sid, group, trie_filter, stream);
        }
    }

    pub(super) fn remove_from_trie(&mut self, sid: SessionId, filter: &str, stream: StreamId) {
        let (trie_filter, group) = match topic::parse_shared(filter) {
            Some(Ok(shared)) => (shared.filter, Some(ByteString::from(shared.group))),
            _ => (filter, None),
        };
        self.subscriptions.remove(
            trie_filter,
            &SubKey {
                session: sid,
                group: group.clone(),
                stream,
            },
        );
        if let Some(group) = &group {
            self.cluster_shared_removed(sid, group, trie_filter, stream);
        }
    }

    /// Registers an in-process handler for `filter` (embedding API). Retained messages that
    /// match are handed to it at once, like to a new subscriber.
    pub fn app_subscribe(
        &mut self,
        handler: HandlerId,
        filter: &str,
        qos: QoS,
    ) -> Result<(), ReasonCode> {
        if !topic::is_valid_filter(filter)
            || topic::parse_shared(filter).is_some()
            || self.too_deep(filter)
        {
            return Err(ReasonCode::TOPIC_FILTER_INVALID);
        }
        self.app_subscriptions.insert(filter, handler, qos);
        let mut retained = Vec::new();
        self.retained
            .for_each_match(filter, |_, msg: &SharedMessage| {
                retained.push(msg.clone());
                true
            });
        for msg in retained {
            self.out.app(handler, msg);
        }
        Ok(())
    }

    pub fn app_unsubscribe(&mut self, handler: HandlerId, filter: &str) {
        self.app_subscriptions.remove(filter, &handler);
    }

    /// Publishes a message from the embedding application. Returns how many subscribers it
    /// reached.
    pub fn app_publish(&mut self, message: Message, now: Instant) -> Result<usize, ReasonCode> {
        if !topic::is_valid_topic_name(&message.topic) || self.too_deep(&message.topic) {
            return Err(ReasonCode::TOPIC_NAME_INVALID);
        }
        let reached = self.publish_message(std::sync::Arc::new(message), None, now);
        self.reap(now);
        Ok(reached)
    }
}
