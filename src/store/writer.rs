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
//!
//! **A failed commit** (disk full, I/O error) is never reported committed, so the outputs that
//! wait for it stay held: no acknowledgement before the disk. The writer retries the same
//! change set after 50 ms, doubling up to 5 s, on a reopened database ([`Store::apply`]). It
//! takes no further change sets meanwhile: its queue fills and the broker task waits in
//! [`Writer::send`], so it stops reading connections (flow control then slows the clients) and
//! memory stays bounded; when the disk recovers, everything proceeds in order. Applying a change
//! set again is safe even if the failed commit did reach the disk: it is a sequence of puts and
//! deletes, which leaves the same state when applied over its own result. Logged: the first
//! failure, then at most one line per 10 s (`LOG_EVERY`), and the success after retries.
//!
//! **At shutdown** ([`Writer::finish`]) a commit that keeps failing cannot hold the broker
//! forever: from then on the writer retries for 2 s (`FINAL_ATTEMPTS_FOR`) at most, then logs
//! that the last changes could not be persisted and ends. `finish` returns the last ticket
//! committed, and the outputs held for later ones are never sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Store;
use crate::broker::{ChangeSet, StoreOp};
use crate::config::Durability;

/// Change sets waiting for the writer; beyond this the broker task waits (backpressure).
pub(super) const QUEUE: usize = 64;

/// The wait before the first retry of a failed commit; it doubles up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(5);
/// At most one log line per this while a commit keeps failing.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// How long a failing commit is still retried once the writer is finishing.
const FINAL_ATTEMPTS_FOR: Duration = Duration::from_secs(2);

/// What the writer measures of its commits, for `/metrics`: atomics touched once per commit
/// (a batch of changes), never per message.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub commits: AtomicU64,
    /// Commit attempts that failed (each retry counts).
    pub failures: AtomicU64,
    buckets: [AtomicU64; 13],
    sum_us: AtomicU64,
}

impl CommitStats {
    fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = crate::broker::LATENCY_BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(crate::broker::LATENCY_BOUNDS_US.len());
        // `i` is at most the number of bounds: the last bucket (+Inf) always exists.
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Commit latency (from the start of the first attempt to success) as a histogram.
    pub fn latency(&self) -> crate::broker::Histogram {
        let mut h = crate::broker::Histogram::default();
        for (out, b) in h.buckets.iter_mut().zip(&self.buckets) {
            *out = b.load(Ordering::Relaxed);
        }
        h.count = h.buckets.iter().sum();
        h.sum_us = self.sum_us.load(Ordering::Relaxed);
        h
    }
}

pub struct Writer {
    stats: Arc<CommitStats>,
    tx: Option<mpsc::Sender<(u64, ChangeSet)>>,
    committed: mpsc::UnboundedReceiver<u64>,
    /// Ends with the last ticket committed.
    task: JoinHandle<u64>,
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
        let stats = Arc::new(CommitStats::default());
        let task = tokio::spawn(run(Arc::new(store), rx, done, window, stats.clone()));
        Writer {
            stats,
            tx: Some(tx),
            committed,
            task,
            durability,
        }
    }

    /// The commit counters, shared with the admin listener.
    pub fn stats(&self) -> Arc<CommitStats> {
        self.stats.clone()
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

    /// Commits everything sent so far and stops the writer; returns the last ticket committed
    /// (0: none). A commit that still fails gets `FINAL_ATTEMPTS_FOR` more, then the changes
    /// from it on are given up (logged), and the result is below the last ticket sent.
    pub async fn finish(self) -> u64 {
        let Writer {
            tx,
            committed,
            task,
            ..
        } = self;
        drop(tx);
        // A closed `committed` channel is what tells a retrying writer to stop soon.
        drop(committed);
        match task.await {
            Ok(last) => last,
            Err(e) => {
                tracing::error!(error = %e, "store writer failed");
                0
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum CommitError {
    #[error(transparent)]
    Store(#[from] redb::Error),
    #[error("the commit panicked: {0}")]
    Panicked(#[from] tokio::task::JoinError),
}

/// Returns the last ticket committed.
async fn run(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<(u64, ChangeSet)>,
    done: mpsc::UnboundedSender<u64>,
    window: Option<Duration>,
    stats: Arc<CommitStats>,
) -> u64 {
    let mut committed = 0;
    // Set once the writer is finishing: when failing commits are given up.
    let mut give_up_at = None;
    while let Some((mut last, mut ops)) = rx.recv().await {
        if let Some(window) = window {
            let deadline = Instant::now() + window;
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
        if let Err(e) = commit(&store, ops, &done, &mut give_up_at, &stats).await {
            tracing::error!(
                store = %store.path().display(), error = %e,
                "store writer stopping with the store failing: the last changes could not be \
                 persisted (the acknowledgements that waited for them are not sent)"
            );
            break;
        }
        committed = last;
        let _ = done.send(last);
    }
    committed
}

/// Commits `ops`, retrying a failed commit with a backoff until it succeeds or, once the
/// writer is finishing (`done` closed), until `give_up_at`.
async fn commit(
    store: &Arc<Store>,
    ops: ChangeSet,
    done: &mpsc::UnboundedSender<u64>,
    give_up_at: &mut Option<Instant>,
    stats: &CommitStats,
) -> Result<(), CommitError> {
    let started = Instant::now();
    let ops = Arc::new(ops);
    let mut attempts: u32 = 0;
    let mut wait = FIRST_RETRY;
    let mut logged_at: Option<Instant> = None;
    loop {
        attempts += 1;
        let (store2, ops2) = (store.clone(), ops.clone());
        let error = match tokio::task::spawn_blocking(move || store2.apply(&ops2)).await {
            Ok(Ok(())) => {
                stats.observe(started.elapsed());
                if attempts > 1 {
                    tracing::info!(
                        store = %store.path().display(), attempts,
                        "store commit succeeded after {attempts} attempts"
                    );
                }
                return Ok(());
            }
            Ok(Err(e)) => CommitError::from(e),
            Err(e) => CommitError::from(e),
        };
        stats.failures.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        if give_up_at.is_some_and(|at| now >= at) {
            return Err(error);
        }
        match logged_at {
            None => {
                tracing::error!(
                    store = %store.path().display(), error = %error,
                    "store commit failed: retrying; acknowledgements wait until it succeeds"
                );
                logged_at = Some(now);
            }
            Some(at) if now - at >= LOG_EVERY => {
                tracing::error!(
                    store = %store.path().display(), error = %error, attempts,
                    "store commit still failing: acknowledgements held, the broker waits for it"
                );
                logged_at = Some(now);
            }
            Some(_) => {}
        }
        let pause = give_up_at.map_or(wait, |at| wait.min(at - now));
        tokio::select! {
            () = tokio::time::sleep(pause) => wait = (wait * 2).min(LAST_RETRY),
            () = done.closed(), if give_up_at.is_none() => {
                *give_up_at = Some(Instant::now() + FINAL_ATTEMPTS_FOR);
                wait = FIRST_RETRY;
            }
        }
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
    for (op, keep) in ops.iter().zip(keep.iter_mut()).rev() {
        match op {
            StoreOp::PutSession { client_id, .. } => {
                *keep = !cleared.contains(&**client_id) && later.insert(Key::Session(client_id));
            }
            StoreOp::PutDelivery { client_id, seq, .. } => {
                *keep =
                    !cleared.contains(&**client_id) && later.insert(Key::Delivery(client_id, *seq));
            }
            StoreOp::PutRetained { topic, .. } => *keep = later.insert(Key::Retained(topic)),
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
