//! The hand-off between the broker task and one connection's writer.
//!
//! The broker task appends whole [`Transmit`]s (encoded packets) and wakes the writer; the writer
//! takes everything at once and writes it with one call. The outbox keeps no limit of its own:
//! the broker accounts every byte it hands over until the writer reports it written, and its
//! output budget (`broker/budget.rs`) decides when a connection that falls behind gets no more
//! deliveries and when one that does not read at all is closed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::broker::{CloseKind, StreamId, Transmit};

#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    notify: Notify,
    /// The broker holds this connection's reads back (backpressure, broker/throttle.rs).
    pub read_pause: ReadPause,
}

/// Bytes a connection may have read and handed to the broker task before it handled them;
/// its readers wait beyond it. This bounds what backpressure cannot take back: a publisher
/// paused because a subscriber fell behind still has everything read before the pause
/// delivered, and in a fan-out each of those bytes becomes one copy per subscriber. Without
/// it, the event queue (`EVENT_QUEUE` reads) let a fast publisher's whole burst in at once.
/// 64 KiB is sixteen full reads: the broker task handles reads in batches of hundreds, so a
/// reader that keeps up is never held by it.
pub const MAX_UNHANDLED_READ: usize = 64 * 1024;

/// Whether a connection's readers may read: the broker pauses a publisher whose messages reach
/// a subscriber that is behind, so TCP/QUIC flow control slows the publisher down; and a
/// reader waits while the broker task has [`MAX_UNHANDLED_READ`] of its reads to handle.
#[derive(Debug, Default)]
pub struct ReadPause {
    paused: AtomicBool,
    /// The connection is closing: nothing holds its readers any more.
    released: AtomicBool,
    /// Bytes read and handed over, not yet handled by the broker task.
    unhandled: AtomicUsize,
    resumed: Notify,
}

impl ReadPause {
    pub fn set(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        if !paused {
            self.resumed.notify_waiters();
        }
    }

    /// Lets the readers go for good (the connection is closing).
    pub fn release(&self) {
        self.released.store(true, Ordering::Release);
        self.set(false);
    }

    /// A reader handed `bytes` it read to the broker task.
    pub fn handed(&self, bytes: usize) {
        self.unhandled.fetch_add(bytes, Ordering::AcqRel);
    }

    /// The broker task handled `bytes` of what was handed to it.
    pub fn handled(&self, bytes: usize) {
        // Saturating: a count gone wrong must never leave a reader waiting for good.
        let before = self
            .unhandled
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(bytes))
            })
            .unwrap_or_else(|n| n);
        if before >= MAX_UNHANDLED_READ && before.saturating_sub(bytes) < MAX_UNHANDLED_READ {
            self.resumed.notify_waiters();
        }
    }

    fn may_read(&self) -> bool {
        self.released.load(Ordering::Acquire)
            || (!self.paused.load(Ordering::Acquire)
                && self.unhandled.load(Ordering::Acquire) < MAX_UNHANDLED_READ)
    }

    /// Returns at once unless reading is paused or too much is unhandled, else when it may
    /// read again.
    pub async fn wait(&self) {
        while !self.may_read() {
            let resumed = self.resumed.notified();
            tokio::pin!(resumed);
            resumed.as_mut().enable();
            if self.may_read() {
                return;
            }
            resumed.await;
        }
    }
}

#[derive(Debug, Default)]
struct OutboxState {
    server_flows: Vec<crate::broker::FlowEvent>,
    transmits: Vec<Transmit>,
    closed_streams: Vec<StreamId>,
    close: Option<CloseKind>,
}

/// What the writer takes in one go.
#[derive(Debug, Default)]
pub struct Batch {
    /// Server streams to open (before `transmits`) or finish (after them). QUIC only.
    pub server_flows: Vec<crate::broker::FlowEvent>,
    pub transmits: Vec<Transmit>,
    /// Data streams to finish after writing `transmits` (QUIC only).
    pub closed_streams: Vec<StreamId>,
    /// Close after writing `transmits`.
    pub close: Option<CloseKind>,
}

