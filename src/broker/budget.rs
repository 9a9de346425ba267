//! The output budget: how far a connection may fall behind on writing what the broker hands
//! it, and what happens at each step. Backpressure is this one idea; everything else is
//! bookkeeping around it.
//!
//! The broker counts, per connection, the bytes it handed to the transport and has not yet
//! seen written (`Connection::unwritten`: it adds what it queues, the glue reports what it
//! wrote with `Broker::handle_written`). The glue keeps no limit of its own; it only reports
//! bytes. By that count a connection is:
//!
//! - **keeping up**: everything is sent;
//! - **behind** (past the soft limit, twice the largest packet and at least 128 KiB): QoS 1/2
//!   deliveries wait in its session queue, and the publishers feeding it are paused so that
//!   TCP/QUIC flow control slows them down (`throttle.rs`); QoS 0 is still sent while it
//!   holds them;
//! - **full** (16 times the soft limit): QoS 0 to it is dropped and counted. What arrives
//!   after a pause was read before it: at most `handoff::outbox::MAX_UNHANDLED_READ` (64 KiB) per
//!   publisher waiting in the event queue into the broker task, and reads in progress; 16x
//!   holds that pipeline (at 4x, full-speed fan-in QoS 0 lost up to 8 % of the messages in
//!   some runs, before that per-publisher bound, when the queue could hold 4,096 reads);
//! - **over** (the full limit plus the soft limit): the client does not read what it is sent
//!   (deliveries stop at *behind* and *full*, so only answers to its own packets, PUBACKs or
//!   PINGRESPs, can get here): it is closed with 0x97 Quota exceeded.
//!
//! Control packets count [`CONTROL_PACKET_COST`] bytes, what holding one costs the transport
//! (its share of a `Transmit` and of an allocation), not their 2 to 5 bytes on the wire: a
//! client that publishes without reading is closed after a bounded amount of memory.
//!
//! Inbound, the bounds are the event channel into the broker task (`handoff::EVENT_QUEUE`):
//! readers wait when it is full, so a busy broker slows every reader down evenly; and per
//! connection, `handoff::outbox::MAX_UNHANDLED_READ` bytes read and not yet handled by the broker
//! task. The second bounds what a pause cannot take back: in a fan-out every byte a publisher
//! got in before its pause becomes one copy per subscriber (1 publisher to 100 subscribers at
//! full speed peaked at 37 to 54 MiB without it, 22 to 26 MiB with it).
//!
//! The second thing that can back up is a connected session's queue of QoS 1/2 deliveries:
//! a subscriber whose window (its Receive Maximum) is full waits for its acknowledgements,
//! however fast its connection writes. Publishers that together outrun its acknowledgements
//! would fill the queue (`limits.max_queued_messages`, `max_queued_bytes`) and make it drop
//! its oldest messages. So a queue past its **high mark** ([`QueueBudget::backed_up`]) pauses
//! the publishers feeding it exactly as *behind* does, and they go on once it is down to its
//! **low mark** ([`QueueBudget::drained`]) and the connection is not behind. The gap between
//! the marks keeps the subscriber busy while the publishers' reads resume, and makes one pause
//! cover hundreds of messages; what arrives after a pause (the publishers' messages in flight,
//! bounded by their windows toward us) fits in the rest of the queue.

/// What a queued control packet (anything but PUBLISH) counts for in the budget.
pub const CONTROL_PACKET_COST: usize = 64;

/// Multiple of the soft limit at which QoS 0 to a connection is dropped.
const FULL_FACTOR: usize = 16;

/// A connection's standing against its budget, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    KeepingUp,
    Behind,
    Full,
    Over,
}

/// The limits, in accounted bytes, of what a connection may leave unwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputBudget {
    behind: usize,
    full: usize,
    over: usize,
}

