//! The hand-off between the broker task and one connection's writer.
//!
//! The broker task appends whole [`Transmit`]s and wakes the writer; the writer takes everything
//! at once, encodes it into one buffer and writes it with one call. The outbox needs no bound of
//! its own: the broker accounts every byte it hands over until the writer reports it written,
//! and stops feeding a connection that falls behind (see `Broker::handle_written`).

use std::sync::Mutex;

use tokio::sync::Notify;

use crate::broker::{CloseKind, StreamId, Transmit};

#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    notify: Notify,
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
