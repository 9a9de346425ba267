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
use crate::broker::{ChangeSet, StoreOp};
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
        if window.is_some() {
            ops = compact(ops);
        }
        let store2 = store.clone();
        let result = tokio::task::spawn_blocking(move || store2.apply(&ops)).await;
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

/// Drops every put that a later operation of the same merged batch overwrites or deletes: a
/// message delivered and acknowledged within one window never touches the disk. Deletes are
/// kept (the key may exist from an earlier commit); the result is the same store state.
fn compact(ops: ChangeSet) -> ChangeSet {
    #[derive(Hash, PartialEq, Eq)]
    enum Key<'a> {
        Session(&'a str),
        Delivery(&'a str, u64),
        Retained(&'a str),
    }
    let mut later: ahash::AHashSet<Key<'_>> = ahash::AHashSet::new();
    let mut cleared: ahash::AHashSet<&str> = ahash::AHashSet::new();
    let mut keep = vec![true; ops.len()];
    for (i, op) in ops.iter().enumerate().rev() {
        match op {
            StoreOp::PutSession { client_id, .. } => {
                keep[i] = !cleared.contains(&**client_id) && later.insert(Key::Session(client_id));
            }
            StoreOp::PutDelivery { client_id, seq, .. } => {
                keep[i] =
                    !cleared.contains(&**client_id) && later.insert(Key::Delivery(client_id, *seq));
            }
            StoreOp::PutRetained { topic, .. } => keep[i] = later.insert(Key::Retained(topic)),
            StoreOp::DeleteSession { client_id } => {
                cleared.insert(client_id);
            }
            StoreOp::DeleteDelivery { client_id, seq } => {
                later.insert(Key::Delivery(client_id, *seq));
            }
            StoreOp::DeleteRetained { topic } => {
                later.insert(Key::Retained(topic));
            }
        }
    }
    let mut keep = keep.into_iter();
    let mut ops = ops;
    ops.retain(|_| keep.next().unwrap_or(true));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;

    fn put(c: &str, seq: u64, tag: u8) -> StoreOp {
        StoreOp::PutDelivery {
            client_id: ByteString::from(c),
            seq,
            record: vec![tag],
        }
    }

    fn del(c: &str, seq: u64) -> StoreOp {
        StoreOp::DeleteDelivery {
            client_id: ByteString::from(c),
            seq,
        }
    }

    #[test]
    fn compaction_drops_only_overwritten_puts() {
        let session = |tag| StoreOp::PutSession {
            client_id: "a".into(),
            record: vec![tag],
        };
        let clear = StoreOp::DeleteSession {
            client_id: "a".into(),
        };
        let ops = vec![
            put("a", 1, 0),
            put("a", 1, 1), // overwrites the one before, then cleared below
            put("a", 2, 0),
            del("a", 2), // delivered and acknowledged in one window: only the delete stays
            put("b", 2, 0),
            session(0),
            clear.clone(),
            session(1),
            put("a", 3, 0),
        ];
        let expected = vec![
            del("a", 2),
            put("b", 2, 0),
            clear,
            session(1),
            put("a", 3, 0),
        ];
        assert_eq!(compact(ops), expected);
    }
}
