//! Connection migration with an independent QUIC stack: aioquic moves its connection to a new
//! UDP socket and connection ID mid-session (`tests/interop/quic_migration.py`, run with the
//! test venv's Python like `tests/interop_aioquic.rs`). The broker runs with `--server-id 0a01`
//! so the script can check the layout of the connection IDs it issues; afterwards the broker's
//! log must show `client migrated` with each new address the script reports.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{note, run_python, BrokerKind, TestBroker};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
const CERT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the broker may take to log a migration the script has finished.
const LOG_TIMEOUT: Duration = Duration::from_secs(3);

fn run_checks(checks: &[&str]) {
    let broker = TestBroker::start_with_args(&["--server-id", "0a01"]);
    if broker.kind != BrokerKind::Mqttd {
        note("quic_migration.py: MQTT over QUIC is an mqttd feature; nothing to run");
        return;
    }
    let quic_addr = broker.quic_addr.expect("a QUIC listener");
    let cert_path = broker.cert_path.clone().expect("a certificate path");
    wait_for_file(&cert_path);
    let host = quic_addr.ip().to_string();
    let port = quic_addr.port().to_string();
    let tcp_port = broker.port();
    let cafile = cert_path.to_string_lossy().into_owned();
    let mut args = vec![
        "--host",
        host.as_str(),
        "--port",
        port.as_str(),
        "--cafile",
        cafile.as_str(),
        "--tcp-port",
        tcp_port.as_str(),
    ];
    args.extend_from_slice(checks);
    let output = run_python("quic_migration.py", &args, SCRIPT_TIMEOUT);
    note(output.stdout.trim_end());
    assert!(
        output.success(),
        "aioquic migration checks {checks:?} failed:\n{}",
        output.describe()
    );
    // `moved <client id> <port>`: the broker must have logged each move.
    let moves: Vec<(String, String)> = output
        .stdout
        .lines()
        .filter_map(|line| line.strip_prefix("moved "))
        .filter_map(|rest| rest.rsplit_once(' '))
        .map(|(id, port)| (id.to_owned(), port.to_owned()))
        .collect();
    assert!(!moves.is_empty(), "the script reported no move");
    let deadline = Instant::now() + LOG_TIMEOUT;
    loop {
        let log = std::fs::read_to_string(broker.log_path()).unwrap_or_default();
        let missing: Vec<&(String, String)> = moves
            .iter()
            .filter(|(id, port)| {
                !log.lines().any(|line| {
                    line.contains("client migrated")
                        && line.contains(&format!("client={id}"))
                        && line.contains(&format!("new=quic:127.0.0.1:{port}"))
                })
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broker did not log these migrations: {missing:?}\nlog:\n{}",
            broker.log_tail(40)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + CERT_TIMEOUT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "no certificate {}",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn aioquic_subscriber_moves_mid_flow() {
    run_checks(&["subscriber-moves-mid-flow"]);
}

#[test]
fn aioquic_publisher_moves_twice() {
    run_checks(&["publisher-moves-twice"]);
}
