//! `/metrics` and `$SYS` seen from outside: real clients (mosquitto_pub / mosquitto_sub) act,
//! `/metrics` is scraped before and after with Python's `prometheus_client` parser (an
//! independent reader of the exposition format), and the figures must move by exactly what
//! the clients did. `$SYS` is read by mosquitto_sub.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
#[path = "admin/support.rs"]
mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_with_timeout, unique, RunningProgram, TestBroker};
use support::{mosquitto, moved, scrape};

const WAIT: Duration = Duration::from_secs(10);

fn publish(broker: &TestBroker, topic: &str, qos: &str) {
    let out = run_with_timeout(
        mosquitto("mosquitto_pub", broker).args([
            "-V",
            "mqttv311",
            "-q",
            qos,
            "-t",
            topic,
            "-m",
            "hello",
            "-i",
            &unique("pub"),
        ]),
        WAIT,
    );
    assert!(out.success(), "{}", out.describe());
}

/// Scrapes until `check` holds (the broker handles a client's last packets asynchronously),
/// at most a few seconds; returns the last scrape.
fn scrape_until(
    broker: &TestBroker,
    before: &HashMap<String, f64>,
    expected: &[(&str, f64)],
) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let after = scrape(broker, None);
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(key, want)| moved(before, &after, key) != *want)
            .map(|(key, want)| format!("{key}: moved {} (want {want})", moved(before, &after, key)))
            .collect();
        if wrong.is_empty() {
            return after;
        }
        if Instant::now() > deadline {
            panic!("metrics did not move as expected:\n{}", wrong.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn qos1_publishes_move_the_counters_by_what_the_clients_did() {
    let broker = TestBroker::start();
    let mut subscriber = RunningProgram::spawn(mosquitto("mosquitto_sub", &broker).args([
        "-V",
        "mqttv311",
        "-q",
        "1",
        "-t",
        "m/#",
        "-C",
        "3",
        "-d",
        "-W",
        "20",
        "-i",
        &unique("sub"),
    ]));
    subscriber
        .wait_for_line(|l| l.contains("received SUBACK"), WAIT)
        .expect("subscribed");
    let before = scrape(&broker, None);
    for _ in 0..3 {
        publish(&broker, "m/x", "1");
    }
    let out = subscriber.wait(WAIT);
    assert!(out.success(), "{}", out.describe());
    // A 3.1.1 QoS 1 PUBLISH of "m/x" / "hello": 1 + 1 + (2 + 3) + 2 + 5 = 14 bytes.
    let after = scrape_until(
        &broker,
        &before,
        &[
            ("mqttd_messages_received_total", 3.0),
            ("mqttd_messages_sent_total", 3.0),
            ("mqttd_packets_received_total{type=publish}", 3.0),
            ("mqttd_packets_sent_total{type=publish}", 3.0),
            ("mqttd_bytes_received_total{type=publish}", 42.0),
            ("mqttd_bytes_sent_total{type=publish}", 42.0),
            ("mqttd_packets_received_total{type=puback}", 3.0),
            ("mqttd_packets_sent_total{type=puback}", 3.0),
            ("mqttd_packets_received_total{type=connect}", 3.0),
            ("mqttd_packets_sent_total{type=connack}", 3.0),
            ("mqttd_connects_total{reason=0x00}", 3.0),
            ("mqttd_auth_total{result=success}", 3.0),
            ("mqttd_session_events_total{event=created}", 3.0),
            // Three publishers and the subscriber said DISCONNECT.
            ("mqttd_disconnects_total{by=client,reason=0x00}", 4.0),
            ("mqttd_packets_received_total{type=disconnect}", 4.0),
            ("mqttd_delivery_latency_seconds_count", 3.0),
            ("mqttd_messages_dropped_total{reason=no_subscribers}", 0.0),
            ("mqttd_connections_opened_total", 3.0),
        ],
    );
    // Everyone left: the gauges are back where they started.
    assert_eq!(after["mqttd_connections{transport=tcp}"], 0.0);
    assert_eq!(after["mqttd_sessions"], 0.0);
    assert_eq!(after["mqttd_subscriptions"], 0.0);
    assert_eq!(after["mqttd_build_info{version=0.1.0}"], 1.0);
    assert!(after["mqttd_process_resident_memory_bytes"] > 1e6);
    assert!(after["mqttd_process_open_fds"] >= 3.0);
}

#[test]
fn drops_retained_and_subscriptions_are_counted() {
    let broker = TestBroker::start();
    let before = scrape(&broker, None);
    publish(&broker, "nobody/listens", "0");
    let out = run_with_timeout(
        mosquitto("mosquitto_pub", &broker).args([
            "-t",
            "keep/me",
            "-m",
            "v",
            "-r",
            "-i",
            &unique("ret"),
        ]),
        WAIT,
    );
    assert!(out.success(), "{}", out.describe());
    let mut subscriber = RunningProgram::spawn(mosquitto("mosquitto_sub", &broker).args([
        "-V",
        "mqttv5",
        "-t",
        "a/+",
        "-t",
        "$share/g/b/#",
        "-d",
        "-W",
        "20",
        "-i",
        &unique("sub"),
    ]));
    subscriber
        .wait_for_line(|l| l.contains("received SUBACK"), WAIT)
        .expect("subscribed");
    let after = scrape_until(
        &broker,
        &before,
        &[
            ("mqttd_messages_dropped_total{reason=no_subscribers}", 2.0),
            ("mqttd_retained_messages", 1.0),
            ("mqttd_subscriptions", 2.0),
            ("mqttd_shared_subscriptions", 1.0),
            ("mqttd_sessions_connected", 1.0),
        ],
    );
    assert_eq!(after["mqttd_connections{transport=tcp}"], 1.0);
    assert!(after["mqttd_retained_bytes"] > 0.0);
    subscriber.signal("TERM");
    let _ = subscriber.wait(WAIT);
    let after_kill = scrape_until(&broker, &after, &[("mqttd_subscriptions", -2.0)]);
    // mosquitto_sub closes without DISCONNECT on SIGTERM? Either way the connection is gone.
    assert_eq!(after_kill["mqttd_connections{transport=tcp}"], 0.0);
}

/// A broker whose `$SYS` tree updates every second.
fn broker_with_sys_interval(dir: &tempfile::TempDir) -> TestBroker {
    let config = dir.path().join("mqttd.yaml");
    std::fs::write(&config, "admin:\n  sys_interval: 1\n").unwrap();
    TestBroker::start_with_args(&["-c", config.to_str().unwrap()])
}

#[test]
fn sys_topics_are_retained_updated_and_read_by_mosquitto_sub() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_sys_interval(&dir);
    // Retained: a new subscriber gets every topic at once.
    let out = run_with_timeout(
        mosquitto("mosquitto_sub", &broker).args([
            "-t",
            "$SYS/broker/version",
            "-t",
            "$SYS/broker/uptime",
            "-t",
            "$SYS/broker/load/messages/received/1min",
            "-t",
            "$SYS/broker/bytes/received",
            "-v",
            "-C",
            "4",
            "-W",
            "5",
        ]),
        WAIT,
    );
    assert!(out.success(), "{}", out.describe());
    assert!(
        out.stdout.contains("$SYS/broker/version mqttd 0.1.0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("$SYS/broker/uptime ") && l.ends_with(" seconds")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("$SYS/broker/load/messages/received/1min "),
        "{}",
        out.stdout
    );

    // Updated on change: this subscriber sees itself counted within a couple of intervals.
    let mut watcher = RunningProgram::spawn(mosquitto("mosquitto_sub", &broker).args([
        "-t",
        "$SYS/broker/clients/connected",
        "-v",
        "-W",
        "10",
    ]));
    watcher
        .wait_for_line(
            |l| l == "$SYS/broker/clients/connected 1",
            Duration::from_secs(5),
        )
        .expect("clients/connected follows the subscriber");

    // A wildcard at the first level never matches $SYS [MQTT-4.7.2-1].
    let out = run_with_timeout(
        mosquitto("mosquitto_sub", &broker).args(["-t", "#", "-v", "-W", "2"]),
        Duration::from_secs(6),
    );
    assert!(!out.stdout.contains("$SYS"), "{}", out.stdout);
}

/// Polls `check` for up to five seconds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn quic_clients_show_in_the_quic_metrics_and_their_quic_block() {
    let broker = TestBroker::start();
    let quic_port = broker.quic_addr.unwrap().port().to_string();
    let cert = broker.cert_path.clone().unwrap();
    let quic_client = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mqttd"));
        command
            .args(args)
            .args(["--quic", "--cafile", cert.to_str().unwrap()])
            .args(["-h", "127.0.0.1", "-p", &quic_port]);
        command
    };
    let before = scrape(&broker, None);
    let id = unique("quic-sub");
    let sub = RunningProgram::spawn(&mut quic_client(&[
        "sub", "-t", "q/#", "-v", "-i", &id, "-C", "2",
    ]));
    eventually("the QUIC subscriber in the API", || {
        support::get(&broker, &format!("/api/v1/clients/{id}")).status == 200
    });
    let client = support::get(&broker, &format!("/api/v1/clients/{id}")).json();
    assert_eq!(client["transport"], "quic", "{client}");
    let quic = &client["quic"];
    assert!(quic["rtt_ms"].as_f64().unwrap() > 0.0, "{client}");
    assert!(quic["cwnd_bytes"].as_u64().unwrap() > 0, "{client}");
    // A client on this host gets quic.max_udp_payload (8,952) from the start: no MTU search,
    // no padded probes to parse on either side.
    assert_eq!(quic["mtu"], 8952, "{client}");
    assert_eq!(quic["mtu_probes_sent"], 0, "{client}");
    assert!(
        quic["udp_rx"]["datagrams"].as_u64().unwrap() > 0,
        "{client}"
    );
    assert_eq!(quic["migrations"], 0);
    assert_eq!(
        quic["remote_address"],
        format!("127.0.0.1:{}", client["port"]),
        "{client}"
    );

    let during = scrape(&broker, None);
    assert_eq!(during["mqttd_connections{transport=quic}"], 1.0);
    assert_eq!(during["mqttd_quic_connections_live"], 1.0);
    assert_eq!(during["mqttd_quic_rtt_seconds_count"], 1.0);
    assert_eq!(during["mqttd_quic_cwnd_bytes_count"], 1.0);
    assert!(during["mqttd_quic_path_mtu_min_bytes"] >= 1200.0);
    assert_eq!(
        moved(
            &before,
            &during,
            "mqttd_quic_handshakes_total{result=accepted}"
        ),
        1.0
    );

    for n in 0..2 {
        let out = run_with_timeout(
            &mut quic_client(&["pub", "-t", "q/x", "-m", &format!("m{n}"), "-q", "1"]),
            WAIT,
        );
        assert!(out.success(), "{}", out.describe());
    }
    let out = sub.wait(WAIT);
    assert!(out.success(), "{}", out.describe());
    let after = scrape_until(
        &broker,
        &before,
        &[
            ("mqttd_quic_handshakes_total{result=accepted}", 3.0),
            ("mqttd_messages_received_total", 2.0),
            ("mqttd_connections{transport=quic}", 0.0),
            ("mqttd_quic_connections_live", 0.0),
        ],
    );
    // Ended connections still count: the UDP and packet counters never go down.
    for key in [
        "mqttd_quic_udp_datagrams_total{direction=rx}",
        "mqttd_quic_udp_bytes_total{direction=tx}",
        "mqttd_quic_packets_sent_total",
    ] {
        assert!(moved(&during, &after, key) > 0.0, "{key}");
    }
}

