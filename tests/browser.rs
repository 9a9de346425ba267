//! MQTT.js (npm `mqtt`) in headless Chromium (Debian's, driven by npm `playwright-core`)
//! against an in-process broker: over ws and wss it subscribes, receives from `mosquitto_pub`
//! over TCP and from `mqttd pub --quic`, and publishes to `mosquitto_sub` and `mqttd sub
//! --quic`. The browser side is `tests/browser/mqtt_in_chromium.cjs`; `tests/run-all.sh`
//! installs Chromium (apt) and the npm packages (target/node).
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;
#[path = "common/in_process.rs"]
mod in_process;

/// The whole browser run (Chromium start, every target) must finish within this.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// npm packages (`playwright-core`, `mqtt`): `MQTTD_TEST_NODE_MODULES`, else
/// `target/node/node_modules` (tests/run-all.sh).
fn node_modules() -> PathBuf {
    let dir = std::env::var_os("MQTTD_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target/node/node_modules"));
    for package in ["playwright-core", "mqtt/dist/mqtt.min.js"] {
        assert!(
            dir.join(package).exists(),
            "{} is missing: run tests/run-all.sh (npm install --prefix target/node \
             playwright-core@1 mqtt@5)",
            dir.join(package).display()
        );
    }
    dir
}

/// Debian's Chromium binary (`/usr/bin/chromium` is a wrapper script Playwright cannot drive).
fn chromium() -> PathBuf {
    let path = std::env::var_os("MQTTD_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/chromium/chromium"));
    assert!(
        path.exists(),
        "{} is missing: run tests/run-all.sh (apt-get install chromium)",
        path.display()
    );
    path
}

/// Runs the browser script with `targets` (and the broker's TCP/QUIC ports) and asserts every
/// target passed.
pub async fn run_browser(
    broker: &in_process::Broker,
    targets: serde_json::Value,
    chromium_args: &[String],
) {
    let config = serde_json::json!({
        "node_modules": node_modules(),
        "chromium": chromium(),
        "mqttd": env!("CARGO_BIN_EXE_mqttd"),
        "cert": broker.cert,
        "tcp_port": broker.tcp.port(),
        "quic_port": broker.quic.port(),
        "targets": targets,
        "chromium_args": chromium_args,
    });
    let names: Vec<String> = targets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    let script = manifest_dir().join("tests/browser/mqtt_in_chromium.cjs");
    let output = tokio::task::spawn_blocking(move || {
        common::run_with_timeout(
            Command::new("node").arg(script).arg(config.to_string()),
            BROWSER_TIMEOUT,
        )
    })
    .await
    .unwrap();
    assert!(
        output.success(),
        "MQTT.js in Chromium failed:\n{}",
        output.describe()
    );
    for name in names {
        assert!(
            output.stdout.contains(&format!("PASS {name}:")),
            "{}",
            output.describe()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_js_in_chromium_over_ws_and_wss() {
    let b = in_process::start(|c| {
        c.listeners.ws = Some("127.0.0.1:0".parse().unwrap());
        c.listeners.wss = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let ws = b.server.ws_addr().unwrap();
    let wss = b.server.wss_addr().unwrap();
    let targets = serde_json::json!([
        {"name": "ws", "url": format!("ws://127.0.0.1:{}/mqtt", ws.port())},
        {"name": "wss", "url": format!("wss://127.0.0.1:{}/mqtt", wss.port())},
    ]);
    run_browser(&b, targets, &[]).await;
    b.server.shutdown().await;
}

/// GETs `path` from the WebSocket listener at `addr` and returns the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    answer.split("\r\n\r\n").nth(1).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_js_in_chromium_over_webtransport_with_datagrams() {
    let b = in_process::start(|c| {
        c.listeners.ws = Some("127.0.0.1:0".parse().unwrap());
        c.quic.webtransport = true;
        c.quic.webtransport_dev_cert = true;
    })
    .await;
    // The development certificate's hash, as a page would fetch it.
    let body = http_get(
        b.server.ws_addr().unwrap(),
        "/.well-known/mqttd-webtransport-cert-hash",
    )
    .await;
    let hash: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(hash["algorithm"], "sha-256");
    let hex = hash["value"].as_str().unwrap().to_owned();
    assert_eq!(hex.len(), 64, "{body}");
    let quic = b.quic.port();
    let targets = serde_json::json!([{
        "name": "webtransport",
        "webtransport": {
            "url": format!("https://127.0.0.1:{quic}/mqtt"),
            "cert_hash": hex,
            "refused_path": format!("https://127.0.0.1:{quic}/elsewhere"),
        },
        "datagrams": true,
        "publish_datagrams": true,
    }]);
    run_browser(&b, targets, &[]).await;
    // The browser's QoS 0 publishes arrived as WebTransport datagrams (proto-ext/webtransport.md
    // section 3), none dropped as malformed.
    let metrics = b.server.metrics().await.unwrap();
    assert!(
        metrics.datagrams_received >= 2,
        "datagrams received from the browser: {}",
        metrics.datagrams_received
    );
    assert_eq!(metrics.datagrams_dropped, 0);
    b.server.shutdown().await;
}
