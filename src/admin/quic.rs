//! QUIC figures for `/metrics` and the per-client QUIC block of the API, read from quinn at
//! scrape time: the endpoint's handshake counts, each live connection's `stats()` (RTT,
//! congestion window, losses, MTU) and the totals of the connections that ended. RTT and
//! congestion window are histograms sampled once per live connection per scrape.

use super::exposition::Text as Exposition;
use crate::broker::Metrics;
use crate::server::ServerProbe;
use crate::transport::early::QuicStatsSnapshot;
use crate::transport::quic_registry::{QuicTotals, StreamKind};

/// Bounds of the RTT histogram, seconds.
const RTT_BOUNDS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Bounds of the congestion window histogram, bytes.
const CWND_BOUNDS: [f64; 8] = [
    12_000.0,
    24_000.0,
    48_000.0,
    96_000.0,
    192_000.0,
    384_000.0,
    768_000.0,
    1_536_000.0,
];

/// One scrape's QUIC figures.
#[derive(Debug, Default, Clone)]
pub struct QuicFigures {
    pub listening: bool,
    pub endpoint: Option<quinn::EndpointStats>,
    /// Ended and live connections together (counters).
    pub totals: QuicTotals,
    pub live: u64,
    pub rtt_seconds: Vec<f64>,
    pub cwnd_bytes: Vec<f64>,
    pub mtu: Vec<f64>,
    /// Open streams of the live connections, by kind (`StreamKind::ALL` order).
    pub streams_open: [u64; 4],
}

impl QuicFigures {
    pub fn sample(probe: &ServerProbe) -> QuicFigures {
        let Some(endpoint) = probe.quic_endpoint() else {
            return QuicFigures::default();
        };
        let (live, mut totals) = probe.quic_connections().snapshot();
        let mut figures = QuicFigures {
            listening: true,
            endpoint: Some(endpoint.stats()),
            live: live.len() as u64,
            ..QuicFigures::default()
        };
        for live in &live {
            for (open, kind) in figures.streams_open.iter_mut().zip(StreamKind::ALL) {
                *open += live.streams.get(kind);
            }
            let stats = live.connection.stats();
            totals.add(&stats);
            figures.rtt_seconds.push(stats.path.rtt.as_secs_f64());
            figures.cwnd_bytes.push(stats.path.cwnd as f64);
            figures.mtu.push(f64::from(stats.path.current_mtu));
        }
        figures.totals = totals;
        figures
    }
}

/// The QUIC block of one client (`GET /api/v1/clients/{id}`), `None` if it is not a live QUIC
/// connection.
pub fn client_block(
    probe: &ServerProbe,
    conn: crate::broker::ConnId,
    migrations: u64,
) -> Option<serde_json::Value> {
    let live = probe.quic_connections().get(conn)?;
    let connection = &live.connection;
    let s = connection.stats();
    let streams: serde_json::Map<String, serde_json::Value> = StreamKind::ALL
        .iter()
        .map(|kind| (kind.name().to_owned(), live.streams.get(*kind).into()))
        .collect();
    Some(serde_json::json!({
        "remote_address": connection.remote_address().to_string(),
        "rtt_ms": s.path.rtt.as_secs_f64() * 1e3,
        "min_rtt_ms": s.path.min_rtt.as_secs_f64() * 1e3,
        "cwnd_bytes": s.path.cwnd,
        "mtu": s.path.current_mtu,
        "sent_packets": s.path.sent_packets,
        "lost_packets": s.path.lost_packets,
        "lost_bytes": s.path.lost_bytes,
        "congestion_events": s.path.congestion_events,
        "black_holes_detected": s.path.black_holes_detected,
        "mtu_probes_sent": s.path.sent_plpmtud_probes,
        "udp_tx": { "datagrams": s.udp_tx.datagrams, "bytes": s.udp_tx.bytes },
        "udp_rx": { "datagrams": s.udp_rx.datagrams, "bytes": s.udp_rx.bytes },
        "datagram_frames": { "sent": s.frame_tx.datagram, "received": s.frame_rx.datagram },
        "stream_frames": { "sent": s.frame_tx.stream, "received": s.frame_rx.stream },
        "path_challenges_received": s.frame_rx.path_challenge,
        "migrations": migrations,
        "streams_open": streams,
        "max_datagram_size": connection.max_datagram_size(),
    }))
}

fn sampled(t: &mut Exposition, name: &str, help: &str, bounds: &[f64], values: &[f64]) {
    t.family(name, "histogram", help);
    for bound in bounds {
        let n = values.iter().filter(|v| **v <= *bound).count();
        t.sample(&format!("{name}_bucket"), &[("le", &bound.to_string())], n);
    }
    t.sample(&format!("{name}_bucket"), &[("le", "+Inf")], values.len());
    t.sample(&format!("{name}_sum"), &[], values.iter().sum::<f64>());
    t.sample(&format!("{name}_count"), &[], values.len());
}

