//! What the broker counts about itself: plain integers and fixed-bucket histograms owned by
//! the broker task, bumped in place (no lock, no atomic, no allocation per message). The glue
//! asks for a snapshot ([`super::Broker::metrics`]) when someone scrapes `/metrics`, reads
//! `$SYS` or the REST API; gauges (connections by transport, queued messages...) are counted
//! then, from the state itself, so they can never drift from it.

/// Upper bounds of the latency histograms' buckets, in microseconds (the last bucket, +Inf,
/// is implicit).
pub const LATENCY_BOUNDS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 250_000, 1_000_000, 10_000_000,
];

/// A histogram with the fixed buckets of [`LATENCY_BOUNDS_US`]: one comparison loop and three
/// additions per observation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is above every bound.
    pub buckets: [u64; 13],
    pub count: u64,
    pub sum_us: u64,
}

impl Histogram {
    pub fn observe_us(&mut self, us: u64) {
        let i = LATENCY_BOUNDS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        // `i` is at most LATENCY_BOUNDS_US.len(), the last bucket (+Inf): `get_mut` never misses.
        if let Some(bucket) = self.buckets.get_mut(i) {
            *bucket += 1;
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn observe(&mut self, elapsed: std::time::Duration) {
        self.observe_us(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds another histogram's observations (the same buckets).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }
}

/// The last publish-to-delivery latency computed: a message routed to a hundred subscribers
/// in one batch has one latency (one receive instant, one `now`), computed once instead of
/// once per subscriber.
#[derive(Debug, Default)]
pub struct LatencyMemo(Option<(std::time::Instant, std::time::Instant, u64)>);

impl LatencyMemo {
    /// Microseconds from `received` to `now` (zero if `now` is earlier).
    pub fn micros(&mut self, received: std::time::Instant, now: std::time::Instant) -> u64 {
        if let Some((r, n, us)) = self.0 {
            if r == received && n == now {
                return us;
            }
        }
        let elapsed = now.saturating_duration_since(received);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.0 = Some((received, now, us));
        us
    }
}

/// A counter per MQTT reason code (one byte): CONNACK codes, DISCONNECT reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonCounts(pub [u64; 256]);

impl Default for ReasonCounts {
    fn default() -> ReasonCounts {
        ReasonCounts([0; 256])
    }
}

impl ReasonCounts {
    pub fn add(&mut self, code: crate::codec::ReasonCode) {
        // A u8 into 256 counters: the bounds check is compiled away.
        if let Some(n) = self.0.get_mut(usize::from(code.0)) {
            *n += 1;
        }
    }

    /// The codes counted at least once, with their counts.
    pub fn nonzero(&self) -> impl Iterator<Item = (u8, u64)> + '_ {
        (0..=255u8)
            .zip(self.0.iter())
            .filter_map(|(c, &n)| (n > 0).then_some((c, n)))
    }
}

/// The control packet type of PUBLISH.
pub const PUBLISH_TYPE: u8 = 3;

/// Lower-case names of the control packet types (index = type), for metric labels.
pub const PACKET_TYPE_NAMES: [&str; 16] = [
    "reserved",
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
    "auth",
];

/// Packet and byte counts per MQTT control packet type (index = type, 1..=15).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PacketCounts {
    pub packets: [u64; 16],
    pub bytes: [u64; 16],
}

impl PacketCounts {
    pub fn add(&mut self, packet_type: u8, bytes: usize) {
        // A 4-bit type into 16 counters: the bounds checks are compiled away.
        let i = usize::from(packet_type & 0x0f);
        if let (Some(p), Some(b)) = (self.packets.get_mut(i), self.bytes.get_mut(i)) {
            *p += 1;
            *b += bytes as u64;
        }
    }

    pub fn total_packets(&self) -> u64 {
        self.packets.iter().sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.bytes.iter().sum()
    }
}

/// Counters the broker keeps about itself, and gauges counted when the snapshot is taken.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Metrics {
    pub connections: u64,
    pub sessions: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    /// QoS 0 messages dropped because the subscriber's outbound buffer was full.
    pub dropped_qos0: u64,
    /// QoS 1/2 messages dropped because a session queue was full.
    pub dropped_queue_full: u64,
    /// Messages dropped because they exceeded the subscriber's Maximum Packet Size.
    pub dropped_too_large: u64,
    pub dropped_expired: u64,
    /// Messages the ACL kept from being published or delivered.
    pub dropped_acl: u64,
    /// QoS 0 deliveries sent in QUIC datagrams.
    pub datagrams_sent: u64,
    /// QoS 0 PUBLISH packets received in QUIC datagrams and routed.
    pub datagrams_received: u64,
    /// Datagrams dropped: malformed, not a QoS 0 PUBLISH, or with a topic alias.
    pub datagrams_dropped: u64,
    /// QUIC connections whose client changed address (connection migration).
    pub migrations: u64,
    /// PUBLISH packets, subscriptions and deliveries (retained ones too) the ACL refused.
    pub acl_denied: u64,
    /// Connections refused by `max_connections` / `max_connections_per_address` (CONNACK 0x97
    /// or, in a flood, closed without an answer).
    pub connections_refused: u64,
    /// Of those, refused by `max_connection_rate_per_address` (CONNACK 0x9F).
    pub connections_rate_limited: u64,
    /// Connections closed for publishing faster than `max_publish_rate_per_client` (0x96).
    pub publishes_rate_limited: u64,
    /// CONNECTs refused because `max_sessions` sessions exist (CONNACK 0x97).
    pub sessions_refused: u64,
    /// Subscriptions refused by `max_subscriptions` (SUBACK 0x97).
    pub subscriptions_refused: u64,
    /// Retained messages not stored because of `max_retained_messages` / `max_retained_bytes`.
    pub retained_refused: u64,
    /// QUIC streams refused because the client opened them too fast.
    pub streams_refused: u64,
    /// QUIC datagrams dropped because the client sent them too fast.
    pub datagrams_rate_limited: u64,
    /// Connections closed because they did not read what they were sent (output overflow).
    pub output_overflows: u64,
    /// Connections closed for a malformed packet or a protocol error (DISCONNECT 0x81/0x82 or
    /// the 3.1.1 close).
    pub protocol_errors: u64,
    /// Times a publisher stopped being read because a subscriber fell behind (throttle.rs).
    pub publisher_pauses: u64,
    /// Connections that stayed behind through a whole publisher pause (they then lose QoS 0).
    pub stuck_subscribers: u64,
    /// Network connections opened (accepted by a listener), whatever became of them.
    pub connections_opened: u64,
    /// Open connections per transport (`tcp`, `quic`, `mqtts`...), from the peer labels.
    pub connections_by_transport: Vec<(String, u64)>,
    /// Sessions with a connection.
    pub sessions_connected: u64,
    /// Subscriptions (plain and shared) of every session, and of them the shared ones.
    pub subscriptions: u64,
    pub shared_subscriptions: u64,
    /// Retained messages stored and their size (payload, topic, trie estimate).
    pub retained_messages: u64,
    pub retained_bytes: u64,
    /// QoS 1/2 messages inflight toward clients, and queued in sessions (with their bytes).
    pub inflight_messages: u64,
    pub queued_messages: u64,
    pub queued_bytes: u64,
    /// Published messages that matched no subscriber.
    pub dropped_no_subscribers: u64,
    /// Packets and bytes received from clients, by packet type.
    pub received: PacketCounts,
    /// Packets and bytes queued for clients, by packet type.
    pub sent: PacketCounts,
    /// CONNACKs sent, by reason code (0 = accepted).
    pub connacks: ReasonCounts,
    /// DISCONNECTs received from clients, by reason code.
    pub client_disconnects: ReasonCounts,
    /// Connections the broker closed, by reason code (keep alive timeout, takeover,
    /// protocol errors, shutdown...).
    pub server_disconnects: ReasonCounts,
    /// Connections that ended without a DISCONNECT (EOF, reset, I/O error).
    pub connections_lost: u64,
    /// Sessions created (new, or a clean start), resumed, taken over by a new connection of
    /// the same client id, and expired (Session Expiry Interval).
    pub sessions_created: u64,
    pub sessions_resumed: u64,
    pub sessions_taken_over: u64,
    pub sessions_expired: u64,
    /// Time from a PUBLISH being received to its delivery being queued for a subscriber's
    /// connection (in the same batch: 0; queued while offline or behind: the wait).
    pub delivery_latency: Histogram,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The memo answers for the same pair of instants, and measures again for any other.
    #[test]
    fn latency_memo_measures_each_pair_of_instants() {
        let mut memo = LatencyMemo::default();
        let received = Instant::now();
        let now = received + Duration::from_micros(1_500);
        assert_eq!(memo.micros(received, now), 1_500);
        assert_eq!(memo.micros(received, now), 1_500);
        assert_eq!(
            memo.micros(received, now + Duration::from_micros(500)),
            2_000
        );
        let later = received + Duration::from_micros(10);
        assert_eq!(memo.micros(later, now), 1_490);
        // A clock read before the message arrived counts as zero, never wraps.
        assert_eq!(memo.micros(now, received), 0);
    }
}
