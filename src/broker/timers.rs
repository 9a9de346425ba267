//! Deadlines of the broker state machine (keep alive, CONNECT timeout, will delay, session
//! expiry), kept in one min-heap.
//!
//! Entries are lazy: rescheduling pushes a new entry and the owner checks, when an entry fires,
//! whether it is still current. This keeps the per-packet cost of keep alive at one store of an
//! `Instant`, instead of a heap update per packet.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::types::{ConnId, SessionId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Check the connection's keep alive / CONNECT timeout.
    Connection(ConnId),
    /// A delayed will message of this session may be due.
    Will(SessionId),
    /// This disconnected session may have expired.
    SessionExpiry(SessionId),
    /// This publisher may have been paused for `limits.max_publisher_pause_ms`.
    PublisherPause(ConnId),
    /// The next `$SYS` update is due (sys.rs).
    Sys,
    /// Cluster session states wait to go out (cluster_session.rs).
    ClusterCheckpoint,
    /// The periodic pass that gives back idle sessions' large inflight tables.
    SweepInflights,
}

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl Timers {
    pub fn schedule(&mut self, at: Instant, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns one timer due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, t))| t),
            _ => None,
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.schedule(t0 + Duration::from_secs(5), Timer::Connection(ConnId(2)));
        timers.schedule(t0 + Duration::from_secs(1), Timer::Will(SessionId(1)));
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        assert_eq!(
            timers.pop_due(t0 + Duration::from_secs(3)),
            Some(Timer::Will(SessionId(1)))
        );
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(3)), None);
        assert_eq!(
            timers.pop_due(t0 + Duration::from_secs(5)),
            Some(Timer::Connection(ConnId(2)))
        );
        assert!(timers.is_empty());
    }
}
