//! The `$SYS` topic tree, with mosquitto's names (`$SYS/broker/clients/connected`,
//! `.../load/messages/received/1min`, `.../uptime`...) plus `$SYS/broker/quic/...`.
//!
//! Every `admin.sys_interval` seconds the broker computes each value from its metrics
//! snapshot and publishes, retained (QoS 0), only the topics whose text changed. It runs on the
//! broker's own timer with the `now` it is given, so the tree is deterministic and tested in
//! memory. Deliveries go through routing like any message, so the ACL decides who reads them;
//! a wildcard at the first level never matches `$SYS` [MQTT-4.7.2-1]. `$SYS` topics are kept in
//! the retained store but never written to disk: they describe this run only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::Bytes;
use bytestring::ByteString;

use super::timers::Timer;
use super::{Broker, Message, Metrics};
use crate::codec::{Properties, QoS};

/// The `$SYS` prefix; a topic under it is the broker's own.
pub const SYS_PREFIX: &str = "$SYS/";

/// Moving averages of one rate over 1, 5 and 15 minutes (per minute, as mosquitto).
#[derive(Debug, Default, Clone, Copy)]
struct Load {
    averages: [f64; 3],
}

const LOAD_PERIODS: [(f64, &str); 3] = [(60.0, "1min"), (300.0, "5min"), (900.0, "15min")];

impl Load {
    /// Folds in `delta` events over `elapsed` seconds: each average moves toward the rate by
    /// `1 - e^(-elapsed/period)` (mosquitto's sys_tree.c formula).
    fn update(&mut self, delta: u64, elapsed: f64) {
        let rate = delta as f64 * 60.0 / elapsed;
        for (average, (period, _)) in self.averages.iter_mut().zip(LOAD_PERIODS) {
            let decay = (-elapsed / period).exp();
            *average = rate + decay * (*average - rate);
        }
    }
}

/// The rates with a load average, and how each is read from the metrics.
type Reading = fn(&Metrics) -> u64;

const LOADS: [(&str, Reading); 9] = [
    ("messages/received", |m| m.received.total_packets()),
    ("messages/sent", |m| m.sent.total_packets()),
    ("publish/received", |m| m.received.packets[3]),
    ("publish/sent", |m| m.sent.packets[3]),
    ("publish/dropped", dropped),
    ("bytes/received", |m| m.received.total_bytes()),
    ("bytes/sent", |m| m.sent.total_bytes()),
    ("connections", |m| m.connacks.0[0]),
    ("sockets", |m| m.connections_opened),
];

fn dropped(m: &Metrics) -> u64 {
    m.dropped_qos0
        + m.dropped_queue_full
        + m.dropped_too_large
        + m.dropped_expired
        + m.dropped_no_subscribers
}

/// State of the `$SYS` tree between two updates.
#[derive(Debug, Default)]
pub(super) struct SysTree {
    interval: Duration,
    started_at: Option<Instant>,
    /// The last text published per topic: only changes are published again.
    published: AHashMap<String, String>,
    last_tick: Option<(Instant, [u64; 9])>,
    loads: [Load; 9],
    max_connected: u64,
    /// Figures the transport glue reports (QUIC handshakes, RTT...), published under
    /// `$SYS/broker/quic/`; replaced by each report.
    transport: Vec<(String, String)>,
}

impl Broker {
    /// Starts the `$SYS` tree: a first update now, then one every `sys_interval_secs`
    /// seconds (`admin.sys_interval`; 0: never).
    pub fn start_sys(&mut self, now: Instant) {
        let secs = self.settings.sys_interval_secs;
        if secs == 0 {
            return;
        }
        self.sys.interval = Duration::from_secs(secs);
        self.sys.started_at = Some(now);
        self.timers.schedule(now, Timer::Sys);
    }

    /// Figures of the transports for `$SYS/broker/quic/...` (topic suffix, text), published at
    /// the next update.
    pub fn set_transport_figures(&mut self, figures: Vec<(String, String)>) {
        self.sys.transport = figures;
    }

    pub(super) fn sys_tick(&mut self, now: Instant) {
        let Some(started) = self.sys.started_at else {
            return;
        };
        self.timers.schedule(now + self.sys.interval, Timer::Sys);
        let values = self.sys_values(started, now);
        for (topic, text) in values {
            if self.sys.published.get(&topic) == Some(&text) {
                continue;
            }
            let message = Message {
                topic: ByteString::from(topic.as_str()),
                payload: Bytes::from(text.clone().into_bytes()),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: Properties::default(),
                expires_at: None,
                origin: None,
                received_at: None,
                cluster_seq: None,
            };
            self.publish_message(Arc::new(message), None, now);
            self.sys.published.insert(topic, text);
        }
        self.reap(now);
    }

