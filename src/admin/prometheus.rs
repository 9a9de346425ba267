//! `/metrics` in the Prometheus text exposition format (version 0.0.4), written by hand: the
//! format is a few lines per family, and the figures come from one snapshot of the broker's
//! counters (a query on the broker task), the transports' counters and `/proc`, taken at
//! scrape time. Names are `mqttd_*`; counters end in `_total`; labels are few and bounded
//! (`transport`, `type`, `reason`, `result`...).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::error::ApiError;
use super::exposition::Text;
use super::quic::QuicFigures;
use super::AdminState;
use crate::broker::{Histogram, Metrics, PACKET_TYPE_NAMES};
use crate::transport::early::QuicStatsSnapshot;

/// Everything one scrape shows.
pub struct Scrape {
    pub broker: Metrics,
    pub quic: QuicStatsSnapshot,
    pub quic_figures: QuicFigures,
    /// Store commits: latency and failed attempts (`None` without persistence).
    pub commits: Option<(Histogram, u64)>,
    pub process: Option<crate::bench::procstat::Sample>,
    pub open_fds: Option<u64>,
}

pub async fn metrics(State(state): State<AdminState>) -> Result<impl IntoResponse, ApiError> {
    let broker = state.probe.run(|broker, _| broker.metrics()).await?;
    let scrape = Scrape {
        broker,
        quic: state.probe.quic_stats(),
        quic_figures: QuicFigures::sample(&state.probe),
        commits: state.probe.commit_stats().map(|s| {
            (
                s.latency(),
                s.failures.load(std::sync::atomic::Ordering::Relaxed),
            )
        }),
        process: crate::bench::procstat::sample("self").ok(),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64),
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&scrape),
    ))
}

fn hex(code: u8) -> String {
    format!("0x{code:02x}")
}

