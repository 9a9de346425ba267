//! Writing the Prometheus text exposition format (version 0.0.4): `# HELP` / `# TYPE` lines,
//! samples with labels, and cumulative histograms over the broker's fixed buckets.

use std::fmt::Write;

use crate::broker::{Histogram, LATENCY_BOUNDS_US};

/// A text exposition being written.
pub(super) struct Text(pub(super) String);

impl Text {
    pub(super) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    pub(super) fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl std::fmt::Display,
    ) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                // Label values here are fixed words, transports and hex codes: nothing to
                // escape but quotes and backslashes, done anyway.
                let v = v.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// One family with one unlabelled sample.
    pub(super) fn single(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        value: impl std::fmt::Display,
    ) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    pub(super) fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BOUNDS_US.iter().zip(h.buckets.iter()) {
            cumulative += count;
            let le = format!("{}", *bound as f64 / 1e6);
            self.sample(&format!("{name}_bucket"), &[("le", &le)], cumulative);
        }
        self.sample(&format!("{name}_bucket"), &[("le", "+Inf")], h.count);
        self.sample(
            &format!("{name}_sum"),
            &[],
            format!("{}", h.sum_us as f64 / 1e6),
        );
        self.sample(&format!("{name}_count"), &[], h.count);
    }
}
