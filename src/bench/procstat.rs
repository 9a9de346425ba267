//! CPU time and memory of a process, from Linux's /proc: `/proc/PID/stat` (utime + stime, in
//! clock ticks) and `/proc/PID/status` (VmRSS, VmHWM). Used for the broker (`--broker-pid`)
//! and for the generator itself.

use std::time::Duration;

use serde::Serialize;

/// Clock ticks per second of /proc/PID/stat (USER_HZ, what sysconf(_SC_CLK_TCK) answers), as
/// the kernel tells every process in its auxiliary vector.
fn ticks_per_second() -> u64 {
    #[cfg(unix)]
    let ticks = rustix::param::clock_ticks_per_second();
    #[cfg(not(unix))]
    let ticks = 100;
    ticks.max(1)
}

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// User + system CPU time of all its threads so far.
    #[serde(skip)]
    pub cpu: Duration,
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size over the process's life, KiB.
    pub hwm_kib: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `pid` is a number or `self`.
pub fn sample(pid: &str) -> Result<Sample, String> {
    let read = |file: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .map_err(|e| format!("cannot read /proc/{pid}/{file}: {e}"))
    };
    let cpu =
        parse_stat(&read("stat")?).ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))?;
    let (rss_kib, hwm_kib) = parse_status(&read("status")?)
        .ok_or_else(|| format!("/proc/{pid}/status: no VmRSS/VmHWM"))?;
    Ok(Sample {
        cpu,
        rss_kib,
        hwm_kib,
    })
}

/// utime + stime from the text of /proc/PID/stat.
pub fn parse_stat(text: &str) -> Option<Duration> {
    // The command name (field 2) is in parentheses and may contain spaces or parentheses:
    // the fields after it start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1000 / ticks_per_second()))
}

/// (VmRSS, VmHWM) in KiB from the text of /proc/PID/status.
pub fn parse_status(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The soft limit on open files of this process, from /proc/self/limits.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_an_awkward_name() {
        let text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 9 0 12345 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat(text), Some(Duration::from_millis(3250)));
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_status() {
        let text = "Name:\tmqttd\nVmPeak:\t  100 kB\nVmHWM:\t    5120 kB\nVmRSS:\t    4096 kB\n";
        assert_eq!(parse_status(text), Some((4096, 5120)));
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let s = sample("self").unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
        assert!(sample("999999999").is_err());
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }
}
