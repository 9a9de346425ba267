//! Several mqttd nodes as one broker, over NATS JetStream (README "Cluster", the wire layout
//! in proto-ext/cluster.md).
//!
//! The rules (what goes to the other nodes, what comes back, when a publisher is acknowledged)
//! live in the sans-IO broker (`crate::broker`'s `cluster.rs`); this module is the thin NATS
//! I/O beside the broker task:
//!
//! - [`outbound`]: the broker's [`ClusterOutput`]s to NATS. QoS 0 on core NATS (at most once,
//!   in order per connection), QoS 1/2 into one JetStream stream (the publisher's
//!   acknowledgement waits for JetStream's, several in flight), retained changes into a KV
//!   bucket.
//! - [`inbound`]: each node reads everything back with one core subscription, one ordered
//!   consumer of the stream and one watch of the retained bucket, drops its own messages (by
//!   the node header), and hands the rest to the broker, which matches them against its local
//!   subscriptions.
//! - [`shared`]: shared subscriptions, served by NATS (a queue group for QoS 0, a durable
//!   consumer per group for QoS 1/2) so that each message reaches one member cluster-wide.
//!
//! No consensus of our own: ordering, storage and replication are NATS's.

mod inbound;
mod liveness;
mod nats;
mod outbound;
mod sessions;
pub mod shared;
mod state;
pub mod subject;
mod wills;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use crate::broker::ClusterOutput;
use crate::config::Cluster as ClusterConfig;
use crate::handoff::Event;

/// Messages and retained changes waiting for NATS. Past it, QoS 0 messages and retained
/// changes are dropped and held QoS 1/2 messages refused (server/core.rs).
pub const OUTPUT_QUEUE: usize = 16_384;

/// Header naming the node a message was published on.
pub const NODE_HEADER: &str = "Mqttd-Node";

/// Why the cluster could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster: cannot connect to NATS at {urls}: {reason}")]
    Connect { urls: String, reason: String },
    #[error("cluster: cannot read {file}: {source}")]
    Credentials {
        file: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cluster: JetStream {what}: {reason}")]
    JetStream { what: String, reason: String },
}

/// The names a cluster uses in NATS, from `cluster.prefix`.
#[derive(Debug, Clone)]
pub struct Names {
    pub node: String,
    pub prefix: String,
}

impl Names {
    /// Core NATS subject of a QoS 0 message.
    pub fn qos0_subject(&self, encoded_topic: &str) -> String {
        format!("{}.m.{encoded_topic}", self.prefix)
    }
    /// Subject of a QoS 1/2 message in the stream.
    pub fn stream_subject(&self, encoded_topic: &str) -> String {
        format!("{}.q.{encoded_topic}", self.prefix)
    }
    pub fn stream(&self) -> String {
        format!("{}-messages", self.prefix)
    }
    pub fn retained_bucket(&self) -> String {
        format!("{}-retained", self.prefix)
    }
    pub fn sessions_bucket(&self) -> String {
        format!("{}-sessions", self.prefix)
    }
    /// Heartbeats of the nodes (liveness.rs).
    pub fn nodes_bucket(&self) -> String {
        format!("{}-nodes", self.prefix)
    }
    /// The wills of the clients, by client id (wills.rs).
    pub fn wills_bucket(&self) -> String {
        format!("{}-wills", self.prefix)
    }
    /// Persistent sessions' state, so they resume on any node.
    pub fn state_bucket(&self) -> String {
        format!("{}-state", self.prefix)
    }
    /// Where a node hears that one of its clients connected elsewhere.
    pub fn control_subject(&self, node: &str) -> String {
        format!("{}.ctl.{node}", self.prefix)
    }
}

/// A running cluster actor.
pub struct Cluster {
    pub names: Names,
    /// The QUIC stateless-reset key every node of the cluster uses (liveness.rs).
    pub reset_key: Vec<u8>,
    tasks: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// Connects to NATS, makes sure the stream and bucket exist, and starts the tasks that
    /// carry messages both ways. `events` is the broker task's channel; the returned sender is
    /// what the broker writes to (`ServerOptions::cluster`).
    pub async fn start(
        config: &ClusterConfig,
        events: mpsc::Sender<Event>,
    ) -> Result<(Cluster, mpsc::Sender<ClusterOutput>), ClusterError> {
        let names = Names {
            node: config.node_name(),
            prefix: config.prefix.clone(),
        };
        let joined = nats::join(config, &names).await?;
        let reset_key = liveness::reset_key(&joined.nodes).await?;
        let (tx, rx) = mpsc::channel(OUTPUT_QUEUE);
        let (ops_tx, ops_rx) = mpsc::channel(OUTPUT_QUEUE);
        let notices = joined
            .client
            .subscribe(names.control_subject(&names.node))
            .await
            .map_err(|e| ClusterError::JetStream {
                what: "control subscription".into(),
                reason: e.to_string(),
            })?;
        let (shared_tx, shared_rx) = mpsc::channel(OUTPUT_QUEUE);
        let mut tasks = outbound::start(
            &joined,
            &names,
            rx,
            outbound::Handoffs {
                sessions: ops_tx,
                shared: shared_tx,
            },
            events.clone(),
        );
        let shared = shared::Context {
            client: joined.client.clone(),
            stream: joined.stream.clone(),
            names: names.clone(),
            ack_wait: std::time::Duration::from_millis(config.shared_ack_wait_ms),
            // A group's consumer outlives its last pulling node as long as the stream keeps
            // messages: members that come back within it get what was published meanwhile.
            inactive: std::time::Duration::from_secs(config.stream_max_age_secs),
        };
        tasks.push(tokio::spawn(shared::run(shared, shared_rx, events.clone())));
        let session_tasks = sessions::Sessions {
            client: joined.client.clone(),
            claims: joined.sessions.clone(),
            states: joined.states.clone(),
            wills: joined.wills.clone(),
            stream: joined.stream.clone(),
            names: names.clone(),
            events: events.clone(),
        };
        tasks.push(tokio::spawn(sessions::run(session_tasks, ops_rx, notices)));
        let heirs = wills::Heirs {
            wills: joined.wills.clone(),
            sessions: joined.sessions.clone(),
            events: events.clone(),
        };
        // Wills left by this node's previous run (killed, then restarted before the others
        // declared it dead): taken before any client connects, so none of this run's is.
        let timing = liveness::Timing::from(config);
        let orphans = heirs.take_wills_of(&names.node);
        if let Ok(won) = tokio::time::timeout(timing.node_timeout, orphans).await {
            if won > 0 {
                tracing::info!(wills = won, "wills of this node's previous run published");
            }
        }
        let liveness = liveness::Liveness {
            client: joined.client.clone(),
            nodes: joined.nodes.clone(),
            heirs,
            names: names.clone(),
            timing,
        };
        tasks.push(tokio::spawn(liveness.run()));
        tasks.extend(inbound::start(&joined, &names, events).await?);
        tracing::info!(node = %names.node, urls = %config.urls.join(","), stream = %names.stream(), "joined the cluster");
        Ok((
            Cluster {
                names,
                reset_key,
                tasks,
            },
            tx,
        ))
    }

    /// Stops carrying messages (at shutdown, after the broker task).
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
