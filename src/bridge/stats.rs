//! Counters of one bridge: plain atomics, updated once per message by the forwarding task and
//! read by whoever reports them (logs, metrics, an API).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct BridgeStats {
    up: AtomicBool,
    forwarded_out: AtomicU64,
    forwarded_in: AtomicU64,
    in_flight_out: AtomicU64,
    in_flight_in: AtomicU64,
    dropped: AtomicU64,
    downgraded: AtomicU64,
    reconnects: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeStatsSnapshot {
    /// The remote connection is up.
    pub up: bool,
    /// Messages the remote acknowledged (QoS 1/2) or that were written to it (QoS 0).
    pub forwarded_out: u64,
    /// Messages this broker took from the remote.
    pub forwarded_in: u64,
    /// Messages on their way out, not yet acknowledged by the remote (more wait in the
    /// bridge's session in this broker, counted by the broker's queued messages).
    pub in_flight_out: u64,
    pub in_flight_in: u64,
    /// Messages not forwarded: QoS 0 while the remote was away, or refused by the other side.
    pub dropped: u64,
    /// Messages sent with a lower QoS than they came with (the topic entry's `qos`).
    pub downgraded: u64,
    /// Connections to the remote after the first.
    pub reconnects: u64,
    /// QUIC: connections to the remote whose CONNECT went out as 0-RTT early data and was
    /// taken (a reconnection one round trip shorter).
    pub zero_rtt_connects: u64,
    /// QUIC: connections made over the fallback transport because QUIC got no answer.
    pub fallback_connects: u64,
    /// QUIC: connections moved from the fallback back to QUIC once it answered again.
    pub quic_returns: u64,
}

impl BridgeStats {
    pub fn snapshot(&self) -> BridgeStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BridgeStatsSnapshot {
            up: self.up.load(Ordering::Relaxed),
            forwarded_out: get(&self.forwarded_out),
            forwarded_in: get(&self.forwarded_in),
            in_flight_out: get(&self.in_flight_out),
            in_flight_in: get(&self.in_flight_in),
            dropped: get(&self.dropped),
            downgraded: get(&self.downgraded),
            reconnects: get(&self.reconnects),
            zero_rtt_connects: 0,
            fallback_connects: 0,
            quic_returns: 0,
        }
    }

    pub(super) fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    pub(super) fn forwarded(&self, way: super::topics::Way) {
        match way {
            super::topics::Way::Out => &self.forwarded_out,
            super::topics::Way::In => &self.forwarded_in,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn in_flight(&self, way: super::topics::Way, n: usize) {
        match way {
            super::topics::Way::Out => &self.in_flight_out,
            super::topics::Way::In => &self.in_flight_in,
        }
        .store(n as u64, Ordering::Relaxed);
    }

    /// Adds one to the dropped count and returns the new count.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(super) fn downgraded(&self) -> u64 {
        self.downgraded.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(super) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}