impl OutputBudget {
    /// The budget for connections whose packets are at most `max_packet_size` bytes.
    pub fn new(max_packet_size: u32) -> OutputBudget {
        let behind = (max_packet_size as usize).max(64 * 1024) * 2;
        let full = behind * FULL_FACTOR;
        OutputBudget {
            behind,
            full,
            over: full + behind,
        }
    }

    pub fn standing(&self, unwritten: usize) -> Standing {
        if unwritten >= self.over {
            Standing::Over
        } else if unwritten >= self.full {
            Standing::Full
        } else if unwritten >= self.behind {
            Standing::Behind
        } else {
            Standing::KeepingUp
        }
    }

    /// Behind or worse: nothing more is started for the connection.
    pub fn is_behind(&self, unwritten: usize) -> bool {
        unwritten >= self.behind
    }

    /// The accounted bytes at which a connection is closed.
    #[cfg(test)]
    pub fn over_limit(&self) -> usize {
        self.over
    }
}

/// Smallest high mark of a session queue, in messages: room for a burst of several windows.
const QUEUE_HIGH_MIN: usize = 256;

/// The marks of a connected session's QoS 1/2 queue (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBudget {
    max_messages: usize,
    max_bytes: usize,
}

impl QueueBudget {
    pub fn new(max_queued_messages: usize, max_queued_bytes: usize) -> QueueBudget {
        QueueBudget {
            max_messages: max_queued_messages,
            max_bytes: max_queued_bytes,
        }
    }

    /// The queue length at which publishers are paused: four windows of `send_window`, at
    /// least [`QUEUE_HIGH_MIN`], at most half of what the queue may hold.
    fn high(&self, send_window: usize) -> usize {
        (send_window * 4)
            .max(QUEUE_HIGH_MIN)
            .min(self.max_messages / 2)
            .max(1)
    }

    /// Past the high mark (messages or bytes): pause the publishers feeding the queue.
    pub fn backed_up(&self, len: usize, bytes: usize, send_window: usize) -> bool {
        len >= self.high(send_window) || bytes >= self.max_bytes / 2
    }

    /// Down to the low mark (half the high mark, a quarter of the bytes): let them go on.
    pub fn drained(&self, len: usize, bytes: usize, send_window: usize) -> bool {
        len <= self.high(send_window) / 2 && bytes <= self.max_bytes / 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steps_follow_the_largest_packet() {
        let b = OutputBudget::new(1024 * 1024);
        assert_eq!(b.standing(0), Standing::KeepingUp);
        assert_eq!(b.standing(2 * 1024 * 1024 - 1), Standing::KeepingUp);
        assert_eq!(b.standing(2 * 1024 * 1024), Standing::Behind);
        assert_eq!(b.standing(32 * 1024 * 1024), Standing::Full);
        assert_eq!(b.standing(34 * 1024 * 1024), Standing::Over);
        assert_eq!(b.over_limit(), 34 * 1024 * 1024);
        // Small packets still get room for a burst.
        let small = OutputBudget::new(64);
        assert!(!small.is_behind(128 * 1024 - 1));
        assert!(small.is_behind(128 * 1024));
    }

    #[test]
    fn a_queue_backs_up_at_four_windows_and_drains_at_two() {
        let q = QueueBudget::new(10_000, 64 * 1024 * 1024);
        assert!(!q.backed_up(399, 0, 100));
        assert!(q.backed_up(400, 0, 100));
        assert!(!q.drained(201, 0, 100));
        assert!(q.drained(200, 0, 100));
        // Small windows still get the minimum; bytes count as well.
        assert!(!q.backed_up(255, 0, 1));
        assert!(q.backed_up(256, 0, 1));
        assert!(q.backed_up(1, 32 * 1024 * 1024, 1));
        assert!(!q.drained(1, 16 * 1024 * 1024 + 1, 1));
        // Never above half of what the queue may hold.
        let small = QueueBudget::new(100, 64 * 1024 * 1024);
        assert!(small.backed_up(50, 0, 100));
        assert!(small.drained(25, 0, 100));
    }
}
