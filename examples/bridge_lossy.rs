//! One run of the bridge benchmark (`benches/bridge_lossy.sh`, README "Bridges over a lossy
//! link"): an edge mqttd bridged to a central mqttd (both in this process) over QUIC or MQTTS,
//! a publisher at the edge and a subscriber at the centre, each message timestamped.
//!
//! ```sh
//! cargo run --release --example bridge_lossy -- quic    # TRANSPORT [ONE_WAY_MS [RATE [SECS [COUNT]]]]
//! ```
//!
//! The central broker listens for QUIC on 127.0.0.1:1884 and MQTTS on 127.0.0.1:8883 (fixed,
//! so the script's nftables rules can drop packets to and from those ports); with a one-way
//! delay the bridge goes through a userspace relay (`tests/common/relay.rs`). Three phases,
//! QoS 1 throughout:
//!
//! 1. latency: RATE messages per second for SECS seconds; end-to-end latency percentiles;
//! 2. throughput: COUNT messages published as fast as the publisher's window allows; messages
//!    per second from the first publish to the last delivery;
//! 3. QUIC only: at 200 msg/s, the bridge's connection moves to a new UDP socket (an address
//!    change of the edge); the time from the move to the arrival of the first message
//!    published after it, and the largest latency around it;
//! 4. at 200 msg/s, the central broker drops the bridge's connection (another client takes
//!    its session over and leaves at once): what an address change costs a TCP connection in
//!    the best case (the loss is known at once); the time from the drop to the arrival of the
//!    first message published after it (reconnection backoff 10-20 ms included; QUIC
//!    reconnects with 0-RTT).
//!
//! Prints one JSON object.
// Example code: brevity over error handling ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../tests/common/relay.rs"]
mod relay;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mqttd::client::{Client, ClientOptions};
use mqttd::codec::QoS;
use mqttd::{App, AppHandle, Config};

/// What the subscriber saw: (sequence, sent at ns since the epoch, arrived at).
type Seen = Arc<Mutex<Vec<(u64, u64, Instant, u64)>>>;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn payload(seq: u64) -> Bytes {
    let mut p = Vec::with_capacity(16);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&now_ns().to_be_bytes());
    p.resize(100, 0);
    Bytes::from(p)
}

async fn start(yaml: String) -> AppHandle {
    let config = Config::from_yaml(&yaml, std::path::Path::new("bench.yaml")).unwrap();
    App::new(config).start().await.unwrap()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e6
}

/// Waits until `n` messages with sequence numbers from `first` arrived (or `limit` passed).
async fn wait_for(seen: &Seen, first: u64, n: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let got = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, ..)| *s >= first && *s < first + n)
            .count() as u64;
        if got >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Publishes at `rate` for `secs` from sequence `first`, each QoS 1 publish in its own task.
