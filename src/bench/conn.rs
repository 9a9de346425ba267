//! The `conn` scenario: a connection storm, and with `--hold` the broker's memory per idle
//! connection.
//!
//! Opens `--clients` connections (`--concurrency` handshakes at a time, `--rate` per second at
//! most), each completing CONNECT/CONNACK (and opening its data stream in QUIC multi-stream
//! mode). The broker's CPU time is measured over the storm. With `--hold SECS` the connections
//! then stay idle for SECS (keep alive as given by `-k`) and the broker's RSS is read again:
//! (RSS held - RSS before connecting) / connections is the memory an idle connection costs,
//! allocator slack included. Start the broker fresh for that figure, or earlier runs' freed
//! memory is reused and hides part of it.

use std::sync::Arc;
use std::time::Instant;

use super::clients::Ctx;
use super::report::{GeneratorStats, IdleStats, Report};
use super::run::{broker_sample, broker_stats, close_all, connect_all, own_cpu, Spec};
use super::stats::{micros, round3};

pub async fn run_conn(ctx: Arc<Ctx>, broker_rss_peak: impl Fn() -> u64) -> Report {
    let plan = &ctx.plan;
    let run_start = Instant::now();
    let before = broker_sample(plan);
    let own_start = own_cpu();
    let specs = (0..plan.connections)
        .map(|index| Spec {
            role: 'c',
            index,
            filter: None,
        })
        .collect();
    let opened = connect_all(&ctx, specs, plan.rate).await;
    let connected = broker_sample(plan);
    let own_end = own_cpu();
    let stats = opened.stats();
    let established = stats.established;

    let idle = match plan.hold {
        Some(hold) if established > 0 => {
            tokio::time::sleep(hold).await;
            let held = broker_sample(plan);
            let before_kib = before.map(|s| s.rss_kib);
            let held_kib = held.map(|s| s.rss_kib);
            Some(IdleStats {
                connections: established,
                held_s: round3(hold.as_secs_f64()),
                rss_before_kib: before_kib,
                rss_held_kib: held_kib,
                rss_per_connection_kib: before_kib
                    .zip(held_kib)
                    .map(|(b, h)| round3((h as f64 - b as f64) / established as f64)),
            })
        }
        _ => None,
    };

    let mut report = Report::new(
        plan,
        stats,
        GeneratorStats {
            cpu_s: round3(own_end.saturating_sub(own_start).as_secs_f64()),
        },
    );
    let after = broker_sample(plan);
    report.broker =
        broker_stats(plan, [before, before, after], broker_rss_peak(), |_| None).map(|mut b| {
            // CPU over the storm only, not the idle hold.
            let cpu = connected
                .map(|c| {
                    c.cpu
                        .saturating_sub(before.map(|s| s.cpu).unwrap_or_default())
                })
                .unwrap_or_default();
            b.cpu_s = round3(cpu.as_secs_f64());
            b.cpu_us_per_connection =
                (established > 0).then(|| round3(micros(cpu) as f64 / established as f64));
            b
        });
    report.idle = idle;
    close_all(opened.lanes.into_iter().flatten()).await;
    report.elapsed_s = round3(run_start.elapsed().as_secs_f64());
    report.errors = ctx.errors.summary();
    report
}
