//! Which nodes are alive, and this node's own link to NATS (README "Cluster",
//! proto-ext/cluster.md "Liveness").
//!
//! NATS 2.9 has no per-key TTL, so liveness is heartbeats of our own: every node puts its key
//! (its name) in the nodes bucket (`PREFIX-nodes`) every `cluster.heartbeat_ms`, and watches
//! the bucket. A node not heard for `cluster.node_timeout_ms` is declared dead, and the
//! survivors race for its clients' wills (wills.rs). A node judges others only while its own
//! heartbeats come back through its watch: a node whose view is stale (cut off, or starved)
//! declares nobody dead.
//!
//! This node's link: NATS is lost when the client is not connected, or when no heartbeat was
//! stored for three heartbeat intervals. Then the broker refuses new connections; once no
//! heartbeat was stored for `cluster.nats_grace_ms` (shorter than the others' node timeout,
//! so its clients are gone before anyone publishes their wills) it disconnects every client.
//! When heartbeats are stored again, the node first takes its own orphaned wills (those of
//! the clients it disconnected, if no other node took them), then accepts connections again.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::wills::Heirs;
use super::{ClusterError, Names};
use crate::broker::LivenessEvent;
use crate::config::Cluster as ClusterConfig;
use crate::handoff::{ClusterEvent, Event};

/// The timings of `cluster:` (config).
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    pub heartbeat: Duration,
    pub node_timeout: Duration,
    pub grace: Duration,
}

impl Timing {
    pub(super) fn from(config: &ClusterConfig) -> Timing {
        Timing {
            heartbeat: Duration::from_millis(config.heartbeat_ms),
            node_timeout: Duration::from_millis(config.node_timeout_ms),
            grace: Duration::from_millis(config.nats_grace_ms),
        }
    }

    /// Without a stored heartbeat for this long, NATS counts as lost.
    fn lost_after(&self) -> Duration {
        (self.heartbeat * 3).min(self.grace)
    }
}

pub(super) struct Liveness {
    pub client: async_nats::Client,
    pub nodes: kv::Store,
    pub heirs: Heirs,
    pub names: Names,
    pub timing: Timing,
}

/// Puts this node's key every heartbeat; reports when a put was last stored.
async fn heartbeat(
    nodes: kv::Store,
    node: String,
    every: Duration,
    stored: watch::Sender<Instant>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let put = nodes.put(&node, Bytes::from(ms.to_string()));
        // A put that takes longer than the grace is as good as lost.
        match tokio::time::timeout(every * 2, put).await {
            Ok(Ok(_)) => {
                if stored.send(Instant::now()).is_err() {
                    return;
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "cluster heartbeat not stored"),
            Err(_) => tracing::debug!("cluster heartbeat not acknowledged in time"),
        }
    }
}

/// Stops the heartbeats with the task that started them (`Cluster::stop` aborts that one).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What this node knows of the others: when each was last heard, and its key's revision.
#[derive(Default)]
struct Peers {
    heard: HashMap<String, (Instant, u64)>,
    /// Declared dead, not heard since.
    dead: HashSet<String>,
}

impl Liveness {
    pub(super) async fn run(self) {
        let (stored_tx, stored) = watch::channel(Instant::now());
        let _beat = AbortOnDrop(tokio::spawn(heartbeat(
            self.nodes.clone(),
            self.names.node.clone(),
            self.timing.heartbeat,
            stored_tx,
        )));
        let mut peers = Peers::default();
        let mut watcher: Option<kv::Watch> = None;
        let mut tick = tokio::time::interval(self.timing.heartbeat / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut link_up, mut detached) = (true, false);
        loop {
            let Some(w) = watcher.as_mut() else {
                match self.nodes.watch_with_history(">").await {
                    Ok(w) => watcher = Some(w),
                    Err(e) => {
                        tracing::debug!(error = %e, "cluster nodes watch");
                        tick.tick().await;
                    }
                }
                continue;
            };
            tokio::select! {
                entry = w.next() => match entry {
                    Some(Ok(e)) => peers.update(&e),
                    Some(Err(e)) => tracing::debug!(error = %e, "cluster nodes watch"),
                    None => watcher = None,
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    let since = now.saturating_duration_since(*stored.borrow());
                    let connected = self.client.connection_state() == async_nats::connection::State::Connected;
                    let lost = !connected || since > self.timing.lost_after();
                    if lost && link_up {
                        link_up = false;
                        tracing::warn!(connected, since_ms = since.as_millis(), "cluster: NATS lost, refusing new connections");
                        if !self.tell(LivenessEvent::Link { up: false }).await { break; }
                    }
                    if lost && !detached && since >= self.timing.grace {
                        detached = true;
                        if !self.tell(LivenessEvent::Detach).await { break; }
                    }
                    if !lost && !link_up {
                        if detached {
                            // The clients dropped while cut off: their wills, unless taken.
                            let take = self.heirs.take_wills_of(&self.names.node);
                            let won = tokio::time::timeout(self.timing.node_timeout, take).await.unwrap_or(0);
                            tracing::info!(wills = won, "cluster: own wills taken back after NATS came back");
                            detached = false;
                        }
                        // What was heard before the loss is stale: start the clocks again.
                        peers.restart(now);
                        link_up = true;
                        tracing::warn!("cluster: NATS back, accepting connections");
                        if !self.tell(LivenessEvent::Link { up: true }).await { break; }
                    }
                    if link_up {
                        self.judge(&mut peers, now);
                    }
                }
            }
        }
    }

