//! Wills and NATS loss in a cluster (README "Cluster", proto-ext/cluster.md "Liveness"),
//! sans-IO.
//!
//! - Each will in force on this node is handed to the cluster actor
//!   ([`ClusterOutput::Will`]) when it is set (CONNECT, or a QUIC 0-RTT will once the
//!   handshake is confirmed) and when it goes (published here, or discarded by a normal
//!   DISCONNECT), so the other nodes can publish it if this node dies. A will of a client
//!   taken over by another node is not reported: the new owner's record replaces it.
//! - A will of a dead node's client, won by this node ([`LivenessEvent::Will`]), is published
//!   here like any message, so it reaches every node; not when the client is connected to
//!   this node now (it reconnected: no will [MQTT-3.1.3-9]).
//! - When the cluster actor loses NATS ([`LivenessEvent::Link`] down), new connections are
//!   refused with CONNACK 0x88 Server unavailable (3.1.1: 0x03) [MQTT-3.2.2-7]. After the
//!   grace period ([`LivenessEvent::Detach`]) every client is disconnected with 0x9C Use
//!   another server: the client should reconnect, and may reach a node that still has NATS
//!   (0x89 Server busy would tell it to wait for this one). Their wills are not published
//!   here, where no other node would see them: they stay in the cluster's wills bucket, and
//!   the node that wins them publishes them (another node when this one is declared dead,
//!   or this one once NATS is back). Their claims stay too, so no release races that (and a
//!   persistent session stays here, claimed, for its client to come back to).

use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;

use super::{Broker, ClusterOutput, ConnId, Message, SessionId, SharedMessage};
use crate::codec::ReasonCode;

/// A will as the cluster keeps it.
#[derive(Debug, Clone)]
pub struct ClusterWill {
    pub message: SharedMessage,
    /// Seconds between the loss of the connection and the will (the Will Delay Interval,
    /// capped by the Session Expiry Interval) [MQTT-3.1.3-9].
    pub delay_secs: u32,
}

/// What the cluster actor reports about the liveness of the nodes and of its NATS link.
#[derive(Debug)]
pub enum LivenessEvent {
    /// A will of a client of a dead node (or of this node, orphaned while it was cut off):
    /// this node won it and its delay has passed.
    Will {
        client_id: ByteString,
        message: Box<Message>,
    },
    /// NATS is reachable (`true`) or not.
    Link { up: bool },
    /// NATS has been unreachable for the grace period: drop every client.
    Detach,
}

impl Broker {
    /// Reports the will now in force for the session `sid` (or its absence) to the cluster.
    pub(super) fn cluster_will_changed(&mut self, sid: SessionId) {
        let Some(cluster) = self.cluster.as_ref() else {
            return;
        };
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        // Only while this node holds the client id (not after a takeover).
        if !cluster.claims_client(&s.client_id) || self.client_ids.get(&s.client_id) != Some(&sid) {
            return;
        }
        let will = s.will.as_ref().map(|w| ClusterWill {
            message: w.message.clone(),
            delay_secs: w.delay_secs.min(s.expiry_secs),
        });
        let client_id = s.client_id.clone();
        self.out.cluster(ClusterOutput::Will { client_id, will });
    }

    /// What the cluster actor reports about liveness.
    pub fn cluster_liveness(&mut self, event: LivenessEvent, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        match event {
            LivenessEvent::Link { up } => {
                if cluster.link_down == up {
                    tracing::warn!(up, "cluster: NATS link changed");
                }
                cluster.link_down = !up;
            }
            LivenessEvent::Detach => self.cluster_detach(now),
            LivenessEvent::Will { client_id, message } => {
                self.cluster_will(&client_id, *message, now)
            }
        }
        self.reap(now);
    }

    /// Whether a CONNECT is refused because this node has lost NATS.
    pub(super) fn cluster_refuses_connect(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.link_down)
    }

    fn cluster_will(&mut self, client_id: &str, message: Message, now: Instant) {
        let connected_here = self
            .client_ids
            .get(client_id)
            .and_then(|sid| self.sessions.get(sid))
            .is_some_and(|s| s.conn.is_some());
        // [MQTT-3.3.2-5] an expired message is not delivered.
        if connected_here || message.is_expired(now) {
            tracing::info!(client = client_id, "will of another node not published");
            return;
        }
        tracing::info!(client = client_id, topic = %message.topic, "publishing the will of a client of a lost node");
        self.publish_message(Arc::new(message), None, now);
    }

    /// Disconnects every client with 0x9C Use another server; their wills and claims stay
    /// with the cluster (module documentation).
    fn cluster_detach(&mut self, now: Instant) {
        let conns: Vec<(ConnId, Option<SessionId>)> =
            self.conns.iter().map(|(id, c)| (*id, c.session)).collect();
        tracing::warn!(
            clients = conns.len(),
            "cluster: NATS lost for the grace period, disconnecting every client"
        );
        for (conn, sid) in conns {
            let mut ending = None;
            if let Some(s) = sid.and_then(|sid| self.sessions.get_mut(&sid)) {
                s.will = None;
                // A session that ends with its connection keeps its claim in the cluster
                // (no release), so its will is still due there; a persistent one stays here,
                // claimed, for its client to come back to.
                if s.expiry_secs == 0 {
                    ending = Some(s.client_id.clone());
                }
            }
            if let (Some(client_id), Some(cluster)) = (ending, self.cluster.as_mut()) {
                cluster.claims.remove(&client_id);
            }
            self.close_with(conn, ReasonCode::USE_ANOTHER_SERVER, now);
        }
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.link_down = true;
        }
    }
}
