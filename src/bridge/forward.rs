//! One direction of a bridge: messages received by one client are published by the other, and
//! each is acknowledged to the side it came from only once the side it went to acknowledged
//! it (PUBACK, or PUBCOMP for QoS 2). Until then the sending broker keeps it (in its session,
//! in its store), so neither a dropped remote connection nor a killed bridge loses it.
//!
//! The same code runs both ways: out (the local client's messages to the remote client) and
//! in (the remote's to the local). Many messages are in flight at once, started in the order
//! they arrived so they keep it on the other side; how many is bounded by the receiving
//! client's Receive Maximum (the sender stops there until acknowledgements come back).

use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::stats::BridgeStats;
use super::topics::{Routes, Way};
use crate::client::{AckToken, Client, ClientError, Message, PublishOutcome, ReceivedMessage};
use crate::codec::QoS;

/// What a direction needs.
pub(super) struct Direction {
    pub way: Way,
    pub name: Arc<str>,
    pub from: Client,
    pub to: Client,
    pub routes: Arc<Routes>,
    pub stats: Arc<BridgeStats>,
}

/// A message on its way: its outcome, and what to do with it.
struct InFlight {
    message: Message,
    ack: Option<AckToken>,
    /// Sent again after the other side lost the session.
    retried: bool,
}

impl Direction {
    /// Runs until the receiving client is closed.
    pub async fn run(self) {
        let mut pending = FuturesUnordered::new();
        loop {
            tokio::select! {
                received = self.from.recv() => match received {
                    Ok(message) => {
                        if let Some(flight) = self.prepare(message).await {
                            pending.push(self.send(flight).await);
                        }
                    }
                    Err(ClientError::Closed) => return,
                    // The source's connection ended; its client reconnects by itself and the
                    // broker there sends again what was not acknowledged.
                    Err(e) => tracing::debug!(bridge = %self.name, way = ?self.way, error = %e, "source connection lost"),
                },
                Some((result, flight)) = pending.next() => {
                    if let Some(again) = self.finish(result, flight).await {
                        pending.push(self.send(again).await);
                    }
                }
            }
            self.stats.in_flight(self.way, pending.len());
        }
    }

    /// Maps a received message to what goes to the other side; `None` (acknowledged at once)
    /// when no `topics:` entry forwards it this way.
    async fn prepare(&self, received: ReceivedMessage) -> Option<InFlight> {
        let Some(mapped) = self.routes.map(self.way, &received.topic) else {
            self.ack(received.ack).await;
            return None;
        };
        let qos = received.qos.min(mapped.max_qos);
        if qos < received.qos {
            let n = self.stats.downgraded();
            if n.is_power_of_two() {
                tracing::warn!(
                    bridge = %self.name, way = ?self.way, topic = %received.topic,
                    from = received.qos as u8, to = qos as u8, entry = mapped.entry, downgraded = n,
                    "message QoS above the topic entry's qos: downgraded"
                );
            }
        }
        let mut properties = received.properties;
        // Per hop: the other side assigns its own.
        properties.subscription_identifiers.clear();
        properties.topic_alias = None;
        let mut message = Message::new(mapped.topic, received.payload)
            .qos(qos)
            .retain(received.retain)
            .properties(properties);
        // The identifier the message arrived with goes with it: after a crash of the bridge
        // the source sends it again with the same identifier (DUP), and the other side, still
        // holding a QoS 2 flow under that identifier, recognises it and does not deliver it
        // twice (README "Bridges").
        if let (Some(ack), true) = (received.ack, qos != QoS::AtMostOnce) {
            message.packet_id = Some(ack.packet_id);
        }
        Some(InFlight {
            message,
            ack: received.ack,
            retried: false,
        })
    }

    /// Starts the publish on the other side (in order), returning its outcome to wait for.
    async fn send(
        &self,
        mut flight: InFlight,
    ) -> impl std::future::Future<Output = (Result<PublishOutcome, ClientError>, InFlight)> {
        let started = match self.to.start_publish(flight.message.clone()).await {
            Err(ClientError::PacketIdInUse(_)) => {
                // An earlier flow under the same identifier is unfinished (the other side's
                // session was replaced meanwhile): send with an identifier of the client's.
                flight.message.packet_id = None;
                self.to.start_publish(flight.message.clone()).await
            }
            other => other,
        };
        async move {
            let result = match started {
                Ok(outcome) => outcome.await,
                Err(e) => Err(e),
            };
            (result, flight)
        }
    }

    /// A publish on the other side ended: acknowledge the source, or send again.
    async fn finish(
        &self,
        result: Result<PublishOutcome, ClientError>,
        mut flight: InFlight,
    ) -> Option<InFlight> {
        match result {
            Ok(_) => self.stats.forwarded(self.way),
            // The other side did not keep the session: it may or may not have the message;
            // send it once more (QoS 1 allows a duplicate; QoS 2 may duplicate here).
            Err(ClientError::SessionLost) if !flight.retried => {
                flight.retried = true;
                flight.message.packet_id = None;
                return Some(flight);
            }
            Err(ClientError::Closed) => return None,
            // QoS 1/2 while the other side is away and keeps no session for us: wait for it.
            Err(ClientError::NotConnected) if flight.message.qos != QoS::AtMostOnce => {
                let mut up = self.to.connection_state();
                if up.wait_for(|up| *up).await.is_err() {
                    return None;
                }
                return Some(flight);
            }
            Err(e) => {
                let n = self.stats.dropped();
                tracing::warn!(
                    bridge = %self.name, way = ?self.way, topic = %flight.message.topic,
                    qos = flight.message.qos as u8, error = %e, dropped = n,
                    "message not forwarded"
                );
            }
        }
        self.ack(flight.ack).await;
        None
    }

    async fn ack(&self, token: Option<AckToken>) {
        if let Some(token) = token {
            let _ = self.from.ack(token).await;
        }
    }
}
