//! What the admin listener (`crate::admin`) needs of a running broker, cheap to clone: a way
//! to run queries on the broker task, the transport counters read at scrape time, and what
//! `/readyz` checks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::ServerError;
use crate::broker::Broker;
use crate::handoff::Event;

#[derive(Clone)]
pub struct ServerProbe {
    pub(super) events: mpsc::Sender<Event>,
    pub(super) quic_endpoint: Option<quinn::Endpoint>,
    pub(super) quic_stats: Arc<crate::transport::early::QuicStats>,
    pub(super) quic_admission: Arc<crate::transport::admission::Admission>,
    pub(super) quic_connections: Arc<crate::transport::quic_registry::QuicConnections>,
    pub(super) commit_stats: Option<Arc<crate::store::writer::CommitStats>>,
    /// The store was asked for and could not be used (the broker runs in memory).
    pub(super) store_failed: bool,
    pub(super) listeners: Vec<(&'static str, SocketAddr)>,
    pub(super) started: Instant,
}

impl ServerProbe {
    /// Runs `query` on the broker task with the broker and the current time; `Stopped` once
    /// the broker is gone.
    pub async fn run<T, F>(&self, query: F) -> Result<T, ServerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Broker, Instant) -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let task: crate::handoff::event::AdminTask = Box::new(move |broker, now| {
            let _ = reply.send(query(broker, now));
        });
        self.events
            .send(Event::Admin(task))
            .await
            .map_err(|_| ServerError::Stopped)?;
        answer.await.map_err(|_| ServerError::Stopped)
    }

    /// The QUIC listener's own counters (0-RTT, Retry, refusals before the handshake).
    pub fn quic_stats(&self) -> crate::transport::early::QuicStatsSnapshot {
        crate::transport::early::QuicStatsSnapshot {
            refused_before_handshake: self.quic_admission.refused(),
            ..self.quic_stats.snapshot()
        }
    }

    /// The QUIC endpoint, for quinn's endpoint and connection statistics.
    pub fn quic_endpoint(&self) -> Option<&quinn::Endpoint> {
        self.quic_endpoint.as_ref()
    }

    /// The live QUIC connections (quinn statistics per connection).
    pub fn quic_connections(&self) -> &crate::transport::quic_registry::QuicConnections {
        &self.quic_connections
    }

    /// The store writer's commit counters (`None` without persistence).
    pub fn commit_stats(&self) -> Option<&crate::store::writer::CommitStats> {
        self.commit_stats.as_deref()
    }

    /// Whether persistence was asked for and the store could not be opened.
    pub fn store_failed(&self) -> bool {
        self.store_failed
    }

    /// The MQTT listeners, by transport name (`tcp`, `quic`, `mqtts`), with their bound
    /// addresses.
    pub fn listeners(&self) -> &[(&'static str, SocketAddr)] {
        &self.listeners
    }

    /// When the broker started (process uptime for the API).
    pub fn started(&self) -> Instant {
        self.started
    }
}
