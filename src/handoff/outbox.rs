//! The hand-off between the broker task and one connection's writer.
//!
//! The broker task appends whole [`Transmit`]s (encoded packets) and wakes the writer; the writer
//! takes everything at once and writes it with one call. The outbox keeps no limit of its own:
//! the broker accounts every byte it hands over until the writer reports it written, and its
//! output budget (`broker/budget.rs`) decides when a connection that falls behind gets no more
//! deliveries and when one that does not read at all is closed.

use std::sync::atomic::{AtomicBool, Ordering};
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

/// Whether a connection's readers may read: the broker pauses a publisher whose messages reach
/// a subscriber that is behind, so TCP/QUIC flow control slows the publisher down.
#[derive(Debug, Default)]
pub struct ReadPause {
    paused: AtomicBool,
    resumed: Notify,
}

impl ReadPause {
    pub fn set(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        if !paused {
            self.resumed.notify_waiters();
        }
    }

    /// Returns at once unless reading is paused, else when it resumes.
    pub async fn wait(&self) {
        while self.paused.load(Ordering::Acquire) {
            let resumed = self.resumed.notified();
            tokio::pin!(resumed);
            resumed.as_mut().enable();
            if !self.paused.load(Ordering::Acquire) {
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
        self.read_pause.set(false);
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

    use super::{CloseKind, Outbox};
    use crate::codec::ReasonCode;

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