async fn paced(publisher: &Client, first: u64, rate: f64, secs: f64) -> u64 {
    let n = (rate * secs) as u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    for seq in first..first + n {
        tick.tick().await;
        let pending = publisher
            .start_publish(
                mqttd::client::Message::new(format!("bench/{}", seq % 8), payload(seq))
                    .qos(QoS::AtLeastOnce),
            )
            .await
            .unwrap();
        tokio::spawn(pending);
    }
    n
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let transport = args.next().unwrap_or_else(|| "quic".into());
    let delay_ms: u64 = args.next().map_or(0, |a| a.parse().unwrap());
    let rate: f64 = args.next().map_or(500.0, |a| a.parse().unwrap());
    let secs: f64 = args.next().map_or(5.0, |a| a.parse().unwrap());
    let count: u64 = args.next().map_or(5000, |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();

    let central = start(format!(
        "listeners:\n  tcp: 127.0.0.1:0\n  quic: 127.0.0.1:1884\n  mqtts: 127.0.0.1:8883\n\
         storage:\n  persistence: false\n  data_dir: {}\nlog:\n  level: error\n",
        dir.path().join("central").display()
    ))
    .await;
    let ca = central.server().cert_path().unwrap().to_owned();
    let target: SocketAddr = match transport.as_str() {
        "quic" => central.quic_addr().unwrap(),
        "mqtts" => central.server().mqtts_addr().unwrap(),
        other => panic!("transport {other:?}: quic or mqtts"),
    };
    let _relay;
    let remote = if delay_ms > 0 {
        let relay = match transport.as_str() {
            "quic" => relay::udp(target, Duration::from_millis(delay_ms)).await,
            _ => relay::tcp(target, Duration::from_millis(delay_ms)).await,
        };
        let addr = relay.addr;
        _relay = relay;
        addr
    } else {
        target
    };
    let edge = start(format!(
        "listeners:\n  tcp: 127.0.0.1:0\n  quic: null\nstorage:\n  persistence: false\n  data_dir: {}\n\
         log:\n  level: error\nbridges:\n  - name: central\n    addresses: [\"{remote}\"]\n    \
         transport: {transport}\n    tls: {{ca_file: \"{}\", server_name: localhost}}\n    \
         backoff: {{base_ms: 20, cap_ms: 1000}}\n    max_inflight: 256\n    \
         topics:\n      - {{pattern: \"bench/#\", direction: out, qos: 1}}\n",
        dir.path().join("edge").display(),
        ca.display()
    ))
    .await;
    while !edge.bridge_stats()[0].1.up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut sub_options =
        ClientOptions::new(central.tcp_addr().unwrap().to_string()).client_id("bench-sub");
    sub_options.receive_maximum = 1024;
    sub_options.inbox_capacity = 65_536;
    let subscriber = Client::connect(sub_options).await.unwrap().0;
    subscriber
        .subscribe("bench/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    {
        let (subscriber, seen) = (subscriber.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok(m) = subscriber.recv().await {
                let seq = u64::from_be_bytes(m.payload[0..8].try_into().unwrap());
                let sent = u64::from_be_bytes(m.payload[8..16].try_into().unwrap());
                let arrived = Instant::now();
                let latency = now_ns().saturating_sub(sent);
                seen.lock().unwrap().push((seq, sent, arrived, latency));
            }
        });
    }
    let publisher = Client::connect(
        ClientOptions::new(edge.tcp_addr().unwrap().to_string()).client_id("bench-pub"),
    )
    .await
    .unwrap()
    .0;

    // 1. Latency at a steady rate.
    let n = paced(&publisher, 0, rate, secs).await;
    wait_for(&seen, 0, n, Duration::from_secs(30)).await;
    let mut latencies: Vec<u64> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(s, ..)| *s < n)
        .map(|(.., l)| *l)
        .collect();
    latencies.sort_unstable();
    let delivered = latencies.len();

    // 2. Throughput: as fast as the windows allow.
    let first = 1_000_000;
    let started = Instant::now();
    let mut pendings = Vec::with_capacity(count as usize);
    for seq in first..first + count {
        let message = mqttd::client::Message::new(format!("bench/{}", seq % 8), payload(seq))
            .qos(QoS::AtLeastOnce);
        pendings.push(tokio::spawn(
            publisher.start_publish(message).await.unwrap(),
        ));
    }
    wait_for(&seen, first, count, Duration::from_secs(120)).await;
    let last = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(s, ..)| *s >= first)
        .map(|(_, _, at, _)| *at)
        .max();
    let through = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(s, ..)| *s >= first)
        .count();
    let throughput = last.map(|l| through as f64 / (l - started).as_secs_f64());
    for p in pendings {
        let _ = p.await;
    }

    // 3. QUIC: an address change of the edge in the middle of a steady stream.
    let mut migration = serde_json::Value::Null;
    if transport == "quic" {
        let first = 2_000_000;
        let stream = {
            let publisher = publisher.clone();
            tokio::spawn(async move { paced(&publisher, first, 200.0, 3.0).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let moved_at = Instant::now();
        let moved_ns = now_ns();
        edge.bridge_migrate("central").await.unwrap();
        let n = stream.await.unwrap();
        wait_for(&seen, first, n, Duration::from_secs(30)).await;
        let seen = seen.lock().unwrap();
        let after: Vec<_> = seen
            .iter()
            .filter(|(s, sent, ..)| *s >= first && *sent >= moved_ns)
            .collect();
        let resume = after
            .iter()
            .map(|(_, _, at, _)| *at)
            .min()
            .map(|at| (at - moved_at).as_secs_f64() * 1000.0);
        let around = seen
            .iter()
            .filter(|(s, sent, ..)| *s >= first && sent.abs_diff(moved_ns) < 500_000_000)
            .map(|(.., l)| *l)
            .max()
            .map(|l| l as f64 / 1e6);
        migration = serde_json::json!({
            "resume_ms": resume,
            "max_latency_ms_within_500ms": around,
            "delivered": seen.iter().filter(|(s, ..)| *s >= first).count(),
            "published": n,
            "reconnects": edge.bridge_stats()[0].1.reconnects,
        });
    }

    // 4. The central broker drops the bridge.
    let reconnect = {
        let first = 3_000_000;
        let stream = {
            let publisher = publisher.clone();
            tokio::spawn(async move { paced(&publisher, first, 200.0, 3.0).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = edge.bridge_stats()[0].1;
        let dropped_at = Instant::now();
        let dropped_ns = now_ns();
        let taker = Client::connect(
            ClientOptions::new(central.tcp_addr().unwrap().to_string())
                .client_id("mqttd-bridge-central")
                .clean_start(false)
                .session_expiry(86_400),
        )
        .await
        .unwrap()
        .0;
        taker.disconnect().await.unwrap();
        let n = stream.await.unwrap();
        wait_for(&seen, first, n, Duration::from_secs(30)).await;
        let after = edge.bridge_stats()[0].1;
        let seen = seen.lock().unwrap();
        let resume = seen
            .iter()
            .filter(|(s, sent, ..)| *s >= first && *sent >= dropped_ns)
            .map(|(_, _, at, _)| *at)
            .min()
            .map(|at| (at - dropped_at).as_secs_f64() * 1000.0);
        // Messages published while the bridge was away wait for its return: the largest
        // latency around the drop is the outage as the messages saw it.
        let around = seen
            .iter()
            .filter(|(s, sent, ..)| *s >= first && sent.abs_diff(dropped_ns) < 500_000_000)
            .map(|(.., l)| *l)
            .max()
            .map(|l| l as f64 / 1e6);
        serde_json::json!({
            "resume_ms": resume,
            "max_latency_ms_within_500ms": around,
            "delivered": seen.iter().filter(|(s, ..)| *s >= first).count(),
            "published": n,
            "reconnects": after.reconnects - before.reconnects,
            "zero_rtt": after.zero_rtt_connects - before.zero_rtt_connects,
        })
    };

    let stats = edge.bridge_stats()[0].1;
    println!(
        "{}",
        serde_json::json!({
            "transport": transport,
            "delay_ms": delay_ms,
            "rate": rate,
            "secs": secs,
            "published": n,
            "delivered": delivered,
            "p50_ms": percentile(&latencies, 0.50),
            "p90_ms": percentile(&latencies, 0.90),
            "p99_ms": percentile(&latencies, 0.99),
            "max_ms": percentile(&latencies, 1.0),
            "throughput_count": count,
            "throughput_delivered": through,
            "throughput_msg_s": throughput,
            "migration": migration,
            "reconnect": reconnect,
            "bridge_reconnects": stats.reconnects,
        })
    );
    edge.shutdown().await;
    central.shutdown().await;
}
