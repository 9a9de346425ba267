//! `mqttd bench` end to end: small runs against a real broker, checked on what they count
//! (every message delivered once, in order), never on how fast.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::listening::Listening;
use common::{free_loopback_addr, run_with_timeout, BrokerKind, TestBroker};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `mqttd bench ARGS --json --quiet` and returns its report.
fn bench(args: &[&str]) -> Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mqttd"));
    command.arg("bench").args(args).args(["--json", "--quiet"]);
    let output = run_with_timeout(&mut command, LIMIT);
    assert!(output.success(), "{}", output.describe());
    serde_json::from_str(output.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{}", output.describe()))
}

fn int(report: &Value, path: &[&str]) -> u64 {
    let mut v = report;
    for key in path {
        v = &v[key];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {report:#}"))
}

fn assert_all_delivered(report: &Value, expected: u64) {
    assert_eq!(int(report, &["connections", "failed"]), 0, "{report:#}");
    let delivery = &report["delivery"];
    assert_eq!(delivery["expected"].as_u64(), Some(expected), "{report:#}");
    assert_eq!(delivery["unique"].as_u64(), Some(expected), "{report:#}");
    assert_eq!(delivery["lost"].as_u64(), Some(0), "{report:#}");
    for counter in ["duplicates", "reordered", "foreign"] {
        assert_eq!(delivery[counter].as_u64(), Some(0), "{counter}: {report:#}");
    }
    assert!(int(report, &["delivery", "latency_us", "count"]) >= expected);
    assert!(
        report["errors"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
}

#[test]
fn fan_in_qos1_delivers_every_message_once_and_in_order() {
    let broker = TestBroker::start();
    let report = bench(&[
        "fan-in",
        "-h",
        &broker.host(),
        "-p",
        &broker.port(),
        "-c",
        "3",
        "-q",
        "1",
        "-n",
        "300",
    ]);
    assert_eq!(report["scenario"], "fan-in");
    assert_eq!(
        (
            report["publishers"].as_u64(),
            report["subscribers"].as_u64()
        ),
        (Some(3), Some(1))
    );
    assert_eq!(int(&report, &["connections", "established"]), 4);
    assert_eq!(int(&report, &["publish", "completed"]), 900);
    assert_all_delivered(&report, 900);
    assert_eq!(int(&report, &["publish", "ack_latency_us", "count"]), 900);
}

#[test]
fn pairs_at_a_rate_over_mqtt_311() {
    let broker = TestBroker::start();
    let report = bench(&[
        "pairs",
        "-h",
        &broker.host(),
        "-p",
        &broker.port(),
        "-c",
        "2",
        "-q",
        "2",
        "-n",
        "40",
        "-r",
        "200",
        "-V",
        "311",
    ]);
    assert_eq!(report["mqtt_version"], "3.1.1");
    assert_eq!(int(&report, &["publish", "completed"]), 80);
    assert_all_delivered(&report, 80);
}

#[test]
fn fan_out_over_quic_data_streams() {
    let broker = TestBroker::start();
    if broker.kind != BrokerKind::Mqttd {
        return; // QUIC is mqttd's
    }
    let quic = broker.quic_addr.expect("mqttd listens for QUIC");
    let cert = broker.cert_path.clone().expect("mqttd's certificate");
    let report = bench(&[
        "fan-out",
        "-p",
        &quic.port().to_string(),
        "--transport",
        "quic",
        "--quic-mode",
        "multi",
        "--cafile",
        cert.to_str().unwrap(),
        "-c",
        "3",
        "-q",
        "1",
        "-n",
        "100",
    ]);
    assert_eq!(report["quic_mode"], "multi");
    assert_eq!(int(&report, &["publish", "completed"]), 100);
    assert_all_delivered(&report, 300);
}

#[test]
fn fan_in_over_websocket() {
    let ws = free_loopback_addr();
    let broker = TestBroker::start_with_args(&["--ws", &ws.to_string()]);
    if broker.kind != BrokerKind::Mqttd {
        return; // the WebSocket listener is mqttd's here
    }
    let report = bench(&[
        "fan-in",
        "-p",
        &ws.port().to_string(),
        "--transport",
        "ws",
        "-c",
        "2",
        "-q",
        "1",
        "-n",
        "200",
    ]);
    assert_eq!(report["transport"], "ws");
    assert_eq!(int(&report, &["publish", "completed"]), 400);
    assert_all_delivered(&report, 400);
}

/// A broker of our own, to know its process id.
struct OwnBroker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl OwnBroker {
    fn start() -> OwnBroker {
        let dir = tempfile::tempdir().unwrap();
        let listening_file = dir.path().join("listening");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .args(["--tcp", "127.0.0.1:0", "--quic", "off", "--data-dir"])
            .arg(dir.path())
            .arg("--listening-file")
            .arg(&listening_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let listening = Listening::wait_for(&mut child, &listening_file, Duration::from_secs(10))
            .expect("mqttd listens");
        OwnBroker {
            child,
            port: listening.tcp.expect("a TCP listener").port(),
            _dir: dir,
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn conn_holds_idle_connections_and_reads_the_broker() {
    let broker = OwnBroker::start();
    let pid = broker.child.id().to_string();
    let report = bench(&[
        "conn",
        "-p",
        &broker.port.to_string(),
        "-c",
        "20",
        "--concurrency",
        "5",
        "--hold",
        "0.5",
        "--broker-pid",
        &pid,
    ]);
    assert_eq!(int(&report, &["connections", "established"]), 20);
    assert_eq!(int(&report, &["connections", "setup_us", "count"]), 20);
    assert_eq!(int(&report, &["idle", "connections"]), 20);
    assert!(
        report["idle"]["rss_per_connection_kib"].is_number(),
        "{report:#}"
    );
    assert_eq!(
        report["broker"]["pid"].as_u64(),
        Some(u64::from(broker.child.id()))
    );
    assert!(int(&report, &["broker", "rss_before_kib"]) > 0);
    assert!(report["publish"].is_null() && report["delivery"].is_null());
}

#[test]
fn usage_errors_and_unreachable_brokers() {
    let run = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mqttd"));
        command.arg("bench").args(args);
        run_with_timeout(&mut command, LIMIT)
    };
    let output = run(&["fan-in", "-s", "8"]);
    assert_eq!(
        output.status.and_then(|s| s.code()),
        Some(2),
        "{}",
        output.describe()
    );
    assert!(output.stderr.contains("too small"), "{}", output.describe());

    let closed = free_loopback_addr();
    let output = run(&[
        "fan-in",
        "-p",
        &closed.port().to_string(),
        "-n",
        "1",
        "--quiet",
    ]);
    assert_eq!(
        output.status.and_then(|s| s.code()),
        Some(1),
        "{}",
        output.describe()
    );
    assert!(
        output.stderr.contains("no client could connect"),
        "{}",
        output.describe()
    );

    let output = run(&["--help"]);
    assert!(output.success());
    for scenario in ["conn", "fan-in", "fan-out", "pairs"] {
        assert!(output.stdout.contains(scenario), "{}", output.stdout);
    }
}
