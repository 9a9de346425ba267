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

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ahash::AHashMap;

use crate::config::Limits;

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
            live: Mutex::default(),
            refused: AtomicU64::new(0),
        }
    }

    /// A ticket for a new connection from `ip`, or `None` when it must be refused.
    pub fn try_admit(self: &Arc<Self>, ip: IpAddr) -> Option<Ticket> {
        let mut live = self.lock();
        let from_ip = live.per_address.get(&ip).copied().unwrap_or(0);
        if live.total >= self.max_total
            || (self.max_per_address > 0 && from_ip >= self.max_per_address)
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
        let t1 = a.try_admit(one).expect("first");
        let _t2 = a.try_admit(one).expect("second");
        assert!(a.try_admit(one).is_none(), "third from the same address");
        let _other = a.try_admit(two).expect("another address is counted apart");
        assert_eq!(a.refused(), 1);
        drop(t1);
        assert!(a.try_admit(one).is_some(), "a slot came back");
    }

    #[test]
    fn the_total_limit_counts_every_address_and_zero_means_no_address_limit() {
        let a = admission(3, 0);
        let tickets: Vec<_> = (1..=3)
            .map(|i| {
                a.try_admit(format!("10.0.0.{i}").parse().unwrap())
                    .expect("below the total")
            })
            .collect();
        assert!(a.try_admit("10.0.0.9".parse().unwrap()).is_none());
        drop(tickets);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let many: Vec<_> = (0..3)
            .map(|_| a.try_admit(ip).expect("no per-address limit"))
            .collect();
        assert_eq!(many.len(), 3);
        assert!(a.lock().per_address.len() == 1);
        drop(many);
        assert!(a.lock().per_address.is_empty() && a.lock().total == 0);
    }
}
