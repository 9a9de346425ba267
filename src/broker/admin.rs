//! What the admin API (`src/admin`, `/api/v1`) asks of the broker: sessions and their
//! subscriptions, kicking a client, subscribing on its behalf, topics, retained messages.
//!
//! Queries run on the broker task like any other event (the glue sends a closure with a
//! oneshot reply), so they read the state without a lock and act through the same code paths
//! as packets do: a kick is a server DISCONNECT, a subscription made here is the one SUBSCRIBE
//! would make, with the same ACL, limits and retained deliveries.

use std::time::Instant;

use bytestring::ByteString;

use super::session::{Delivery, Session};
use super::{Broker, ConnId, SessionId, SharedMessage, StreamId};
use crate::codec::{QoS, ReasonCode, SubscriptionOptions};
use crate::topic;

/// A session as the admin API shows it (connected or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub client_id: String,
    pub username: Option<String>,
    pub connected: bool,
    /// The connection, while connected.
    pub conn: Option<ConnId>,
    /// The peer address (`IP:PORT`) and transport (`tcp`, `quic`, `mqtts`), while connected.
    pub peer: Option<String>,
    pub transport: Option<String>,
    /// MQTT protocol level: 4 (3.1.1) or 5.
    pub protocol_level: u8,
    pub keep_alive_secs: u64,
    /// Seconds since the connection opened, while connected.
    pub connected_secs: Option<u64>,
    /// Session Expiry Interval in force (u32::MAX: never).
    pub expiry_secs: u32,
    pub subscriptions: usize,
    pub inflight: usize,
    pub queued: usize,
    pub queued_bytes: usize,
    /// QUIC: data streams open besides the control stream, and datagram deliveries agreed.
    pub data_streams: usize,
    pub datagrams: bool,
    /// Times the connection's client moved to a new address (QUIC migration).
    pub migrations: u64,
}

/// One subscription of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    pub client_id: String,
    /// The filter as subscribed (`$share/group/...` for shared subscriptions).
    pub filter: String,
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    /// The QUIC stream it was made on (0: the control stream).
    pub stream: u64,
}

/// Why an admin request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("no client with id {0:?}")]
    UnknownClient(String),
    #[error("invalid topic filter {0:?}")]
    InvalidFilter(String),
    #[error("invalid topic name {0:?}")]
    InvalidTopic(String),
    #[error("client {0:?} has no subscription {1:?}")]
    NoSubscription(String, String),
    #[error("refused with reason code {0}")]
    Refused(ReasonCode),
}

impl Broker {
    fn session_by_client(&self, client_id: &str) -> Option<(SessionId, &Session)> {
        let sid = *self.client_ids.get(client_id)?;
        Some((sid, self.sessions.get(&sid)?))
    }

    fn session_info(&self, session: &Session, now: Instant) -> SessionInfo {
        let conn = session
            .conn
            .and_then(|id| self.conns.get(&id).map(|c| (id, c)));
        SessionInfo {
            client_id: session.client_id.to_string(),
            username: session.username.as_ref().map(|u| u.to_string()),
            connected: conn.is_some(),
            conn: conn.map(|(id, _)| id),
            peer: conn.map(|(_, c)| {
                c.peer
                    .split_once(':')
                    .map_or(c.peer.clone(), |(_, a)| a.to_string())
            }),
            transport: conn.map(|(_, c)| c.transport().to_string()),
            protocol_level: session.version.level(),
            keep_alive_secs: conn.map_or(0, |(_, c)| c.keep_alive.as_secs()),
            connected_secs: conn.map(|(_, c)| now.saturating_duration_since(c.opened_at).as_secs()),
            expiry_secs: session.expiry_secs,
            subscriptions: session.subscriptions.len(),
            inflight: session.inflight.len(),
            queued: session.queue.len(),
            queued_bytes: session.queued_bytes,
            data_streams: conn.map_or(0, |(_, c)| c.data_streams.len()),
            datagrams: conn.is_some_and(|(_, c)| c.datagrams_out),
            migrations: conn.map_or(0, |(_, c)| u64::from(c.migrations)),
        }
    }

    /// Every session, connected or not, by client id.
    pub fn sessions_info(&self, now: Instant) -> Vec<SessionInfo> {
        let mut list: Vec<SessionInfo> = self
            .sessions
            .iter()
            .map(|(_, s)| self.session_info(s, now))
            .collect();
        list.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        list
    }

    /// One session by client id.
    pub fn session_by_id(&self, client_id: &str, now: Instant) -> Option<SessionInfo> {
        self.session_by_client(client_id)
            .map(|(_, s)| self.session_info(s, now))
    }

    /// Kicks a client out: a connected 5.0 client gets DISCONNECT 0x98 Administrative action
    /// before the close (3.1.1: the close), its will follows the usual rules, and the session
    /// is discarded, so the client id is free.
    pub fn kick(&mut self, client_id: &str, now: Instant) -> Result<(), AdminError> {
        let Some((sid, session)) = self.session_by_client(client_id) else {
            return Err(AdminError::UnknownClient(client_id.into()));
        };
        if let Some(conn) = session.conn {
            tracing::info!(client = %client_id, conn = conn.0, "kicked by the admin API");
            self.close_with(conn, ReasonCode::ADMINISTRATIVE_ACTION, now);
        }
        self.end_session(sid, now);
        self.reap(now);
        Ok(())
    }

