//! Keep alive from the client's side (3.1.2.10): when to send PINGREQ, and when the server is
//! overdue.
//!
//! The client must not stay silent longer than the keep alive [MQTT-3.1.2-23], so a PINGREQ
//! goes out one keep alive after the last packet sent, whatever stream carried it. If the
//! PINGRESP does not come within another keep alive the server is considered gone (3.1.2.10:
//! "a reasonable amount of time").

use std::time::{Duration, Instant};

#[derive(Debug)]
pub(super) struct KeepAlive {
    /// Zero turns the mechanism off (3.1.2.10).
    interval: Duration,
    last_sent: Instant,
    /// When the PINGREQ awaiting its PINGRESP was sent.
    ping_sent: Option<Instant>,
}

/// What the keep alive timer asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum KeepAliveAction {
    Nothing,
    SendPing,
    /// No PINGRESP within this long after PINGREQ.
    ServerOverdue(Duration),
}

impl KeepAlive {
    pub fn new(interval: Duration, now: Instant) -> KeepAlive {
        KeepAlive {
            interval,
            last_sent: now,
            ping_sent: None,
        }
    }

    pub fn packet_sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    pub fn pong_received(&mut self) {
        self.ping_sent = None;
    }

    pub fn deadline(&self) -> Option<Instant> {
        if self.interval.is_zero() {
            return None;
        }
        Some(match self.ping_sent {
            Some(sent) => sent + self.interval,
            None => self.last_sent + self.interval,
        })
    }

    pub fn poll(&mut self, now: Instant) -> KeepAliveAction {
        let Some(deadline) = self.deadline() else {
            return KeepAliveAction::Nothing;
        };
        if now < deadline {
            return KeepAliveAction::Nothing;
        }
        if self.ping_sent.is_some() {
            return KeepAliveAction::ServerOverdue(self.interval);
        }
        self.ping_sent = Some(now);
        KeepAliveAction::SendPing
    }
}