    /// Hands an event to the broker; false when it is gone.
    async fn tell(&self, event: LivenessEvent) -> bool {
        self.heirs
            .events
            .send(Event::Cluster(ClusterEvent::Liveness(event)))
            .await
            .is_ok()
    }

    /// Declares dead the nodes not heard for the node timeout, if this node's own view is
    /// fresh, and races for their wills.
    fn judge(&self, peers: &mut Peers, now: Instant) {
        let fresh = peers
            .heard
            .get(&self.names.node)
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) <= self.timing.lost_after());
        if !fresh {
            return;
        }
        let timeout = self.timing.node_timeout;
        let dead: Vec<(String, u64)> = peers
            .heard
            .iter()
            .filter(|(name, (at, _))| {
                **name != self.names.node && now.saturating_duration_since(*at) > timeout
            })
            .map(|(name, (_, revision))| (name.clone(), *revision))
            .collect();
        for (name, revision) in dead {
            peers.heard.remove(&name);
            peers.dead.insert(name.clone());
            tracing::warn!(node = %name, timeout_ms = timeout.as_millis(), "cluster: node declared dead");
            let heirs = self.heirs.clone();
            let nodes = self.nodes.clone();
            tokio::spawn(async move {
                let won = heirs.take_wills_of(&name).await;
                tracing::info!(node = %name, wills = won, "cluster: wills of a dead node taken");
                // Gone from the bucket, unless it came back meanwhile (a newer revision).
                let _ = nodes.delete_expect_revision(&name, Some(revision)).await;
            });
        }
    }
}

/// Key of the QUIC stateless-reset key in the nodes bucket (`=` keeps it apart from node
/// names).
const RESET_KEY: &str = "=reset-key";

/// Length of the stateless-reset key (an HMAC-SHA256 key, as quinn's default).
const RESET_KEY_LEN: usize = 64;

/// The cluster's QUIC stateless-reset key: the first node creates a random one in the nodes
/// bucket, every node uses what is there. A client whose node died then gets a stateless
/// reset from whichever node its packets reach (README "Cluster": load balancers).
pub(super) async fn reset_key(nodes: &kv::Store) -> Result<Vec<u8>, ClusterError> {
    let err = |e: &dyn std::fmt::Display| ClusterError::JetStream {
        what: format!("stateless-reset key {RESET_KEY}"),
        reason: e.to_string(),
    };
    for _ in 0..3 {
        if let Some(key) = nodes.get(RESET_KEY).await.map_err(|e| err(&e))? {
            if key.len() == RESET_KEY_LEN {
                return Ok(key.to_vec());
            }
            return Err(err(&format!(
                "{} bytes, expected {RESET_KEY_LEN}",
                key.len()
            )));
        }
        let mut key = vec![0u8; RESET_KEY_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| err(&"no random bytes"))?;
        // Of two nodes starting at once, one creates it; the other reads it.
        if nodes
            .create(RESET_KEY, Bytes::from(key.clone()))
            .await
            .is_ok()
        {
            return Ok(key);
        }
    }
    Err(err(&"neither created nor read"))
}

impl Peers {
    fn update(&mut self, entry: &kv::Entry) {
        if !crate::config::is_cluster_name(&entry.key) {
            return; // The reset key.
        }
        match entry.operation {
            kv::Operation::Put => {
                if self.dead.remove(&entry.key) {
                    tracing::info!(node = %entry.key, "cluster: node back");
                }
                self.heard
                    .insert(entry.key.clone(), (Instant::now(), entry.revision));
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                self.heard.remove(&entry.key);
            }
        }
    }

    fn restart(&mut self, now: Instant) {
        for (at, _) in self.heard.values_mut() {
            *at = now;
        }
    }
}
