//! The bench payload: a 16-byte header that lets a subscriber measure delivery latency and
//! detect loss, duplicates and reordering per publisher, padded to the requested size.
//!
//! ```text
//! bytes 0..8    send time: nanoseconds since the Unix epoch, u64 little-endian
//! bytes 8..12   publisher id, u32 little-endian
//! bytes 12..16  sequence number within that publisher, from 0, u32 little-endian
//! bytes 16..    padding ('.' bytes) up to --size
//! ```
//!
//! The send time comes from a [`Clock`]: a monotonic clock (`Instant`) anchored once to the
//! wall clock. Within one process every publisher and subscriber share the same anchor, so
//! latencies are exact differences of one monotonic clock; a `mqttd bench sub` in another
//! process on the same machine agrees to within the two anchors' wall-clock reading (well under
//! a millisecond unless the clock is stepped between them).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the header; the smallest payload `mqttd bench` sends.
pub const HEADER_LEN: usize = 16;

/// Padding byte after the header.
const PAD: u8 = b'.';

/// What a payload's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Send time, nanoseconds since the Unix epoch on the sender's [`Clock`].
    pub sent_nanos: u64,
    pub publisher: u32,
    pub seq: u32,
}

/// A monotonic clock reading nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_unix_nanos: u64,
}

impl Clock {
    /// Anchors a new clock to the wall clock now.
    pub fn new() -> Clock {
        let base = Instant::now();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Clock {
            base,
            base_unix_nanos: unix,
        }
    }

    /// Nanoseconds since the Unix epoch, never going backwards.
    pub fn now_nanos(&self) -> u64 {
        self.at(Instant::now())
    }

    /// The reading for `instant` (taken after the clock was created).
    pub fn at(&self, instant: Instant) -> u64 {
        let since = instant.saturating_duration_since(self.base).as_nanos() as u64;
        self.base_unix_nanos.saturating_add(since)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// A payload of `size` bytes (at least [`HEADER_LEN`]) carrying `header`.
pub fn encode(header: Header, size: usize) -> Bytes {
    let size = size.max(HEADER_LEN);
    let mut out = BytesMut::with_capacity(size);
    out.put_u64_le(header.sent_nanos);
    out.put_u32_le(header.publisher);
    out.put_u32_le(header.seq);
    out.resize(size, PAD);
    out.freeze()
}

/// The header of a bench payload; `None` if the payload is too short to be one.
pub fn decode(payload: &[u8]) -> Option<Header> {
    let header: &[u8; HEADER_LEN] = payload.get(..HEADER_LEN)?.try_into().ok()?;
    let (time, rest) = header.split_at(8);
    let (publisher, seq) = rest.split_at(4);
    Some(Header {
        sent_nanos: u64::from_le_bytes(time.try_into().ok()?),
        publisher: u32::from_le_bytes(publisher.try_into().ok()?),
        seq: u32::from_le_bytes(seq.try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let header = Header {
            sent_nanos: 1_700_000_000_123_456_789,
            publisher: 0xABCD_0003,
            seq: 41,
        };
        let payload = encode(header, 100);
        assert_eq!(payload.len(), 100);
        assert_eq!(decode(&payload), Some(header));
        assert!(payload[HEADER_LEN..].iter().all(|&b| b == PAD));
        // The exact layout, so another tool can produce or read it.
        assert_eq!(&payload[..8], &header.sent_nanos.to_le_bytes());
        assert_eq!(&payload[8..12], &[3, 0, 0xCD, 0xAB]);
        assert_eq!(&payload[12..16], &[41, 0, 0, 0]);
    }

    #[test]
    fn short_sizes_still_carry_the_header() {
        let header = Header {
            sent_nanos: 7,
            publisher: 1,
            seq: u32::MAX,
        };
        let payload = encode(header, 3);
        assert_eq!(payload.len(), HEADER_LEN);
        assert_eq!(decode(&payload), Some(header));
        assert_eq!(decode(&payload[..HEADER_LEN - 1]), None);
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"hello world"), None);
    }

    #[test]
    fn clock_is_monotonic_and_near_the_wall_clock() {
        let clock = Clock::new();
        let a = clock.now_nanos();
        let b = clock.now_nanos();
        assert!(b >= a);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(
            wall.abs_diff(b) < 5_000_000_000,
            "within seconds of the wall clock"
        );
        let later = Instant::now() + std::time::Duration::from_millis(5);
        assert_eq!(
            clock.at(later) - clock.at(later - std::time::Duration::from_millis(5)),
            5_000_000
        );
    }
}