    /// The subscriptions of one client, or of every client.
    pub fn subscriptions_info(
        &self,
        client_id: Option<&str>,
    ) -> Result<Vec<SubscriptionInfo>, AdminError> {
        let sessions: Vec<&Session> = match client_id {
            Some(id) => match self.session_by_client(id) {
                Some((_, s)) => vec![s],
                None => return Err(AdminError::UnknownClient(id.into())),
            },
            None => self.sessions.iter().map(|(_, s)| s).collect(),
        };
        let mut list = Vec::new();
        for s in sessions {
            for ((filter, stream), entry) in &s.subscriptions {
                list.push(SubscriptionInfo {
                    client_id: s.client_id.to_string(),
                    filter: filter.to_string(),
                    qos: entry.options.qos as u8,
                    no_local: entry.options.no_local,
                    retain_as_published: entry.options.retain_as_published,
                    retain_handling: entry.options.retain_handling,
                    stream: stream.0,
                });
            }
        }
        list.sort_by(|a, b| (&a.client_id, &a.filter).cmp(&(&b.client_id, &b.filter)));
        Ok(list)
    }

    /// Subscribes a client (connected or not) to `filter` on its control stream, as a
    /// SUBSCRIBE would: same validity rules, ACL, limits, and retained messages. Returns the
    /// granted QoS.
    pub fn admin_subscribe(
        &mut self,
        client_id: &str,
        filter: &str,
        options: SubscriptionOptions,
        now: Instant,
    ) -> Result<QoS, AdminError> {
        let Some((sid, _)) = self.session_by_client(client_id) else {
            return Err(AdminError::UnknownClient(client_id.into()));
        };
        let mut retained: Vec<Delivery> = Vec::new();
        let code = self.subscribe_one(
            sid,
            StreamId::CONTROL,
            ByteString::from(filter),
            options,
            None,
            (false, 0),
            &mut retained,
        );
        let granted = match code.0 {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            _ if code == ReasonCode::TOPIC_FILTER_INVALID => {
                return Err(AdminError::InvalidFilter(filter.into()))
            }
            _ => return Err(AdminError::Refused(code)),
        };
        for delivery in retained {
            self.deliver(sid, delivery, None, now);
        }
        self.reap(now);
        Ok(granted)
    }

    /// Removes one subscription of a client (made on its control stream).
    pub fn admin_unsubscribe(&mut self, client_id: &str, filter: &str) -> Result<(), AdminError> {
        let Some((sid, _)) = self.session_by_client(client_id) else {
            return Err(AdminError::UnknownClient(client_id.into()));
        };
        if !topic::is_valid_filter(filter) {
            return Err(AdminError::InvalidFilter(filter.into()));
        }
        let key = (ByteString::from(filter), StreamId::CONTROL);
        let removed = self
            .sessions
            .get_mut(&sid)
            .and_then(|s| s.subscriptions.remove(&key));
        if removed.is_none() {
            return Err(AdminError::NoSubscription(client_id.into(), filter.into()));
        }
        self.remove_from_trie(sid, filter, StreamId::CONTROL);
        Ok(())
    }

    /// Every subscribed topic filter (shared ones without their `$share/group/` prefix) with
    /// the number of subscriptions to it, by filter.
    pub fn topics(&self) -> Vec<(String, usize)> {
        let mut counts: ahash::AHashMap<&str, usize> = ahash::AHashMap::new();
        for (_, s) in self.sessions.iter() {
            for (filter, _) in s.subscriptions.keys() {
                let plain = match topic::parse_shared(filter) {
                    Some(Ok(shared)) => shared.filter,
                    _ => filter,
                };
                *counts.entry(plain).or_default() += 1;
            }
        }
        let mut list: Vec<(String, usize)> = counts
            .into_iter()
            .map(|(f, n)| (f.to_string(), n))
            .collect();
        list.sort();
        list
    }

    /// The retained messages whose topics match `filter` (`#`: all), by topic.
    pub fn retained_matching(&mut self, filter: &str) -> Result<Vec<SharedMessage>, AdminError> {
        if !topic::is_valid_filter(filter) || topic::parse_shared(filter).is_some() {
            return Err(AdminError::InvalidFilter(filter.into()));
        }
        let mut list = Vec::new();
        self.retained.for_each_match(filter, |_, msg| {
            list.push(msg.clone());
            true
        });
        list.sort_by(|a, b| a.topic.cmp(&b.topic));
        Ok(list)
    }

    /// Removes the retained message of `topic` (nothing is published); `false` if there was
    /// none.
    pub fn delete_retained(&mut self, topic_name: &str) -> Result<bool, AdminError> {
        if !topic::is_valid_topic_name(topic_name) {
            return Err(AdminError::InvalidTopic(topic_name.into()));
        }
        let Some(old) = self.retained.remove(topic_name) else {
            return Ok(false);
        };
        self.retained_bytes -= super::route::retained_size(&old);
        self.persist
            .retained_changed(&ByteString::from(topic_name), None);
        Ok(true)
    }
}
