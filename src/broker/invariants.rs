//! Consistency checks across the broker's indexes, for the fuzz targets and tests: a broken
//! invariant here is a bug however the broker got there.

use super::connection::ConnState;
use super::Broker;

impl Broker {
    /// Checks that connections, sessions, client ids, the subscription trie and the limits
    /// agree; `Err` names the first disagreement.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let limits = &self.settings.limits;
        for (conn, c) in &self.conns {
            if let Some(sid) = c.session {
                let Some(s) = self.sessions.get(&sid) else {
                    return Err(format!("connection {} points at a missing session", conn.0));
                };
                if s.conn != Some(*conn) {
                    return Err(format!(
                        "connection {} has session {} which points at {:?}",
                        conn.0, sid.0, s.conn
                    ));
                }
            } else if matches!(c.state, ConnState::Connected) {
                return Err(format!("connected connection {} without a session", conn.0));
            }
            if c.aliases_in.len() > usize::from(limits.topic_alias_maximum) {
                return Err(format!("connection {}: too many incoming aliases", conn.0));
            }
            if c.aliases_out.len() > usize::from(c.topic_alias_max_out) {
                return Err(format!("connection {}: too many outgoing aliases", conn.0));
            }
        }
        let mut subscriptions = 0;
        for (sid, s) in self.sessions.iter() {
            if let Some(conn) = s.conn {
                match self.conns.get(&conn) {
                    Some(c) if c.session == Some(*sid) => {}
                    _ => {
                        return Err(format!(
                            "session {} points at connection {} which is not its",
                            sid.0, conn.0
                        ))
                    }
                }
            }
            if self.client_ids.get(&s.client_id) != Some(sid) {
                return Err(format!("session {} is not indexed by its client id", sid.0));
            }
            if s.queue.len() > limits.max_queued_messages {
                return Err(format!("session {}: queue over its limit", sid.0));
            }
            let bytes: usize = s.queue.iter().map(|d| d.size()).sum();
            if bytes != s.queued_bytes || bytes > limits.max_queued_bytes {
                return Err(format!(
                    "session {}: {bytes} queued bytes, {} accounted",
                    sid.0, s.queued_bytes
                ));
            }
            if s.incoming_qos2.len() > usize::from(limits.receive_maximum) {
                return Err(format!(
                    "session {}: incoming QoS 2 over Receive Maximum",
                    sid.0
                ));
            }
            if s.subscriptions.len() > limits.max_subscriptions {
                return Err(format!("session {}: subscriptions over the limit", sid.0));
            }
            subscriptions += s.subscriptions.len();
        }
        if self.sessions.len() > limits.max_sessions {
            return Err(format!("{} sessions over the limit", self.sessions.len()));
        }
        let admitted = self.conns.values().filter(|c| c.refused.is_none()).count();
        if admitted > limits.max_connections || self.conns.len() - admitted != self.refused_pending
        {
            return Err(format!(
                "{admitted} admitted connections, {} refused pending",
                self.refused_pending
            ));
        }
        let mut per_address: ahash::AHashMap<std::net::IpAddr, usize> = Default::default();
        for c in self.conns.values() {
            if let Some(ip) = c.counted_ip {
                *per_address.entry(ip).or_default() += 1;
            }
        }
        if per_address != self.per_address {
            return Err("per-address connection counts disagree".into());
        }
        if self.retained.len() > limits.max_retained_messages
            || self.retained_bytes > limits.max_retained_bytes
        {
            return Err(format!(
                "{} retained messages, {} bytes: over the limits",
                self.retained.len(),
                self.retained_bytes
            ));
        }
        if self.client_ids.len() != self.sessions.len() {
            return Err(format!(
                "{} client ids for {} sessions",
                self.client_ids.len(),
                self.sessions.len()
            ));
        }
        if self.subscriptions.len() != subscriptions {
            return Err(format!(
                "the trie holds {} subscriptions, the sessions {}",
                self.subscriptions.len(),
                subscriptions
            ));
        }
        Ok(())
    }
}
