//! The live QUIC connections by [`ConnId`], so the admin API can read quinn's statistics
//! (RTT, congestion window, losses, MTU) at scrape time, and the totals of the connections
//! that ended, so the counters built from them never go down.
//!
//! Touched twice per connection (open and end) under a mutex; never per packet or message.
//! Each connection also counts its open streams by kind ([`StreamCounts`]: an atomic add when
//! a stream starts being read or written and one when it ends, never per packet).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ahash::AHashMap;

use crate::broker::ConnId;

/// Path and UDP counters summed over connections.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QuicTotals {
    pub connections: u64,
    pub udp_tx_datagrams: u64,
    pub udp_tx_bytes: u64,
    pub udp_rx_datagrams: u64,
    pub udp_rx_bytes: u64,
    pub sent_packets: u64,
    pub lost_packets: u64,
    pub lost_bytes: u64,
    pub congestion_events: u64,
    pub black_holes: u64,
    pub datagram_frames_tx: u64,
    pub datagram_frames_rx: u64,
    pub path_challenges_rx: u64,
}

impl QuicTotals {
    pub fn add(&mut self, s: &quinn::ConnectionStats) {
        self.connections += 1;
        self.udp_tx_datagrams += s.udp_tx.datagrams;
        self.udp_tx_bytes += s.udp_tx.bytes;
        self.udp_rx_datagrams += s.udp_rx.datagrams;
        self.udp_rx_bytes += s.udp_rx.bytes;
        self.sent_packets += s.path.sent_packets;
        self.lost_packets += s.path.lost_packets;
        self.lost_bytes += s.path.lost_bytes;
        self.congestion_events += s.path.congestion_events;
        self.black_holes += s.path.black_holes_detected;
        self.datagram_frames_tx += s.frame_tx.datagram;
        self.datagram_frames_rx += s.frame_rx.datagram;
        self.path_challenges_rx += s.frame_rx.path_challenge;
    }

    pub fn merge(&mut self, o: &QuicTotals) {
        self.connections += o.connections;
        self.udp_tx_datagrams += o.udp_tx_datagrams;
        self.udp_tx_bytes += o.udp_tx_bytes;
        self.udp_rx_datagrams += o.udp_rx_datagrams;
        self.udp_rx_bytes += o.udp_rx_bytes;
        self.sent_packets += o.sent_packets;
        self.lost_packets += o.lost_packets;
        self.lost_bytes += o.lost_bytes;
        self.congestion_events += o.congestion_events;
        self.black_holes += o.black_holes;
        self.datagram_frames_tx += o.datagram_frames_tx;
        self.datagram_frames_rx += o.datagram_frames_rx;
        self.path_challenges_rx += o.path_challenges_rx;
    }
}

/// The kinds of stream a connection has open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// The client's first bidirectional stream (MQTT's connection).
    Control,
    /// Further bidirectional streams the client opened (data streams).
    Bidi,
    /// Unidirectional streams the client opened.
    Uni,
    /// Unidirectional streams the broker opened (per-topic delivery flows).
    ServerUni,
}

impl StreamKind {
    pub const ALL: [StreamKind; 4] = [
        StreamKind::Control,
        StreamKind::Bidi,
        StreamKind::Uni,
        StreamKind::ServerUni,
    ];

    /// The label in metrics and the API.
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Control => "control",
            StreamKind::Bidi => "bidi",
            StreamKind::Uni => "uni",
            StreamKind::ServerUni => "server_uni",
        }
    }
}

/// Streams of one connection being read or written, by kind.
#[derive(Debug, Default)]
pub struct StreamCounts {
    control: AtomicU64,
    bidi: AtomicU64,
    uni: AtomicU64,
    server_uni: AtomicU64,
}

impl StreamCounts {
    fn slot(&self, kind: StreamKind) -> &AtomicU64 {
        match kind {
            StreamKind::Control => &self.control,
            StreamKind::Bidi => &self.bidi,
            StreamKind::Uni => &self.uni,
            StreamKind::ServerUni => &self.server_uni,
        }
    }

    /// Counts a stream as open until the returned guard is dropped.
    pub fn open(self: &Arc<Self>, kind: StreamKind) -> OpenStream {
        self.slot(kind).fetch_add(1, Ordering::Relaxed);
        OpenStream {
            counts: self.clone(),
            kind,
        }
    }

    pub fn get(&self, kind: StreamKind) -> u64 {
        self.slot(kind).load(Ordering::Relaxed)
    }
}

/// One open stream in its connection's [`StreamCounts`].
#[derive(Debug)]
pub struct OpenStream {
    counts: Arc<StreamCounts>,
    kind: StreamKind,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.counts.slot(self.kind).fetch_sub(1, Ordering::Relaxed);
    }
}

/// A live connection: quinn's handle and its open streams.
#[derive(Debug, Clone)]
pub struct Live {
    pub connection: quinn::Connection,
    pub streams: Arc<StreamCounts>,
}

#[derive(Debug, Default)]
struct Inner {
    live: AHashMap<ConnId, Live>,
    ended: QuicTotals,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct QuicConnections {
    inner: Mutex<Inner>,
}

/// Removes its connection from the registry when dropped (the connection task ends).
pub struct Registered<'a> {
    registry: &'a QuicConnections,
    conn: ConnId,
    /// The connection's open streams, counted by its readers and writers.
    pub streams: Arc<StreamCounts>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if let Some(live) = inner.live.remove(&self.conn) {
            let stats = live.connection.stats();
            inner.ended.add(&stats);
        }
    }
}

impl QuicConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update is complete before the lock is released: a poisoned lock is consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection for as long as the returned guard lives.
    pub fn register(&self, conn: ConnId, connection: quinn::Connection) -> Registered<'_> {
        let streams = Arc::<StreamCounts>::default();
        self.lock().live.insert(
            conn,
            Live {
                connection,
                streams: streams.clone(),
            },
        );
        Registered {
            registry: self,
            conn,
            streams,
        }
    }

    pub fn get(&self, conn: ConnId) -> Option<Live> {
        self.lock().live.get(&conn).cloned()
    }

    /// The live connections (handles are reference counts: cheap) and the totals of the
    /// ended ones.
    pub fn snapshot(&self) -> (Vec<Live>, QuicTotals) {
        let inner = self.lock();
        (inner.live.values().cloned().collect(), inner.ended)
    }
}
