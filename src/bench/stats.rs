//! Latency statistics: HdrHistograms in microseconds, recorded in batches into a few shared
//! shards (so a thousand subscribers do not each hold a histogram), merged at the end into
//! [`Percentiles`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest value tracked: 60 s in microseconds; longer ones count as 60 s.
pub const MAX_MICROS: u64 = 60_000_000;
/// Values kept locally before they are added to a shard.
const BATCH: usize = 256;

/// An empty histogram of microseconds, three significant digits.
// Constant bounds (1 <= MAX_MICROS, 3 significant digits) are always accepted.
#[allow(clippy::expect_used)]
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant bounds are valid")
}

/// Microseconds in `d`, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The usual summary of a distribution, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    /// `None` for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        if h.is_empty() {
            return None;
        }
        Some(Percentiles {
            count: h.len(),
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        })
    }

    /// Of a list of durations (connection setup times).
    pub fn of_durations(values: &[Duration]) -> Option<Percentiles> {
        let mut h = histogram();
        for &v in values {
            h.saturating_record(micros(v));
        }
        Percentiles::of(&h)
    }
}

/// Histograms shared by many tasks: each task records into the shard of its index.
pub struct Shards {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Shards {
    pub fn new(count: usize) -> Arc<Shards> {
        Arc::new(Shards {
            shards: (0..count.max(1)).map(|_| Mutex::new(histogram())).collect(),
        })
    }

    fn add(&self, index: usize, values: &[u64]) {
        let Some(shard) = self.shards.get(index % self.shards.len().max(1)) else {
            return;
        };
        let mut h = shard.lock().unwrap_or_else(|p| p.into_inner());
        for &v in values {
            h.saturating_record(v);
        }
    }

    /// Everything recorded so far, merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.shards {
            let h = shard.lock().unwrap_or_else(|p| p.into_inner());
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&*h);
        }
        all
    }
}

/// One task's recorder: batches values into its shard; flushes when dropped.
pub struct Recorder {
    shards: Arc<Shards>,
    index: usize,
    batch: Vec<u64>,
}

impl Recorder {
    pub fn new(shards: Arc<Shards>, index: usize) -> Recorder {
        Recorder {
            shards,
            index,
            batch: Vec::with_capacity(BATCH),
        }
    }

    pub fn record(&mut self, micros: u64) {
        self.batch.push(micros);
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if !self.batch.is_empty() {
            self.shards.add(self.index, &self.batch);
            self.batch.clear();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// `count` per second over `elapsed`; 0 when nothing was measured.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if count == 0 || secs <= 0.0 {
        return 0.0;
    }
    round1(count as f64 / secs)
}

/// Rounds to one decimal, for tidy JSON.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Rounds to three decimals.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A duration in microseconds for people: `850 us`, `12.3 ms`, `1.25 s`.
pub fn human_micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us} us")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = histogram();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let p = Percentiles::of(&h).unwrap();
        assert_eq!((p.count, p.min, p.max), (1000, 1, 1000));
        assert_eq!((p.p50, p.p90, p.p99, p.p999), (500, 900, 990, 999));
        assert!((p.mean - 500.5).abs() < 0.2);
        assert_eq!(Percentiles::of(&histogram()), None);
    }

    #[test]
    fn shards_merge_every_recorder_and_saturate() {
        let shards = Shards::new(3);
        {
            let mut recorders: Vec<Recorder> =
                (0..7).map(|i| Recorder::new(shards.clone(), i)).collect();
            for (i, r) in recorders.iter_mut().enumerate() {
                for v in 0..300u64 {
                    r.record(v + i as u64);
                }
            }
            let partial = shards.merged().len();
            assert!(partial > 0 && partial < 2100, "batches still held locally");
        } // dropped: flushed
        let all = shards.merged();
        assert_eq!(all.len(), 2100);
        assert_eq!(all.max(), 305);
        let mut r = Recorder::new(shards.clone(), 0);
        r.record(MAX_MICROS * 10);
        r.flush();
        assert!(shards.merged().max() >= MAX_MICROS && shards.merged().max() < MAX_MICROS * 2);
    }

    #[test]
    fn setup_times_and_rates() {
        let p = Percentiles::of_durations(&[
            Duration::from_micros(100),
            Duration::from_millis(2),
            Duration::from_millis(3),
        ])
        .unwrap();
        assert_eq!(p.count, 3);
        assert_eq!(p.p50, 2000);
        assert!(p.max >= 3000 && p.max < 3010);
        assert_eq!(rate(500, Duration::from_secs(2)), 250.0);
        assert_eq!(rate(0, Duration::from_secs(2)), 0.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_micros(850), "850 us");
        assert_eq!(human_micros(12_345), "12.35 ms");
        assert_eq!(human_micros(1_250_000), "1.25 s");
    }
}
