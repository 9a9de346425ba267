//! `mqttd bench`: a load generator and benchmark for any MQTT broker, in the spirit of
//! emqtt-bench, built on the bundled client.
//!
//! Scenarios ([`Scenario`]): `conn` (connection storm; `--hold` measures the broker's memory
//! per idle connection), `pub`, `sub`, and the combined `fan-in` (N publishers to one
//! subscriber on `#`), `fan-out` (one publisher to N subscribers) and `pairs`. Over TCP or QUIC
//! (single-stream, or multi-stream with a data stream per client), QoS 0/1/2, any payload size
//! (16 bytes and up), at a rate or as fast as the broker acknowledges, for a duration or a
//! message count.
//!
//! Every payload carries its send time and its publisher's sequence number ([`payload`]), so
//! subscribers measure delivery latency (HdrHistogram) and count loss, duplicates and
//! reordering per publisher ([`tracker`]). With `--broker-pid` the broker's CPU time and memory
//! come from /proc ([`procstat`]). The result is a [`Report`]: a summary, or one JSON object
//! with `--json`. `benches/compare.sh` runs the same scenarios against mqttd, mosquitto and
//! rumqttd with it.
//!
//! Layout: [`args`] (command line, [`Plan`]), [`lane`] (a client's connection or data stream:
//! where new transport modes plug in), `run` (connecting, running a scenario, adding up), `clients` (the publisher and subscriber
//! tasks), `conn`,
//! [`monitor`] (progress line, error log, memory sampler), [`stats`], [`report`].

pub mod args;
mod clients;
mod conn;
pub mod lane;
pub mod monitor;
pub mod payload;
pub mod procstat;
pub mod report;
mod run;
mod servers;
pub mod stats;
pub mod tracker;

use std::hash::BuildHasher;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

pub use args::{BenchArgs, Plan, QuicMode, Scenario, TransportKind};
pub use report::Report;

use clients::Ctx;
use monitor::{Counters, ErrorLog};
use payload::Clock;

/// `mqttd bench`: exit status 0 when the run completed (its report says how well: errors and
/// losses are results), 1 when it could not run (no client could connect), 2 for bad
/// arguments.
pub fn run(args: &BenchArgs) -> ExitCode {
    let plan = match Plan::new(args, random_run_id()) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("mqttd bench: {message}");
            return ExitCode::from(2);
        }
    };
    if let Some(pid) = plan.broker_pid {
        if let Err(message) = procstat::sample(&pid.to_string()) {
            eprintln!("mqttd bench: --broker-pid {pid}: {message}");
            return ExitCode::from(2);
        }
    }
    init_logging();
    // One descriptor per connection: take what the hard limit allows before checking.
    crate::fdlimit::raise_nofile();
    warn_about_file_limit(&plan);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mqttd bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = plan.json;
    let outcome = runtime.block_on(execute(plan));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.human());
            }
            if report.connections.established == 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(message) => {
            eprintln!("mqttd bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `plan` on the current tokio runtime (a multi-thread one, so clients spread over the
/// cores) and returns its report; `Err` when it could not run at all.
pub async fn execute(mut plan: Plan) -> Result<Report, String> {
    if plan.shared_socket {
        // IPv6 only for an IPv6 literal; a client whose server resolves to the other family
        // gets a socket of its own.
        let ipv6 = plan.servers.first().is_some_and(|s| s.starts_with('['));
        let bind: std::net::SocketAddr = if ipv6 {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = crate::client::QuicEndpoint::bind(bind)
            .map_err(|e| format!("cannot bind the clients' UDP socket: {e}"))?;
        plan.quic_endpoint = Some(endpoint);
    }
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let progress = plan.progress.then(|| {
        let clients = plan.connections + plan.publishers + plan.subscribers;
        let messages = plan.scenario != Scenario::Conn;
        monitor::spawn_progress(counters.clone(), clients, messages, stop.clone())
    });
    let peak = plan
        .broker_pid
        .map(|pid| monitor::spawn_rss_sampler(pid, stop.clone()));
    let rss_peak = move || peak.as_ref().map_or(0, |p| p.get());
    let scenario = plan.scenario;
    let ctx = Arc::new(Ctx {
        plan,
        clock: Clock::new(),
        counters,
        errors: ErrorLog::default(),
    });
    let report = match scenario {
        Scenario::Conn => Ok(conn::run_conn(ctx, rss_peak).await),
        _ => run::run_messages(ctx, rss_peak).await,
    };
    stop.cancel();
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    report
}

/// A run id unlikely to collide with a concurrent run's (client ids and topics contain it).
fn random_run_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // RandomState is seeded randomly per process.
    std::collections::hash_map::RandomState::new().hash_one((nanos, std::process::id())) as u16
}

/// Warnings only unless `RUST_LOG` says otherwise: the output is the report.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Each connection is a socket (TCP) or a UDP socket of its own (QUIC): say so before the
/// run fails with "too many open files".
fn warn_about_file_limit(plan: &Plan) {
    let needed = (plan.connections + plan.publishers + plan.subscribers) as u64 + 64;
    if let Some(limit) = procstat::open_files_limit() {
        if limit < needed {
            eprintln!(
                "mqttd bench: warning: {needed} open files needed, the limit is {limit} (the hard limit; raise it with `ulimit -Hn {needed}` as root, or split the load over several generators)"
            );
        }
    }
}
