//! Backpressure from connections that fall behind to the publishers that feed them.
//!
//! Why: without it, publishers that together outrun a subscriber fill its outbound buffer and
//! the broker must drop QoS 0 messages to it (and queue, then drop, QoS 1/2). A subscriber
//! whose QoS 1/2 window stays full backs up its session queue the same way, however fast its
//! connection writes: past the queue's high mark (`budget.rs`) it holds its publishers too,
//! until the queue is down to its low mark. Pausing the
//! publishers' reads instead lets TCP/QUIC flow control slow them down to what the subscriber
//! takes, so nothing is lost, which is what mosquitto and rumqttd users expect.
//!
//! The danger is the opposite one: a subscriber that never reads would stall every publisher
//! of its topics. So a pause lasts at most `limits.max_publisher_pause_ms`; a connection still
//! behind when a pause it caused times out is *stuck*: it holds no publisher again until it
//! has caught up, and meanwhile its QoS 0 deliveries are dropped and QoS 1/2 queue (the
//! overflow policy of README "Behaviour where the spec leaves a choice").
//!
//! The state machine only decides; the glue stops reading a paused connection
//! ([`Output::PauseReading`](super::Output::PauseReading)).

use std::time::{Duration, Instant};

use ahash::{AHashMap, AHashSet};

use super::timers::Timer;
use super::{Broker, ConnId, SessionId};

#[derive(Debug, Default)]
pub(super) struct Throttle {
    /// A connection behind on writing -> the publishers paused on its account.
    holding: AHashMap<ConnId, Vec<ConnId>>,
    /// A paused publisher -> how many connections hold it, and since when.
    paused: AHashMap<ConnId, (u32, Instant)>,
    /// Connections that stayed behind through a whole pause: they hold no one until they
    /// catch up.
    stuck: AHashSet<ConnId>,
}

impl Broker {
    /// A delivery from `publisher` met `slow`, a connection behind on writing. Returns whether
    /// `slow` may still be given more (it holds the publisher) rather than have QoS 0 dropped.
    /// `publisher` is the publishing session, resolved to its connection only here (off the
    /// path of deliveries to connections that keep up).
    pub(super) fn hold_publisher(
        &mut self,
        publisher: Option<SessionId>,
        slow: ConnId,
        now: Instant,
    ) -> bool {
        let max_pause = self.settings.limits.max_publisher_pause_ms;
        if max_pause == 0 || self.throttle.stuck.contains(&slow) {
            return false;
        }
        let publisher = publisher
            .and_then(|sid| self.sessions.get(&sid))
            .and_then(|s| s.conn);
        let Some(publisher) = publisher.filter(|p| *p != slow) else {
            // In-process publishers, wills and a client's own messages are not paused; the
            // buffer limit still bounds what waits for `slow`.
            return false;
        };
        let holders = self.throttle.holding.entry(slow).or_default();
        if holders.contains(&publisher) {
            return true;
        }
        holders.push(publisher);
        let entry = self.throttle.paused.entry(publisher).or_insert((0, now));
        entry.0 += 1;
        if entry.0 == 1 {
            entry.1 = now;
            self.metrics.publisher_pauses += 1;
            self.out.pause_reading(publisher, true);
            self.timers.schedule(
                now + Duration::from_millis(max_pause),
                Timer::PublisherPause(publisher),
            );
        }
        true
    }

    /// `slow` caught up (or is gone): the publishers it held go on, unless another connection
    /// still holds them.
    pub(super) fn release_publishers(&mut self, slow: ConnId) {
        self.throttle.stuck.remove(&slow);
        let Some(holders) = self.throttle.holding.remove(&slow) else {
            return;
        };
        for publisher in holders {
            if let Some(entry) = self.throttle.paused.get_mut(&publisher) {
                entry.0 -= 1;
                if entry.0 == 0 {
                    self.throttle.paused.remove(&publisher);
                    self.out.pause_reading(publisher, false);
                }
            }
        }
    }

    /// `slow`, not behind on writing, lets the publishers it holds go (or stops being stuck)
    /// once the QoS 1/2 queue of its session `sid` is down to its low mark (budget.rs).
    /// Cheap when it holds nothing: called on every acknowledgement.
    pub(super) fn release_if_drained(&mut self, sid: SessionId, slow: ConnId) {
        if !self.throttle.holding.contains_key(&slow) && !self.throttle.stuck.contains(&slow) {
            return;
        }
        let drained = self
            .sessions
            .get(&sid)
            .zip(self.conns.get(&slow))
            .is_none_or(|(s, c)| {
                self.queue_budget
                    .drained(s.queue.len(), s.queued_bytes, c.send_window)
            });
        if drained {
            self.release_publishers(slow);
        }
    }

    /// A paused connection is gone: forget it (the connections holding it drop it lazily).
    pub(super) fn forget_publisher(&mut self, conn: ConnId) {
        self.throttle.paused.remove(&conn);
        self.release_publishers(conn);
    }

    /// The pause of `publisher` may have lasted `max_publisher_pause_ms`: whoever holds it
    /// is stuck and lets go of every publisher.
    pub(super) fn check_publisher_pause(&mut self, publisher: ConnId, now: Instant) {
        let max_pause = Duration::from_millis(self.settings.limits.max_publisher_pause_ms);
        match self.throttle.paused.get(&publisher) {
            Some((_, since)) if now >= *since + max_pause => {}
            // Resumed since (a later pause has its own timer).
            _ => return,
        }
        let stuck: Vec<ConnId> = self
            .throttle
            .holding
            .iter()
            .filter(|(_, holders)| holders.contains(&publisher))
            .map(|(slow, _)| *slow)
            .collect();
        for slow in stuck {
            self.release_publishers(slow);
            self.throttle.stuck.insert(slow);
            self.metrics.stuck_subscribers += 1;
            tracing::debug!(
                conn = slow.0,
                "connection stayed behind for a whole publisher pause: it holds no publisher until it catches up"
            );
        }
    }
}