/// The `mqttd_quic_*` families.
pub(super) fn render(t: &mut Exposition, m: &Metrics, stats: &QuicStatsSnapshot, q: &QuicFigures) {
    if !q.listening {
        return;
    }
    let e = q.endpoint.unwrap_or_default();
    t.family(
        "mqttd_quic_handshakes_total",
        "counter",
        "QUIC handshakes by result: accepted by the endpoint, refused before the handshake \
         (limits), failed, timed out.",
    );
    for (result, n) in [
        ("accepted", e.accepted_handshakes),
        (
            "refused",
            e.refused_handshakes + stats.refused_before_handshake,
        ),
        ("ignored", e.ignored_handshakes),
        ("failed", stats.handshakes_failed),
        ("timed_out", stats.handshakes_timed_out),
    ] {
        t.sample("mqttd_quic_handshakes_total", &[("result", result)], n);
    }
    t.single(
        "mqttd_quic_retry_sent_total",
        "counter",
        "QUIC Retry packets sent (quic.address_validation).",
        stats.retries_sent,
    );
    t.family(
        "mqttd_quic_zero_rtt_total",
        "counter",
        "0-RTT early data: CONNECTs accepted in it, packets held until the handshake was \
         confirmed, and held packets dropped (handshake never confirmed).",
    );
    for (what, n) in [
        ("connects", stats.zero_rtt_connects),
        ("early_packets", stats.early_packets),
        ("held_packets", stats.held_packets),
        ("dropped_packets", stats.dropped_packets),
    ] {
        t.sample("mqttd_quic_zero_rtt_total", &[("what", what)], n);
    }
    t.single(
        "mqttd_quic_migrations_total",
        "counter",
        "QUIC connections whose client moved to a new address.",
        m.migrations,
    );
    t.single(
        "mqttd_quic_streams_refused_total",
        "counter",
        "QUIC streams refused because the client opened them too fast.",
        m.streams_refused,
    );
    t.family(
        "mqttd_quic_datagrams_total",
        "counter",
        "MQTT packets in QUIC datagrams: sent, received, dropped by reason.",
    );
    t.sample(
        "mqttd_quic_datagrams_total",
        &[("direction", "sent"), ("reason", "")],
        m.datagrams_sent,
    );
    t.sample(
        "mqttd_quic_datagrams_total",
        &[("direction", "received"), ("reason", "")],
        m.datagrams_received,
    );
    t.sample(
        "mqttd_quic_datagrams_total",
        &[("direction", "dropped"), ("reason", "malformed")],
        m.datagrams_dropped,
    );
    t.sample(
        "mqttd_quic_datagrams_total",
        &[("direction", "dropped"), ("reason", "rate_limited")],
        m.datagrams_rate_limited,
    );
    let s = &q.totals;
    t.family(
        "mqttd_quic_udp_datagrams_total",
        "counter",
        "UDP datagrams of QUIC connections, by direction.",
    );
    t.sample(
        "mqttd_quic_udp_datagrams_total",
        &[("direction", "tx")],
        s.udp_tx_datagrams,
    );
    t.sample(
        "mqttd_quic_udp_datagrams_total",
        &[("direction", "rx")],
        s.udp_rx_datagrams,
    );
    t.family(
        "mqttd_quic_udp_bytes_total",
        "counter",
        "UDP payload bytes of QUIC connections, by direction.",
    );
    t.sample(
        "mqttd_quic_udp_bytes_total",
        &[("direction", "tx")],
        s.udp_tx_bytes,
    );
    t.sample(
        "mqttd_quic_udp_bytes_total",
        &[("direction", "rx")],
        s.udp_rx_bytes,
    );
    for (name, help, value) in [
        (
            "mqttd_quic_packets_sent_total",
            "QUIC packets sent.",
            s.sent_packets,
        ),
        (
            "mqttd_quic_lost_packets_total",
            "QUIC packets declared lost.",
            s.lost_packets,
        ),
        (
            "mqttd_quic_lost_bytes_total",
            "Bytes of the QUIC packets declared lost.",
            s.lost_bytes,
        ),
        (
            "mqttd_quic_congestion_events_total",
            "Congestion events (window reductions).",
            s.congestion_events,
        ),
        (
            "mqttd_quic_black_holes_total",
            "MTU black holes detected.",
            s.black_holes,
        ),
    ] {
        t.single(name, "counter", help, value);
    }
    t.family(
        "mqttd_quic_streams_open",
        "gauge",
        "Streams of live QUIC connections being read or written, by kind: control, bidi \
         (client data streams), uni (client unidirectional), server_uni (broker-opened flows).",
    );
    for (kind, open) in StreamKind::ALL.iter().zip(q.streams_open) {
        t.sample("mqttd_quic_streams_open", &[("kind", kind.name())], open);
    }
    t.single(
        "mqttd_quic_connections_live",
        "gauge",
        "Live QUIC connections (handshake done).",
        q.live,
    );
    sampled(
        t,
        "mqttd_quic_rtt_seconds",
        "Smoothed RTT of each live QUIC connection, sampled at scrape time.",
        &RTT_BOUNDS,
        &q.rtt_seconds,
    );
    sampled(
        t,
        "mqttd_quic_cwnd_bytes",
        "Congestion window of each live QUIC connection, sampled at scrape time.",
        &CWND_BOUNDS,
        &q.cwnd_bytes,
    );
    if let Some(min_mtu) = q.mtu.iter().copied().reduce(f64::min) {
        t.single(
            "mqttd_quic_path_mtu_min_bytes",
            "gauge",
            "Smallest current path MTU among live QUIC connections.",
            min_mtu,
        );
    }
}