    /// Every `$SYS` topic with its text now, and the load averages moved forward.
    fn sys_values(&mut self, started: Instant, now: Instant) -> Vec<(String, String)> {
        let m = self.metrics();
        let counters: [u64; 9] = LOADS.map(|(_, read)| read(&m));
        if let Some((at, previous)) = self.sys.last_tick {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            if elapsed > 0.0 {
                let moved = counters.iter().zip(previous.iter());
                for (load, (now, before)) in self.sys.loads.iter_mut().zip(moved) {
                    load.update(now.saturating_sub(*before), elapsed);
                }
            }
        }
        self.sys.last_tick = Some((now, counters));
        self.sys.max_connected = self.sys.max_connected.max(m.sessions_connected);

        let quic_connections = m
            .connections_by_transport
            .iter()
            .find(|(t, _)| t == "quic")
            .map_or(0, |(_, n)| *n);
        let uptime = now.saturating_duration_since(started).as_secs();
        let mut v: Vec<(String, String)> = vec![
            (
                "version".into(),
                format!("mqttd {}", env!("CARGO_PKG_VERSION")),
            ),
            ("uptime".into(), format!("{uptime} seconds")),
            ("clients/connected".into(), m.sessions_connected.to_string()),
            (
                "clients/disconnected".into(),
                (m.sessions - m.sessions_connected).to_string(),
            ),
            ("clients/total".into(), m.sessions.to_string()),
            ("clients/maximum".into(), self.sys.max_connected.to_string()),
            ("clients/expired".into(), m.sessions_expired.to_string()),
            ("connections/socket/count".into(), m.connections.to_string()),
            (
                "messages/received".into(),
                m.received.total_packets().to_string(),
            ),
            ("messages/sent".into(), m.sent.total_packets().to_string()),
            (
                "publish/messages/received".into(),
                m.received.packets[3].to_string(),
            ),
            (
                "publish/messages/sent".into(),
                m.sent.packets[3].to_string(),
            ),
            ("publish/messages/dropped".into(), dropped(&m).to_string()),
            (
                "publish/bytes/received".into(),
                m.received.bytes[3].to_string(),
            ),
            ("publish/bytes/sent".into(), m.sent.bytes[3].to_string()),
            (
                "bytes/received".into(),
                m.received.total_bytes().to_string(),
            ),
            ("bytes/sent".into(), m.sent.total_bytes().to_string()),
            (
                "retained messages/count".into(),
                m.retained_messages.to_string(),
            ),
            (
                "store/messages/count".into(),
                (m.queued_messages + m.inflight_messages).to_string(),
            ),
            ("store/messages/bytes".into(), m.queued_bytes.to_string()),
            ("subscriptions/count".into(), m.subscriptions.to_string()),
            (
                "shared_subscriptions/count".into(),
                m.shared_subscriptions.to_string(),
            ),
            ("quic/connections".into(), quic_connections.to_string()),
            ("quic/datagrams/sent".into(), m.datagrams_sent.to_string()),
            (
                "quic/datagrams/received".into(),
                m.datagrams_received.to_string(),
            ),
            (
                "quic/datagrams/dropped".into(),
                m.datagrams_dropped.to_string(),
            ),
            ("quic/migrations".into(), m.migrations.to_string()),
            ("quic/streams/refused".into(), m.streams_refused.to_string()),
        ];
        for ((name, _), load) in LOADS.iter().zip(self.sys.loads.iter()) {
            for ((_, window), average) in LOAD_PERIODS.iter().zip(load.averages.iter()) {
                v.push((format!("load/{name}/{window}"), format!("{average:.2}")));
            }
        }
        for (suffix, text) in &self.sys.transport {
            v.push((format!("quic/{suffix}"), text.clone()));
        }
        for (topic, _) in v.iter_mut() {
            topic.insert_str(0, "$SYS/broker/");
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::Load;

    #[test]
    fn a_steady_rate_converges_and_a_stop_decays() {
        let mut load = Load::default();
        for _ in 0..2000 {
            load.update(100, 10.0); // 600 per minute
        }
        for average in load.averages {
            assert!((average - 600.0).abs() < 0.01, "{average}");
        }
        load.update(0, 60.0);
        // One minute of silence: the 1 min average falls to 1/e of its value.
        assert!((load.averages[0] - 600.0 / std::f64::consts::E).abs() < 0.01);
        assert!(load.averages[2] > load.averages[1] && load.averages[1] > load.averages[0]);
    }
}
