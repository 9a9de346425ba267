//! MQTT over WebSocket with other people's clients: paho-mqtt (Python, `transport=
//! "websockets"`) runs the shared interop scenarios over ws and wss; Debian's mosquitto_pub and
//! mosquitto_sub over TCP talk to a WebSocket client and back (same sessions and routing for
//! every transport).
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;
use std::time::Duration;

mod common;
#[path = "common/in_process.rs"]
mod in_process;
#[path = "common/ws_client.rs"]
mod ws_client;

use common::{run_python, run_with_timeout, RunningProgram};
use ws_client::*;

const SCENARIO_TIMEOUT: Duration = Duration::from_secs(20);

async fn broker() -> in_process::Broker {
    in_process::start(|c| {
        c.listeners.ws = Some("127.0.0.1:0".parse().unwrap());
        c.listeners.wss = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

/// Runs a paho scenario over ws (or wss when `tls`) against a fresh broker.
async fn paho(script: &'static str, scenario: &'static str, tls: bool) {
    let b = broker().await;
    let addr = if tls {
        b.server.wss_addr().unwrap()
    } else {
        b.server.ws_addr().unwrap()
    };
    let cert = b.cert.display().to_string();
    let output = tokio::task::spawn_blocking(move || {
        let port = addr.port().to_string();
        let mut args = vec![
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--transport",
            "websockets",
        ];
        if tls {
            args.extend(["--tls-ca", &cert]);
        }
        args.push(scenario);
        run_python(script, &args, SCENARIO_TIMEOUT)
    })
    .await
    .unwrap();
    assert!(
        output.success(),
        "paho {script} {scenario} over {} failed:\n{}",
        if tls { "wss" } else { "ws" },
        output.describe()
    );
    b.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_v311_qos_round_trips_over_ws() {
    paho("paho_v311.py", "qos", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_v5_will_over_ws() {
    paho("paho_v5.py", "will", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_v5_qos_round_trips_over_wss() {
    paho("paho_v5.py", "qos", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_v311_persistent_session_over_wss() {
    paho("paho_v311.py", "persistent-session", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_over_tcp_to_a_websocket_client_and_back() {
    let b = broker().await;
    let tcp_port = b.tcp.port().to_string();
    let mut ws = connect(b.server.ws_addr().unwrap()).await;
    let mut buf = mqtt_connect(&mut ws, "ws-side").await;
    mqtt_subscribe(&mut ws, &mut buf, "cross/to-ws").await;

    // TCP -> WebSocket.
    let port = tcp_port.clone();
    let output = tokio::task::spawn_blocking(move || {
        run_with_timeout(
            Command::new("mosquitto_pub").args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                "cross/to-ws",
                "-m",
                "from tcp",
                "-q",
                "1",
            ]),
            Duration::from_secs(10),
        )
    })
    .await
    .unwrap();
    assert!(output.success(), "{}", output.describe());
    let (topic, payload) = next_publish(&mut ws, &mut buf).await;
    assert_eq!(
        (topic.as_str(), &payload[..]),
        ("cross/to-ws", &b"from tcp"[..])
    );

    // WebSocket -> TCP: mosquitto_sub says when it is subscribed (-d prints its SUBACK;
    // stdbuf makes its stdout line-buffered).
    let mut sub = RunningProgram::spawn(Command::new("stdbuf").args([
        "-oL",
        "mosquitto_sub",
        "-h",
        "127.0.0.1",
        "-p",
        &tcp_port,
        "-t",
        "cross/to-tcp",
        "-C",
        "1",
        "-W",
        "10",
        "-d",
    ]));
    let sub = tokio::task::spawn_blocking(move || {
        sub.wait_for_line(|l| l.contains("SUBACK"), Duration::from_secs(10))
            .unwrap();
        sub
    })
    .await
    .unwrap();
    send(&mut ws, &publish_packet("cross/to-tcp", b"from ws")).await;
    let output = tokio::task::spawn_blocking(move || sub.wait(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(output.success(), "{}", output.describe());
    assert!(
        output.stdout.lines().any(|l| l == "from ws"),
        "{}",
        output.describe()
    );
    b.server.shutdown().await;
}
