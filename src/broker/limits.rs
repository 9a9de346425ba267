//! Limits against abuse that span connections: how many connections the broker admits
//! (globally and per IP address), how many sessions it keeps, how deep topics may be, and the
//! counters of what the transports refuse on their own (QUIC stream opens and datagrams over
//! their rate, connections whose unwritten output grows without bound).
//!
//! A refused connection is kept only to answer its CONNECT with CONNACK 0x97 (Quota exceeded),
//! or 0x9F (Connection rate exceeded) past `limits.max_connection_rate_per_address`, within the
//! CONNECT timeout; at most [`MAX_REFUSED_PENDING`] such connections wait at once,
//! beyond that they are closed at once without an answer, so a flood costs bounded memory.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::{Broker, ConnId};
use crate::codec::ReasonCode;

/// Refused connections kept at once to answer their CONNECT with CONNACK 0x97.
pub const MAX_REFUSED_PENDING: usize = 1024;

/// The IP address in a transport's peer label (`tcp:1.2.3.4:5`, `quic:[::1]:5`).
pub(super) fn peer_ip(peer: &str) -> Option<IpAddr> {
    let (_, addr) = peer.split_once(':')?;
    addr.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// Levels of a topic name or filter (`a/b/c` has 3).
pub(super) fn levels(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count() + 1
}

impl Broker {
    /// Whether a new connection from `ip` fits the connection limits; `Err` is the CONNACK code.
    /// An attempt within the address's connection rate takes a token even when a quota then
    /// refuses it; one over the rate takes none.
    pub(super) fn admit(&mut self, ip: Option<IpAddr>, now: Instant) -> Result<(), ReasonCode> {
        if let Some(ip) = ip {
            if !self.connect_rates.allow(ip, now) {
                self.metrics.connections_rate_limited += 1;
                return Err(ReasonCode::CONNECTION_RATE_EXCEEDED);
            }
        }
        let limits = &self.settings.limits;
        let admitted = self.conns.len() - self.refused_pending;
        if admitted >= limits.max_connections {
            return Err(ReasonCode::QUOTA_EXCEEDED);
        }
        let per_address = limits.max_connections_per_address;
        if let Some(ip) = ip {
            if per_address != 0 && self.per_address.get(&ip).copied().unwrap_or(0) >= per_address {
                return Err(ReasonCode::QUOTA_EXCEEDED);
            }
        }
        Ok(())
    }

    /// Releases what a connection counted against the limits (it is being forgotten).
    pub(super) fn release(&mut self, c: &super::connection::Connection) {
        if c.refused.is_some() {
            self.refused_pending -= 1;
        }
        if let Some(ip) = c.counted_ip {
            if let Some(n) = self.per_address.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_address.remove(&ip);
                }
            }
        }
    }

    /// True when a topic name or filter has more levels than `limits.max_topic_levels`.
    pub(super) fn too_deep(&self, topic: &str) -> bool {
        levels(topic) > self.settings.limits.max_topic_levels
    }

    /// QUIC: the transport refused a stream of `conn` (over `quic_stream_opens_per_sec`).
    pub fn quic_stream_refused(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get(&conn) {
            tracing::debug!(conn = conn.0, peer = %c.peer, "QUIC stream refused: opened too fast");
        }
        self.metrics.streams_refused += 1;
    }

    /// QUIC: the transport dropped `count` datagrams of `conn` (over `quic_datagrams_per_sec`).
    pub fn datagrams_rate_limited(&mut self, conn: ConnId, count: u64) {
        if let Some(c) = self.conns.get(&conn) {
            tracing::debug!(conn = conn.0, peer = %c.peer, count, "datagrams dropped: sent too fast");
        }
        self.metrics.datagrams_rate_limited += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_labels_give_their_ip() {
        assert_eq!(
            peer_ip("tcp:10.0.0.1:1883"),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(peer_ip("quic:[::1]:5000"), Some("::1".parse().unwrap()));
        assert_eq!(
            peer_ip("mqtts:[fe80::1]:1"),
            Some("fe80::1".parse().unwrap())
        );
        assert_eq!(peer_ip("test:1"), None);
        assert_eq!(peer_ip("in-process"), None);
        assert_eq!(levels("a"), 1);
        assert_eq!(levels("a/b/"), 3);
        assert_eq!(levels("/"), 2);
    }
}
