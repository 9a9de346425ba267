//! What the transports learn about a connection besides its packets: the peer moved to a new
//! address (QUIC connection migration), and, for QUIC 0-RTT, that the will of a CONNECT that
//! arrived as early data must wait until the handshake is confirmed
//! (`proto-ext/zero-rtt.md`, `proto-ext/migration.md`).
//!
//! The broker knows nothing of 0-RTT or UDP paths: the glue tells it these facts as events,
//! and this file keeps what they change small and in one place.

use std::time::Instant;

use super::{Broker, ConnId};

/// A connection as `Broker::clients` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub conn: ConnId,
    /// `None` until CONNECT is accepted.
    pub client_id: Option<String>,
    /// The transport's label of the peer (`tcp:ADDR`, `quic:ADDR`, `mqtts:ADDR`), following
    /// migrations.
    pub peer: String,
}

impl Broker {
    /// The peer of `conn` now sends from `peer` (a QUIC connection migrated: NAT rebinding,
    /// a new network). Its session, streams, subscriptions, inflight messages and keep alive
    /// carry on; only the label changes, and the migration is logged and counted.
    pub fn peer_address_changed(&mut self, conn: ConnId, peer: String, _now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.peer == peer {
            return;
        }
        let old = std::mem::replace(&mut c.peer, peer);
        c.migrations = c.migrations.saturating_add(1);
        let client = c
            .session
            .and_then(|sid| self.sessions.get(&sid))
            .map(|s| s.client_id.to_string())
            .unwrap_or_default();
        tracing::info!(conn = conn.0, %client, old = %old, new = %c.peer, "client migrated");
        self.metrics.migrations += 1;
    }

    /// The next CONNECT of `conn` arrives before the handshake is confirmed (QUIC 0-RTT,
    /// `safe` policy): it is checked and answered as usual, but its will is only registered
    /// by [`Broker::handshake_confirmed`]. A connection that never gets there (a replayed or
    /// abandoned handshake) leaves no will behind.
    pub fn hold_will(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.will_on_hold = true;
        }
    }

    /// The handshake of `conn` is confirmed: a will held by [`Broker::hold_will`] now counts.
    pub fn handshake_confirmed(&mut self, conn: ConnId, _now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.will_on_hold = false;
        let (Some(will), Some(sid)) = (c.held_will.take(), c.session) else {
            return;
        };
        if let Some(session) = self.sessions.get_mut(&sid) {
            if session.conn == Some(conn) {
                tracing::debug!(conn = conn.0, client = %session.client_id, "will registered after handshake confirmation");
                session.will = Some(will);
                self.cluster_will_changed(sid);
            }
        }
    }

    /// Every connection with its client id and peer address.
    pub fn clients(&self) -> Vec<ClientInfo> {
        let mut list: Vec<ClientInfo> = self
            .conns
            .iter()
            .map(|(conn, c)| ClientInfo {
                conn: *conn,
                client_id: c
                    .session
                    .and_then(|sid| self.sessions.get(&sid))
                    .map(|s| s.client_id.to_string()),
                peer: c.peer.clone(),
            })
            .collect();
        list.sort_by_key(|c| c.conn);
        list
    }
}
