//! What runs beside the load: live counters, the error log, the progress line on stderr and
//! the sampler of the broker's memory.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::procstat;

/// Counters every task bumps; read by the progress line.
#[derive(Debug, Default)]
pub struct Counters {
    pub connected: AtomicU64,
    /// Publishes started.
    pub sent: AtomicU64,
    /// Publishes completed (QoS 0: queued; QoS 1/2: acknowledged).
    pub acked: AtomicU64,
    /// Messages received by subscribers.
    pub received: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Distinct error messages kept in a report.
const DISTINCT_ERRORS: usize = 20;

/// Errors by message, with counts.
#[derive(Debug, Default)]
pub struct ErrorLog {
    by_message: Mutex<BTreeMap<String, u64>>,
    other: AtomicU64,
}

/// One kind of error in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    pub message: String,
    pub count: u64,
}

impl ErrorLog {
    /// Records an error (`what` says what failed, e.g. "connect").
    pub fn record(&self, counters: &Counters, what: &str, error: impl std::fmt::Display) {
        Counters::add(&counters.errors, 1);
        let message = format!("{what}: {error}");
        let mut map = self.by_message.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&message) {
            *count += 1;
        } else if map.len() < DISTINCT_ERRORS {
            map.insert(message, 1);
        } else {
            self.other.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every error, most frequent first; those beyond the distinct ones kept, last.
    pub fn summary(&self) -> Vec<ErrorCount> {
        let map = self.by_message.lock().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<ErrorCount> = map
            .iter()
            .map(|(message, &count)| ErrorCount {
                message: message.clone(),
                count,
            })
            .collect();
        list.sort_by_key(|e| std::cmp::Reverse(e.count));
        let other = self.other.load(Ordering::Relaxed);
        if other > 0 {
            list.push(ErrorCount {
                message: "(other errors)".into(),
                count: other,
            });
        }
        list
    }
}

/// Prints a progress line on stderr every second once the run has lasted 2 s, until
/// `stop`; overwrites it in place on a terminal.
pub fn spawn_progress(
    counters: Arc<Counters>,
    connections: usize,
    messages: bool,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let tty = std::io::stderr().is_terminal();
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let (mut last_sent, mut last_received, mut last_at) = (0, 0, start);
        let mut printed = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let now = Instant::now();
            let sent = Counters::get(&counters.acked);
            let received = Counters::get(&counters.received);
            let secs = now.duration_since(last_at).as_secs_f64().max(1e-3);
            let line = progress_line(
                now.duration_since(start),
                (Counters::get(&counters.connected), connections),
                messages.then(|| {
                    (
                        (sent, (sent - last_sent) as f64 / secs),
                        (received, (received - last_received) as f64 / secs),
                    )
                }),
                Counters::get(&counters.errors),
            );
            (last_sent, last_received, last_at) = (sent, received, now);
            if now.duration_since(start) < Duration::from_secs(2) {
                continue;
            }
            let mut err = std::io::stderr().lock();
            let _ = if tty {
                write!(err, "\r{line}\x1b[K")
            } else {
                writeln!(err, "{line}")
            };
            let _ = err.flush();
            printed = true;
        }
        if printed && tty {
            let _ = writeln!(std::io::stderr());
        }
    })
}

/// `mqttd bench [  12s] conn 5/5  pub 600000 (50.1k/s)  recv 599000 (50.0k/s)  errors 0`:
/// publishes completed and messages received, in all and per second lately (`messages`
/// without publishers or subscribers: none).
pub fn progress_line(
    elapsed: Duration,
    (connected, connections): (u64, usize),
    messages: Option<((u64, f64), (u64, f64))>,
    errors: u64,
) -> String {
    let mut line = format!(
        "mqttd bench [{:>4}s] conn {connected}/{connections}",
        elapsed.as_secs()
    );
    if let Some(((sent, sent_rate), (received, received_rate))) = messages {
        line += &format!(
            "  pub {sent} ({})  recv {received} ({})",
            per_second(sent_rate),
            per_second(received_rate)
        );
    }
    line + &format!("  errors {errors}")
}

fn per_second(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M/s", rate / 1e6)
    } else if rate >= 1e4 {
        format!("{:.1}k/s", rate / 1e3)
    } else {
        format!("{rate:.0}/s")
    }
}

/// The highest broker RSS seen by [`spawn_rss_sampler`].
pub struct RssPeak {
    peak: AtomicU64,
}

impl RssPeak {
    pub fn get(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn observe(&self, kib: u64) {
        self.peak.fetch_max(kib, Ordering::Relaxed);
    }
}

/// Reads the broker's VmRSS every 100 ms until `stop`, keeping the highest.
pub fn spawn_rss_sampler(pid: u32, stop: CancellationToken) -> Arc<RssPeak> {
    let peak = Arc::new(RssPeak {
        peak: AtomicU64::new(0),
    });
    let keep = peak.clone();
    tokio::spawn(async move {
        let pid = pid.to_string();
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            match procstat::sample(&pid) {
                Ok(s) => keep.observe(s.rss_kib),
                Err(_) => break,
            }
        }
    });
    peak
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_reads_well() {
        let line = progress_line(
            Duration::from_millis(12_400),
            (5, 5),
            Some(((600_000, 50_123.0), (599_000, 1_250_000.0))),
            2,
        );
        assert_eq!(
            line,
            "mqttd bench [  12s] conn 5/5  pub 600000 (50.1k/s)  recv 599000 (1.25M/s)  errors 2"
        );
        let line = progress_line(Duration::ZERO, (0, 1), Some(((0, 0.0), (3, 3.0))), 0);
        assert!(line.contains("recv 3 (3/s)"), "{line}");
        assert_eq!(
            progress_line(Duration::from_secs(3), (700, 1000), None, 0),
            "mqttd bench [   3s] conn 700/1000  errors 0"
        );
    }

    #[test]
    fn error_log_counts_and_caps() {
        let counters = Counters::default();
        let log = ErrorLog::default();
        log.record(&counters, "connect", "refused");
        log.record(&counters, "connect", "refused");
        log.record(&counters, "publish", "quota");
        for i in 0..30 {
            log.record(&counters, "x", i);
        }
        let summary = log.summary();
        assert_eq!(
            summary[0],
            ErrorCount {
                message: "connect: refused".into(),
                count: 2
            }
        );
        assert_eq!(summary.len(), DISTINCT_ERRORS + 1);
        assert_eq!(summary.iter().map(|e| e.count).sum::<u64>(), 33);
        assert_eq!(Counters::get(&counters.errors), 33);
    }
}
