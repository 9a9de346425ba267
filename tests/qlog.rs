//! qlog on demand (`quic.qlog_dir`): a QUIC connection the filter selects leaves one JSON-SEQ
//! file (RFC 7464 records: 0x1E, a JSON text, a newline) whose header names the qlog format
//! and whose events include the packets sent and received; connections the filter does not
//! select leave nothing. The broker is the binary, the client `mqttd pub --quic`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_with_timeout, unique, TestBroker};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

/// A broker with `quic:` settings from `yaml` (indented under `quic:`).
fn broker_with(dir: &Path, quic_yaml: &str) -> TestBroker {
    let config = dir.join("mqttd.yaml");
    std::fs::write(&config, format!("quic:\n{quic_yaml}")).unwrap();
    TestBroker::start_with_args(&["--config", config.to_str().unwrap()])
}

fn quic_publish(broker: &TestBroker, client_id: &str) {
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .args(["pub", "--quic", "-h", "127.0.0.1"])
            .args(["-p", &broker.quic_addr.unwrap().port().to_string()])
            .arg("--cafile")
            .arg(broker.cert_path.as_ref().unwrap())
            .args(["-i", client_id, "-t", "qlog/t", "-m", "hello", "-q", "1"]),
        WAIT,
    );
    assert!(out.success(), "{}", out.describe());
}

fn sqlog_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "sqlog"));
    files.sort();
    files
}

/// The records of a JSON-SEQ file, each parsed; `Err` while the file is incomplete (the
/// broker writes the rest when quinn drops the connection).
fn records(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    if !text.starts_with('\u{1e}') || !text.ends_with('\n') {
        return Err(format!("not whole JSON-SEQ records: {} bytes", text.len()));
    }
    text.split('\u{1e}')
        .skip(1)
        .map(|record| serde_json::from_str::<Value>(record).map_err(|e| format!("{e}: {record:?}")))
        .collect()
}

/// The header record and the event names, once the connection's trace holds packets both
/// ways; the first event must be the client's Initial packet (the trace starts with the
/// handshake).
fn wait_for_trace(path: &Path) -> (Value, Vec<String>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let parsed = records(path);
        if let Ok(records) = &parsed {
            let names: Vec<String> = records[1..]
                .iter()
                .filter_map(|r| r["name"].as_str().map(str::to_owned))
                .collect();
            let sent = names.iter().any(|n| n.ends_with("packet_sent"));
            let received = names.iter().any(|n| n.ends_with("packet_received"));
            if sent && received && records.len() > 5 {
                let first = &records[1];
                assert_eq!(first["name"], "transport:packet_received", "{first}");
                assert_eq!(first["data"]["header"]["packet_type"], "initial", "{first}");
                return (records[0].clone(), names);
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never became a whole trace: {:?}",
            path.display(),
            parsed.map(|r| r.len())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_quic_connection_writes_a_qlog_trace_that_parses() {
    let dir = tempfile::tempdir().unwrap();
    let qlog = dir.path().join("qlog");
    let broker = broker_with(dir.path(), &format!("  qlog_dir: {}\n", qlog.display()));
    assert!(sqlog_files(&qlog).is_empty());
    quic_publish(&broker, &unique("traced"));
    let deadline = Instant::now() + WAIT;
    while sqlog_files(&qlog).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no qlog file in {}",
            qlog.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let files = sqlog_files(&qlog);
    assert_eq!(files.len(), 1, "{files:?}");
    let (header, names) = wait_for_trace(&files[0]);
    assert_eq!(header["qlog_format"], "JSON-SEQ", "{header}");
    assert!(header["qlog_version"].is_string(), "{header}");
    assert!(header["trace"].is_object(), "{header}");
    assert!(
        names.iter().any(|n| n == "recovery:metrics_updated"),
        "{names:?}"
    );
    // A TCP client has no QUIC trace.
    let out = run_with_timeout(
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &broker.port()])
            .args(["-t", "qlog/t", "-m", "tcp"]),
        WAIT,
    );
    assert!(out.success(), "{}", out.describe());
    assert_eq!(sqlog_files(&qlog).len(), 1);
}

#[test]
fn the_client_id_filter_keeps_the_listed_client_only() {
    let dir = tempfile::tempdir().unwrap();
    let qlog = dir.path().join("qlog");
    let traced = unique("traced");
    let broker = broker_with(
        dir.path(),
        &format!(
            "  qlog_dir: {}\n  qlog_client_ids: [\"{traced}\"]\n",
            qlog.display()
        ),
    );
    quic_publish(&broker, &unique("other"));
    quic_publish(&broker, &traced);
    quic_publish(&broker, &unique("other"));
    let files = sqlog_files(&qlog);
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(&format!("-{traced}.sqlog")), "{name}");
    // Kept from the start: the handshake that came before the CONNECT is in the file.
    let (header, names) = wait_for_trace(&files[0]);
    assert_eq!(header["qlog_format"], "JSON-SEQ", "{header}");
    assert!(names.len() > 5, "{names:?}");
}
