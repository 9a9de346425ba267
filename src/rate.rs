//! A token bucket for rate limits: the broker's connection rate per address, and the QUIC
//! glue's stream opens and datagrams per connection. `rate` events per second on average,
//! bursts of up to `rate`. Sans-IO: the caller passes the time.

use std::net::IpAddr;
use std::time::Instant;

use ahash::AHashMap;

/// Addresses whose rate is tracked at once before idle ones are forgotten (bounds the table a
/// flood from many addresses can grow).
const MAX_ADDRESSES: usize = 65_536;

/// A token bucket per IP address (`limits.max_connection_rate_per_address`: the broker at
/// CONNECT, the QUIC listener before the handshake).
#[derive(Debug, Default)]
pub struct RatePerAddress {
    /// Events per second per address; 0 means no limit.
    rate: u32,
    buckets: AHashMap<IpAddr, TokenBucket>,
}

impl RatePerAddress {
    pub fn new(rate: u32) -> RatePerAddress {
        RatePerAddress {
            rate,
            buckets: AHashMap::new(),
        }
    }

    /// Whether one more event from `ip` is allowed at `now` (and takes its token if so).
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        if self.buckets.len() >= MAX_ADDRESSES {
            // Addresses that have not been seen lately are forgotten: a full bucket is what a
            // new one would be.
            self.buckets.retain(|_, bucket| !bucket.is_full(now));
        }
        let rate = self.rate;
        self.buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(rate, now))
            .allow(now)
    }
}

#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Events per second; 0 means no limit.
    rate: u32,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket: a burst of `rate` events is allowed at once.
    pub fn new(rate: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            tokens: f64::from(rate),
            last: now,
        }
    }

    /// Whether one more event is allowed at `now` (and takes its token if so).
    pub fn allow(&mut self, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        let rate = f64::from(self.rate);
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full at `now` (nothing used recently: it can be forgotten
    /// and made anew without changing what it allows).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * f64::from(self.rate) >= f64::from(self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, t0);
        assert_eq!((0..20).filter(|_| bucket.allow(t0)).count(), 10);
        // 100 ms later: one more token.
        let t1 = t0 + Duration::from_millis(100);
        assert!(bucket.allow(t1));
        assert!(!bucket.allow(t1));
        // A long pause refills the burst, never more.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| bucket.allow(t2)).count(), 10);
        // Time going backwards gives nothing.
        assert!(!bucket.allow(t0));
    }

    #[test]
    fn zero_means_no_limit() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0, t0);
        assert!((0..10_000).all(|_| bucket.allow(t0)));
    }

    #[test]
    fn a_bucket_is_full_again_once_its_tokens_came_back() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(4, t0);
        assert!(bucket.is_full(t0));
        assert!(bucket.allow(t0));
        assert!(!bucket.is_full(t0));
        assert!(!bucket.is_full(t0 + Duration::from_millis(200)));
        assert!(bucket.is_full(t0 + Duration::from_millis(250)));
    }
}