/// An independent QUIC stack (aioquic, `tests/interop/quic_metrics.py`) acts: streams of each
/// kind, QoS 1 publishes, datagrams, a migration. While it waits, its QUIC block in the API
/// and the QUIC figures in `/metrics` must show exactly that; after it leaves, the gauges go
/// back and the counters keep what it did.
#[test]
fn an_aioquic_client_moves_the_quic_figures_by_what_it_did() {
    let broker = TestBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let id = unique("aioquic");
    let before = scrape(&broker, None);
    let mut command = Command::new(common::python());
    command
        .arg("-u")
        .arg(common::interop_dir().join("quic_metrics.py"))
        .args(["--host", "127.0.0.1"])
        .args(["--port", &broker.quic_addr.unwrap().port().to_string()])
        .arg("--cafile")
        .arg(broker.cert_path.as_ref().unwrap())
        .args(["--tcp-port", &broker.port()])
        .env("MQTTD_CLIENT_ID", &id)
        .env("MQTTD_CONTINUE_FILE", &go)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let mut script = RunningProgram::spawn(&mut command);
    let ready = script.wait_for_line(|l| l.starts_with("ready "), Duration::from_secs(20));
    if let Err(e) = ready {
        panic!("{e}\n{}", script.wait(WAIT).describe());
    }
    // The broker notices a new address within half a second (its migration poll).
    let mut client = serde_json::Value::Null;
    eventually("the migration in the client's QUIC block", || {
        client = support::get(&broker, &format!("/api/v1/clients/{id}")).json();
        client["quic"]["migrations"] == 1
    });
    let quic = &client["quic"];
    assert_eq!(
        quic["streams_open"],
        serde_json::json!({"control": 1, "bidi": 2, "uni": 1, "server_uni": 0}),
        "{client}"
    );
    assert_eq!(quic["datagram_frames"]["received"], 4, "{client}");
    assert_eq!(quic["path_challenges_received"], 0, "{client}");

    let during = scrape(&broker, None);
    for (key, want) in [
        ("mqttd_quic_handshakes_total{result=accepted}", 1.0),
        ("mqttd_quic_migrations_total", 1.0),
        (
            "mqttd_quic_datagrams_total{direction=received,reason=}",
            4.0,
        ),
        (
            "mqttd_quic_datagrams_total{direction=dropped,reason=malformed}",
            0.0,
        ),
        // 3 QoS 1 on the control stream, 1 on the uni stream, 4 in datagrams.
        ("mqttd_messages_received_total", 8.0),
        ("mqttd_packets_received_total{type=subscribe}", 2.0),
        ("mqttd_packets_received_total{type=puback}", 0.0),
        ("mqttd_packets_sent_total{type=puback}", 3.0),
        // The datagram messages come back on the subscribing data stream.
        ("mqttd_messages_sent_total", 4.0),
        ("mqttd_messages_dropped_total{reason=no_subscribers}", 4.0),
    ] {
        assert_eq!(moved(&before, &during, key), want, "{key}");
    }
    for (kind, open) in [
        ("control", 1.0),
        ("bidi", 2.0),
        ("uni", 1.0),
        ("server_uni", 0.0),
    ] {
        let key = format!("mqttd_quic_streams_open{{kind={kind}}}");
        assert_eq!(during[&key], open, "{key}");
    }
    assert_eq!(during["mqttd_quic_connections_live"], 1.0);

    std::fs::write(&go, b"").unwrap();
    let out = script.wait(Duration::from_secs(20));
    assert!(out.success(), "{}", out.describe());
    let after = scrape_until(
        &broker,
        &during,
        &[
            ("mqttd_quic_connections_live", -1.0),
            ("mqttd_quic_streams_open{kind=control}", -1.0),
            ("mqttd_quic_streams_open{kind=bidi}", -2.0),
            ("mqttd_quic_streams_open{kind=uni}", -1.0),
            ("mqttd_quic_migrations_total", 0.0),
            (
                "mqttd_quic_datagrams_total{direction=received,reason=}",
                0.0,
            ),
            ("mqttd_disconnects_total{by=client,reason=0x00}", 1.0),
        ],
    );
    // The ended connection's UDP figures stay in the counters.
    assert!(
        moved(
            &before,
            &after,
            "mqttd_quic_udp_datagrams_total{direction=rx}"
        ) >= 10.0
    );
}
