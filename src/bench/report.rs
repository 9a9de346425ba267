//! The result of a run: one [`Report`], printed as a summary for people or as one JSON object
//! (`--json`) for `benches/compare.sh`. Times are microseconds (`_us`) or seconds (`_s`),
//! memory KiB; absent measurements are `null`.

use std::fmt::Write as _;

use serde::Serialize;

use super::args::{Plan, QuicMode, Scenario, TransportKind};
use super::monitor::ErrorCount;
use super::stats::{human_micros, Percentiles};
use crate::codec::ProtocolVersion;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub scenario: Scenario,
    pub description: String,
    pub server: String,
    pub transport: TransportKind,
    pub quic_mode: Option<QuicMode>,
    pub mqtt_version: &'static str,
    pub qos: u8,
    pub payload_bytes: usize,
    pub publishers: usize,
    pub subscribers: usize,
    /// Wall time of the whole run.
    pub elapsed_s: f64,
    pub connections: ConnectionStats,
    pub publish: Option<PublishStats>,
    pub delivery: Option<DeliveryStats>,
    /// conn with --hold.
    pub idle: Option<IdleStats>,
    /// With --broker-pid.
    pub broker: Option<BrokerStats>,
    /// QUIC: datagrams and server streams the clients saw.
    pub quic: Option<QuicExtStats>,
    pub generator: GeneratorStats,
    pub errors: Vec<ErrorCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionStats {
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    /// From the first attempt to the last CONNACK.
    pub elapsed_s: f64,
    pub rate_per_s: f64,
    /// Transport handshake to CONNACK, per connection.
    pub setup_us: Option<Percentiles>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublishStats {
    /// Publishes started.
    pub sent: u64,
    /// Completed: QoS 0 handed to the connection, QoS 1/2 acknowledged.
    pub completed: u64,
    pub errors: u64,
    /// From the start to the last completion.
    pub elapsed_s: f64,
    /// completed / elapsed.
    pub rate_per_s: f64,
    /// QoS 1/2: publish to PUBACK/PUBCOMP.
    pub ack_latency_us: Option<Percentiles>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryStats {
    /// Deliveries due (completed publishes x their subscribers); unknown in `sub`.
    pub expected: Option<u64>,
    /// Messages received, duplicates and foreign ones included.
    pub received: u64,
    /// Distinct bench messages received.
    pub unique: u64,
    /// expected - unique (per publisher and subscriber); unknown in `sub`.
    pub lost: Option<u64>,
    /// Sequence numbers skipped between the first and last seen of each publisher.
    pub gaps: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Payloads that were not bench payloads.
    pub foreign: u64,
    /// From the start of publishing (sub: from the first message) to the last message.
    pub elapsed_s: f64,
    /// unique / elapsed.
    pub rate_per_s: f64,
    /// Publish (payload timestamp) to receipt.
    pub latency_us: Option<Percentiles>,
    /// With --per-topic: the same per publisher's topic.
    pub per_topic: Option<Vec<TopicLatency>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicLatency {
    pub topic: String,
    pub latency_us: Option<Percentiles>,
}

/// What the QUIC extensions carried, summed over the bench's clients.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct QuicExtStats {
    pub datagrams_sent: u64,
    pub datagrams_fallback: u64,
    pub datagrams_received: u64,
    pub datagrams_dropped: u64,
    pub server_streams: u64,
}

impl QuicExtStats {
    pub fn sum(stats: impl Iterator<Item = crate::client::QuicStats>) -> QuicExtStats {
        stats.fold(QuicExtStats::default(), |a, s| QuicExtStats {
            datagrams_sent: a.datagrams_sent + s.datagrams_sent,
            datagrams_fallback: a.datagrams_fallback + s.datagrams_fallback,
            datagrams_received: a.datagrams_received + s.datagrams_received,
            datagrams_dropped: a.datagrams_dropped + s.datagrams_dropped,
            server_streams: a.server_streams + s.server_streams,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleStats {
    pub connections: u64,
    pub held_s: f64,
    /// Broker VmRSS before connecting and after holding (with --broker-pid).
    pub rss_before_kib: Option<u64>,
    pub rss_held_kib: Option<u64>,
    pub rss_per_connection_kib: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BrokerStats {
    pub pid: u32,
    /// CPU time (user + system) over the measured phase: publishing and draining, or
    /// connecting for conn.
    pub cpu_s: f64,
    /// Per delivered message (per published one without subscribers).
    pub cpu_us_per_msg: Option<f64>,
    /// conn: per connection established.
    pub cpu_us_per_connection: Option<f64>,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// Highest VmRSS sampled every 100 ms during the run.
    pub rss_peak_kib: u64,
    /// VmHWM: the peak over the broker's whole life.
    pub hwm_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GeneratorStats {
    /// CPU time of this process over the measured phase.
    pub cpu_s: f64,
}

impl Report {
    /// A report for `plan` with the fields every scenario fills.
    pub fn new(plan: &Plan, connections: ConnectionStats, generator: GeneratorStats) -> Report {
        Report {
            tool: "mqttd bench",
            version: env!("CARGO_PKG_VERSION"),
            scenario: plan.scenario,
            description: plan.describe(),
            server: plan.servers_text(),
            transport: plan.transport,
            quic_mode: plan.quic_mode,
            mqtt_version: match plan.version {
                ProtocolVersion::V5 => "5",
                ProtocolVersion::V3_1_1 => "3.1.1",
                ProtocolVersion::V3_1 => "3.1",
            },
            qos: plan.qos as u8,
            payload_bytes: plan.size,
            publishers: plan.publishers,
            subscribers: plan.subscribers,
            elapsed_s: 0.0,
            connections,
            publish: None,
            delivery: None,
            idle: None,
            broker: None,
            quic: None,
            generator,
            errors: Vec::new(),
        }
    }

    // Plain structs with string keys and numbers: serializing them cannot fail.
    #[allow(clippy::expect_used)]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }

    /// The summary for people.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "mqttd bench {}", self.description);
        let c = &self.connections;
        let _ = write!(
            out,
            "  connections  {} of {} in {:.2} s ({:.0}/s), {} failed",
            c.established, c.attempted, c.elapsed_s, c.rate_per_s, c.failed
        );
        if let Some(p) = &c.setup_us {
            let _ = write!(out, "; setup {}", spread(p));
        }
        out.push('\n');
        if let Some(p) = &self.publish {
            let _ = write!(
                out,
                "  published    {} in {:.2} s = {:.0} msg/s, {} errors",
                p.completed, p.elapsed_s, p.rate_per_s, p.errors
            );
            if let Some(a) = &p.ack_latency_us {
                let _ = write!(out, "; ack {}", spread(a));
            }
            out.push('\n');
        }
        if let Some(d) = &self.delivery {
            let _ = write!(out, "  delivered    {}", d.unique);
            if let Some(expected) = d.expected {
                let _ = write!(out, " of {expected}");
            }
            let _ = write!(out, " in {:.2} s = {:.0} msg/s;", d.elapsed_s, d.rate_per_s);
            if let Some(lost) = d.lost {
                let _ = write!(out, " lost {lost},");
            }
            let _ = writeln!(
                out,
                " gaps {}, duplicates {}, reordered {}, foreign {}",
                d.gaps, d.duplicates, d.reordered, d.foreign
            );
            if let Some(l) = &d.latency_us {
                let _ = writeln!(
                    out,
                    "  latency      p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                    human_micros(l.p50),
                    human_micros(l.p90),
                    human_micros(l.p99),
                    human_micros(l.p999),
                    human_micros(l.max)
                );
            }
            for t in d.per_topic.iter().flatten() {
                if let Some(l) = &t.latency_us {
                    let _ = writeln!(
                        out,
                        "    {:<20} {} msgs  p50 {}  p99 {}  max {}",
                        t.topic,
                        l.count,
                        human_micros(l.p50),
                        human_micros(l.p99),
                        human_micros(l.max)
                    );
                }
            }
        }
        if let Some(q) = &self.quic {
            let _ = writeln!(
                out,
                "  quic         datagrams sent {} (fell back {}), received {} (dropped {}); server streams {}",
                q.datagrams_sent, q.datagrams_fallback, q.datagrams_received, q.datagrams_dropped, q.server_streams
            );
        }
        if let Some(i) = &self.idle {
            let _ = write!(
                out,
                "  idle         {} connections held {:.1} s",
                i.connections, i.held_s
            );
            match (i.rss_before_kib, i.rss_held_kib, i.rss_per_connection_kib) {
                (Some(before), Some(held), Some(per)) => {
                    let _ = writeln!(
                        out,
                        ": broker RSS {} -> {} = {per:.2} KiB per connection",
                        mib(before),
                        mib(held)
                    );
                }
                _ => out.push_str(" (give --broker-pid for memory per connection)\n"),
            }
        }
        if let Some(b) = &self.broker {
            let _ = write!(out, "  broker       pid {}: CPU {:.2} s", b.pid, b.cpu_s);
            if let Some(per) = b.cpu_us_per_msg {
                let _ = write!(out, " ({per:.2} us/msg)");
            }
            if let Some(per) = b.cpu_us_per_connection {
                let _ = write!(out, " ({per:.1} us/connection)");
            }
            let _ = writeln!(
                out,
                ", RSS {} -> {}, peak {} (VmHWM {})",
                mib(b.rss_before_kib),
                mib(b.rss_after_kib),
                mib(b.rss_peak_kib),
                mib(b.hwm_kib)
            );
        }
        let _ = writeln!(
            out,
            "  generator    CPU {:.2} s; run took {:.2} s",
            self.generator.cpu_s, self.elapsed_s
        );
        for e in &self.errors {
            let _ = writeln!(out, "  error        {} x {}", e.count, e.message);
        }
        out
    }
}

fn spread(p: &Percentiles) -> String {
    format!(
        "p50 {} p99 {} max {}",
        human_micros(p.p50),
        human_micros(p.p99),
        human_micros(p.max)
    )
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
