//! The dashboard in a real browser: Debian's Chromium driven by `playwright-core` (npm,
//! installed under target/node by tests/run-all.sh; no browser is downloaded) loads the page
//! from the admin listener, sees an MQTT client (npm `mqtt`) appear in the client list and its
//! publishes move the counter and the plot, a QUIC client's row shows its RTT, migrations and
//! open streams, and saves a screenshot as target/dashboard.png.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{interop_dir, run_with_timeout, unique, RunningProgram, TestBroker};

fn node_modules() -> PathBuf {
    let dir = std::env::var_os("MQTTD_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/node/node_modules"));
    assert!(
        dir.join("playwright-core").exists() && dir.join("mqtt").exists(),
        "{} lacks playwright-core or mqtt: run tests/run-all.sh first (npm install --prefix \
         target/node playwright-core@1 mqtt@5)",
        dir.display()
    );
    dir
}

#[test]
fn the_dashboard_shows_clients_and_moves_its_plot_in_chromium() {
    let modules = node_modules();
    let broker = TestBroker::start();
    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    // A QUIC subscriber (the bundled client, control stream only) for the QUIC columns.
    let quic_id = unique("dash-quic");
    let quic_sub = RunningProgram::spawn(
        Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .args([
                "sub",
                "--quic",
                "-h",
                "127.0.0.1",
                "-t",
                "dash/quic",
                "-i",
                &quic_id,
            ])
            .args(["-p", &broker.quic_addr.unwrap().port().to_string()])
            .arg("--cafile")
            .arg(broker.cert_path.as_ref().unwrap()),
    );
    let out = run_with_timeout(
        Command::new("node")
            .arg(interop_dir().join("dashboard.cjs"))
            .arg(format!("http://{}/", broker.admin_addr.unwrap()))
            .arg(format!("mqtt://{}", broker.addr))
            .arg(&screenshot)
            .arg(&quic_id)
            .env("NODE_PATH", &modules),
        Duration::from_secs(60),
    );
    assert!(out.success(), "{}", out.describe());
    assert!(out.stdout.contains("\"ok\":true"), "{}", out.describe());
    drop(quic_sub);
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}
