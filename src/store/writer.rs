//! The store writer: a task that commits the broker's change sets, off the broker task.
//!
//! The broker task sends each batch's [`ChangeSet`] with a ticket (increasing) and learns,
//! through the `committed` channel, the highest ticket whose changes are durable; it holds the
//! outputs of a batch until then (except with `durability: off`). Commits run on tokio's
//! blocking pool, so the broker task keeps handling events while the disk works, and the
//! bounded channel to the writer slows the broker down when the disk cannot keep up.
//!
//! - `fsync`: one durable commit per change set, in order: every acknowledgement waits for an
//!   fsync of its own batch.
//! - `batched`: the first change set opens a window of `batch_ms`; everything that arrives in
//!   it is committed together with one fsync (group commit).
//! - `off`: as `batched`, but nobody waits for the commit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Store;
use crate::broker::ChangeSet;
use crate::config::Durability;

/// Change sets waiting for the writer; beyond this the broker task waits (backpressure).
const QUEUE: usize = 64;

pub struct Writer {
    tx: Option<mpsc::Sender<(u64, ChangeSet)>>,
    committed: mpsc::UnboundedReceiver<u64>,
    task: JoinHandle<()>,
    pub durability: Durability,
}

impl Writer {
    pub fn start(store: Store, durability: Durability, batch_ms: u64) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (done, committed) = mpsc::unbounded_channel();
        let window = match durability {
            Durability::Fsync => None,
            Durability::Batched | Durability::Off => Some(Duration::from_millis(batch_ms)),
        };
        let task = tokio::spawn(run(Arc::new(store), rx, done, window));
        Writer {
            tx: Some(tx),
            committed,
            task,
            durability,
        }
    }

    /// Hands over one batch's changes; waits while the writer is `QUEUE` batches behind.
    pub async fn send(&mut self, ticket: u64, changes: ChangeSet) {
        if let Some(tx) = &self.tx {
            if tx.send((ticket, changes)).await.is_err() {
                tracing::error!("store writer stopped; changes are no longer persisted");
                self.tx = None;
            }
        }
    }

    /// The highest ticket committed since the last call (waits for one).
    pub async fn committed(&mut self) -> Option<u64> {
        let mut last = self.committed.recv().await?;
        while let Ok(t) = self.committed.try_recv() {
            last = last.max(t);
        }
        Some(last)
    }

    /// Commits everything sent so far and stops the writer.
    pub async fn finish(mut self) {
        self.tx = None;
        let _ = (&mut self.task).await;
    }
}

async fn run(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<(u64, ChangeSet)>,
    done: mpsc::UnboundedSender<u64>,
    window: Option<Duration>,
) {
    while let Some((mut last, mut ops)) = rx.recv().await {
        if let Some(window) = window {
            let deadline = tokio::time::Instant::now() + window;
            loop {
                tokio::select! {
                    more = rx.recv() => match more {
                        Some((ticket, changes)) => {
                            last = ticket;
                            ops.extend(changes);
                        }
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        let store2 = store.clone();
        let result = tokio::task::spawn_blocking(move || store2.apply(&ops, true)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(
                store = %store.path().display(), error = %e,
                "store commit failed: these changes are not persisted"
            ),
            Err(e) => tracing::error!(error = %e, "store commit panicked"),
        }
        let _ = done.send(last);
    }
}
