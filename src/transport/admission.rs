//! Admission of QUIC connections before their handshake.
//!
//! The broker enforces `limits.max_connections` and `limits.max_connections_per_address` on every
//! transport, answering CONNACK 0x97 (broker/limits.rs). Over QUIC that answer can only come
//! after the TLS handshake, which costs the broker about a millisecond of CPU each: a client
//! opening connections in a loop would keep it busy with handshakes it is going to refuse anyway.
//! So the QUIC listener counts its own connections (handshaking or established) and refuses a
//! new one *before* the handshake, with QUIC's CONNECTION_REFUSED and no TLS work, when its
//! address, or the listener as a whole, already holds as many as those limits allow. Below them
//! nothing changes: the broker's count, which includes TCP and MQTTS, still decides with CONNACK.
//!
//! `limits.max_connection_rate_per_address` is applied here too, for the same reason: an address
//! opening QUIC connections faster than it allows is refused before the handshake instead of
//! after it (the broker's own check, at CONNECT, still counts every transport together).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ahash::AHashMap;

use crate::config::Limits;
use crate::rate::RatePerAddress;

#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    /// 0: no limit per address.
    max_per_address: usize,
    live: Mutex<Live>,
    refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Live {
    total: usize,
    per_address: AHashMap<IpAddr, usize>,
    /// New connections per second per address (`limits.max_connection_rate_per_address`).
    rates: RatePerAddress,
}

/// A connection's place in the count; given back when dropped (the connection's task ends).
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    pub fn new(limits: &Limits) -> Admission {
        Admission {
            max_total: limits.max_connections,
            max_per_address: limits.max_connections_per_address,
            live: Mutex::new(Live {
                rates: RatePerAddress::new(limits.max_connection_rate_per_address),
                ..Live::default()
            }),
            refused: AtomicU64::new(0),
        }
    }

    /// A ticket for a new connection from `ip` arriving at `now`, or `None` when it must be
    /// refused.
    pub fn try_admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Option<Ticket> {
        let mut live = self.lock();
        let from_ip = live.per_address.get(&ip).copied().unwrap_or(0);
        if live.total >= self.max_total
            || (self.max_per_address > 0 && from_ip >= self.max_per_address)
            || !live.rates.allow(ip, now)
        {
            drop(live);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        live.total += 1;
        *live.per_address.entry(ip).or_insert(0) += 1;
        Some(Ticket {
            admission: self.clone(),
            ip,
        })
    }

    /// Connections refused before their handshake so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        // Every update is complete before the lock is released: a poisoned lock is consistent.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut live = self.admission.lock();
        live.total = live.total.saturating_sub(1);
        if let Some(n) = live.per_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                live.per_address.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    #[test]
    fn the_connection_rate_refuses_before_the_handshake_and_refills() {
        let limits = Limits {
            max_connection_rate_per_address: 2,
            ..Limits::default()
        };
        let a = Arc::new(Admission::new(&limits));
        let (one, two): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t = t0();
        let tickets: Vec<_> = (0..2)
            .map(|_| a.try_admit(one, t).expect("burst"))
            .collect();
        assert!(a.try_admit(one, t).is_none(), "past the rate");
        assert!(
            a.try_admit(two, t).is_some(),
            "another address has its own rate"
        );
        drop(tickets);
        assert!(
            a.try_admit(one, t).is_none(),
            "closing does not give tokens back"
        );
        let later = t + std::time::Duration::from_millis(500);
        assert!(
            a.try_admit(one, later).is_some(),
            "one token back after 1/rate s"
        );
        assert_eq!(a.refused(), 2);
    }

    fn admission(total: usize, per_address: usize) -> Arc<Admission> {
        let limits = Limits {
            max_connections: total,
            max_connections_per_address: per_address,
            ..Limits::default()
        };
        Arc::new(Admission::new(&limits))
    }

    #[test]
    fn the_per_address_limit_refuses_until_a_ticket_is_given_back() {
        let a = admission(100, 2);
        let (one, two): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t1 = a.try_admit(one, t0()).expect("first");
        let _t2 = a.try_admit(one, t0()).expect("second");
        assert!(
            a.try_admit(one, t0()).is_none(),
            "third from the same address"
        );
        let _other = a
            .try_admit(two, t0())
            .expect("another address is counted apart");
        assert_eq!(a.refused(), 1);
        drop(t1);
        assert!(a.try_admit(one, t0()).is_some(), "a slot came back");
    }

    #[test]
    fn the_total_limit_counts_every_address_and_zero_means_no_address_limit() {
        let a = admission(3, 0);
        let tickets: Vec<_> = (1..=3)
            .map(|i| {
                a.try_admit(format!("10.0.0.{i}").parse().unwrap(), t0())
                    .expect("below the total")
            })
            .collect();
        assert!(a.try_admit("10.0.0.9".parse().unwrap(), t0()).is_none());
        drop(tickets);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let many: Vec<_> = (0..3)
            .map(|_| a.try_admit(ip, t0()).expect("no per-address limit"))
            .collect();
        assert_eq!(many.len(), 3);
        assert!(a.lock().per_address.len() == 1);
        drop(many);
        assert!(a.lock().per_address.is_empty() && a.lock().total == 0);
    }
}