/// The exposition text of one scrape.
pub fn render(s: &Scrape) -> String {
    let m = &s.broker;
    let mut t = Text(String::with_capacity(16 * 1024));
    t.family("mqttd_build_info", "gauge", "Version of the running mqttd.");
    t.sample(
        "mqttd_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );

    // Gauges of the broker's state.
    t.family(
        "mqttd_connections",
        "gauge",
        "Open network connections, by transport.",
    );
    for transport in ["tcp", "mqtts", "quic"] {
        if !m
            .connections_by_transport
            .iter()
            .any(|(t, _)| t == transport)
        {
            t.sample("mqttd_connections", &[("transport", transport)], 0);
        }
    }
    for (transport, n) in &m.connections_by_transport {
        t.sample("mqttd_connections", &[("transport", transport)], n);
    }
    t.single(
        "mqttd_sessions",
        "gauge",
        "Sessions, connected or not.",
        m.sessions,
    );
    t.single(
        "mqttd_sessions_connected",
        "gauge",
        "Sessions with a connection.",
        m.sessions_connected,
    );
    t.single(
        "mqttd_subscriptions",
        "gauge",
        "Subscriptions of every session (shared ones included).",
        m.subscriptions,
    );
    t.single(
        "mqttd_shared_subscriptions",
        "gauge",
        "Shared subscriptions ($share/group/filter).",
        m.shared_subscriptions,
    );
    t.single(
        "mqttd_retained_messages",
        "gauge",
        "Retained messages stored.",
        m.retained_messages,
    );
    t.single(
        "mqttd_retained_bytes",
        "gauge",
        "Bytes of the retained messages (payload, topic and index estimate).",
        m.retained_bytes,
    );
    t.single(
        "mqttd_inflight_messages",
        "gauge",
        "QoS 1/2 messages sent to clients and not yet acknowledged.",
        m.inflight_messages,
    );
    t.single(
        "mqttd_queued_messages",
        "gauge",
        "Messages queued in sessions (offline or behind their window).",
        m.queued_messages,
    );
    t.single(
        "mqttd_queued_bytes",
        "gauge",
        "Payload and topic bytes of the queued messages.",
        m.queued_bytes,
    );

    // Messages.
    t.single(
        "mqttd_messages_received_total",
        "counter",
        "PUBLISH messages accepted from clients and routed.",
        m.messages_received,
    );
    t.single(
        "mqttd_messages_sent_total",
        "counter",
        "PUBLISH messages queued for clients (deliveries).",
        m.messages_sent,
    );
    t.family(
        "mqttd_messages_dropped_total",
        "counter",
        "Messages dropped, by reason.",
    );
    for (reason, n) in [
        ("no_subscribers", m.dropped_no_subscribers),
        ("queue_full", m.dropped_queue_full),
        ("expired", m.dropped_expired),
        ("too_large", m.dropped_too_large),
        ("acl", m.dropped_acl),
        ("backpressure", m.dropped_qos0),
    ] {
        t.sample("mqttd_messages_dropped_total", &[("reason", reason)], n);
    }
    t.histogram(
        "mqttd_delivery_latency_seconds",
        "Time from a PUBLISH received to its delivery queued for a subscriber's connection.",
        &m.delivery_latency,
    );

    // Packets and bytes by type.
    for (name, help, counts) in [
        (
            "mqttd_packets_received_total",
            "MQTT packets received, by type.",
            &m.received.packets,
        ),
        (
            "mqttd_packets_sent_total",
            "MQTT packets sent, by type.",
            &m.sent.packets,
        ),
        (
            "mqttd_bytes_received_total",
            "Bytes of the MQTT packets received, by type.",
            &m.received.bytes,
        ),
        (
            "mqttd_bytes_sent_total",
            "Bytes of the MQTT packets sent, by type.",
            &m.sent.bytes,
        ),
    ] {
        t.family(name, "counter", help);
        for (type_name, count) in PACKET_TYPE_NAMES.iter().zip(counts.iter()).skip(1) {
            t.sample(name, &[("type", type_name)], *count);
        }
    }

    // Connections and sessions over time.
    t.single(
        "mqttd_connections_opened_total",
        "counter",
        "Network connections accepted by the listeners.",
        m.connections_opened,
    );
    t.family(
        "mqttd_connects_total",
        "counter",
        "CONNECTs answered, by CONNACK reason code (0x00: accepted).",
    );
    t.sample(
        "mqttd_connects_total",
        &[("reason", "0x00")],
        m.connacks.0[0],
    );
    for (code, n) in m.connacks.nonzero().filter(|(c, _)| *c != 0) {
        t.sample("mqttd_connects_total", &[("reason", &hex(code))], n);
    }
    t.family(
        "mqttd_disconnects_total",
        "counter",
        "Connections ended: by the client (DISCONNECT reason), by the broker (reason sent), \
         or lost without DISCONNECT.",
    );
    for (code, n) in m.client_disconnects.nonzero() {
        t.sample(
            "mqttd_disconnects_total",
            &[("by", "client"), ("reason", &hex(code))],
            n,
        );
    }
    for (code, n) in m.server_disconnects.nonzero() {
        t.sample(
            "mqttd_disconnects_total",
            &[("by", "server"), ("reason", &hex(code))],
            n,
        );
    }
    t.sample(
        "mqttd_disconnects_total",
        &[("by", "network"), ("reason", "lost")],
        m.connections_lost,
    );
    t.family(
        "mqttd_session_events_total",
        "counter",
        "Sessions created, resumed, taken over and expired.",
    );
    for (event, n) in [
        ("created", m.sessions_created),
        ("resumed", m.sessions_resumed),
        ("taken_over", m.sessions_taken_over),
        ("expired", m.sessions_expired),
    ] {
        t.sample("mqttd_session_events_total", &[("event", event)], n);
    }

    // Authentication and authorization.
    let c = &m.connacks.0;
    t.family(
        "mqttd_auth_total",
        "counter",
        "CONNECT authentication results (failure: CONNACK 0x86, 0x87 or 0x8C).",
    );
    t.sample("mqttd_auth_total", &[("result", "success")], c[0]);
    t.sample(
        "mqttd_auth_total",
        &[("result", "failure")],
        c[0x86] + c[0x87] + c[0x8C],
    );
    t.single(
        "mqttd_acl_denied_total",
        "counter",
        "PUBLISH packets, subscriptions and deliveries the ACL refused.",
        m.acl_denied,
    );

    // Limits and protection.
    t.family(
        "mqttd_refused_total",
        "counter",
        "Things refused at a limit, by what.",
    );
    for (what, n) in [
        ("connection", m.connections_refused),
        ("connection_rate", m.connections_rate_limited),
        ("session", m.sessions_refused),
        ("subscription", m.subscriptions_refused),
        ("retained", m.retained_refused),
        ("publish_rate", m.publishes_rate_limited),
    ] {
        t.sample("mqttd_refused_total", &[("what", what)], n);
    }
    t.single(
        "mqttd_protocol_errors_total",
        "counter",
        "Connections closed for a malformed packet or a protocol error.",
        m.protocol_errors,
    );
    t.single(
        "mqttd_output_overflows_total",
        "counter",
        "Connections closed because they did not read what they were sent.",
        m.output_overflows,
    );
    t.single(
        "mqttd_publisher_pauses_total",
        "counter",
        "Times a publisher stopped being read because a subscriber fell behind.",
        m.publisher_pauses,
    );

    // The store.
    if let Some((latency, failures)) = &s.commits {
        t.histogram(
            "mqttd_store_commit_seconds",
            "Store commit latency (one commit holds a batch of changes), retries included.",
            latency,
        );
        t.single(
            "mqttd_store_commit_failures_total",
            "counter",
            "Store commit attempts that failed (each retry counts).",
            failures,
        );
    }

    super::quic::render(&mut t, m, &s.quic, &s.quic_figures);

    // The process.
    if let Some(p) = &s.process {
        t.single(
            "mqttd_process_resident_memory_bytes",
            "gauge",
            "Resident set size of the broker process.",
            p.rss_kib * 1024,
        );
        t.single(
            "mqttd_process_cpu_seconds_total",
            "counter",
            "User and system CPU time of the broker process.",
            p.cpu.as_secs_f64(),
        );
    }
    if let Some(n) = s.open_fds {
        t.single(
            "mqttd_process_open_fds",
            "gauge",
            "Open file descriptors of the broker process.",
            n,
        );
    }
    t.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let mut m = Metrics {
            messages_received: 7,
            connections_by_transport: vec![("quic".into(), 2)],
            ..Metrics::default()
        };
        m.delivery_latency.observe_us(40);
        m.delivery_latency.observe_us(400);
        m.delivery_latency.observe_us(20_000_000);
        m.connacks.add(crate::codec::ReasonCode::NOT_AUTHORIZED);
        let text = render(&Scrape {
            broker: m,
            quic: QuicStatsSnapshot::default(),
            quic_figures: QuicFigures::default(),
            commits: None,
            process: None,
            open_fds: None,
        });
        assert!(text.contains(
            "# TYPE mqttd_messages_received_total counter\nmqttd_messages_received_total 7\n"
        ));
        assert!(text.contains("mqttd_connections{transport=\"quic\"} 2\n"));
        assert!(text.contains("mqttd_connections{transport=\"tcp\"} 0\n"));
        assert!(text.contains("mqttd_delivery_latency_seconds_bucket{le=\"0.00005\"} 1\n"));
        assert!(text.contains("mqttd_delivery_latency_seconds_bucket{le=\"0.0005\"} 2\n"));
        assert!(text.contains("mqttd_delivery_latency_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("mqttd_delivery_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("mqttd_delivery_latency_seconds_count 3\n"));
        assert!(text.contains("mqttd_connects_total{reason=\"0x87\"} 1\n"));
        assert!(text.contains("mqttd_auth_total{result=\"failure\"} 1\n"));
        // Every sample line belongs to a family declared before it.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| declared.contains(*b)))
                    .unwrap_or(name);
                assert!(declared.contains(base), "undeclared {name}");
            }
        }
    }
}