impl Outbox {
    /// Queues `transmit` (bounded by the broker's output budget, not here).
    pub fn push(&self, transmit: Transmit) {
        self.lock().transmits.push(transmit);
    }

    pub fn server_flow(&self, event: crate::broker::FlowEvent) {
        self.lock().server_flows.push(event);
    }

    pub fn close_stream(&self, stream: StreamId) {
        self.lock().closed_streams.push(stream);
    }

    pub fn close(&self, kind: CloseKind) {
        self.lock().close.get_or_insert(kind);
        // Readers held back by backpressure must see the end too (no one resumes them later).
        self.read_pause.release();
    }

    /// Wakes the writer (once per batch of pushes).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Waits until something is there and takes all of it.
    pub async fn next_batch(&self, spare: Vec<Transmit>) -> Batch {
        let mut spare = Some(spare);
        loop {
            {
                let mut state = self.lock();
                if !state.transmits.is_empty()
                    || !state.closed_streams.is_empty()
                    || !state.server_flows.is_empty()
                    || state.close.is_some()
                {
                    let mut transmits = spare.take().unwrap_or_default();
                    transmits.clear();
                    std::mem::swap(&mut transmits, &mut state.transmits);
                    let closed_streams = std::mem::take(&mut state.closed_streams);
                    let server_flows = std::mem::take(&mut state.server_flows);
                    return Batch {
                        server_flows,
                        transmits,
                        closed_streams,
                        close: state.close,
                    };
                }
            }
            self.notify.notified().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        // A panic while holding this lock cannot leave the state half-updated (every update is
        // a single push or assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod read_pause_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{CloseKind, Outbox, MAX_UNHANDLED_READ};
    use crate::codec::ReasonCode;

    #[tokio::test]
    async fn a_reader_waits_while_the_broker_has_too_much_of_its_input_to_handle() {
        let outbox = Arc::new(Outbox::default());
        outbox.read_pause.handed(MAX_UNHANDLED_READ - 1);
        outbox.read_pause.wait().await; // below the bound: reads on
        outbox.read_pause.handed(4096);
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.read_pause.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "at the bound the reader waits");
        // Handling part of it, still at the bound: still waiting.
        outbox.read_pause.handled(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        outbox.read_pause.handled(4096);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("resumed once handled")
            .unwrap();
        // Handing back more than was handed leaves the count at zero, never wrapped around.
        outbox.read_pause.handled(usize::MAX);
        outbox.read_pause.handed(1);
        tokio::time::timeout(Duration::from_secs(5), outbox.read_pause.wait())
            .await
            .expect("a count that went below zero does not hold the reader");

        // A pause and the bound together: both must lift; a close lifts everything.
        outbox.read_pause.handed(MAX_UNHANDLED_READ);
        outbox.read_pause.set(true);
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.read_pause.wait().await }
        });
        outbox.read_pause.set(false);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "unpaused but still too much unhandled"
        );
        outbox.close(CloseKind::Abnormal(ReasonCode::UNSPECIFIED_ERROR));
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released by close")
            .unwrap();
    }

    #[tokio::test]
    async fn paused_readers_wait_until_resumed_or_closed() {
        let outbox = Arc::new(Outbox::default());
        // Not paused: returns at once.
        outbox.read_pause.wait().await;

        outbox.read_pause.set(true);
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.read_pause.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "a paused reader waits");
        outbox.read_pause.set(false);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("resumed")
            .unwrap();

        // A close releases a paused reader too (nobody would resume it later).
        outbox.read_pause.set(true);
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.read_pause.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        outbox.close(CloseKind::Abnormal(ReasonCode::UNSPECIFIED_ERROR));
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released by close")
            .unwrap();
    }
}
