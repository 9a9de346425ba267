//! `mqttd ctl` against a running broker: table and JSON output, kick, publish, and the API's
//! error message with a failing exit status.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{run_with_timeout, unique, RunningProgram, TestBroker};

const WAIT: Duration = Duration::from_secs(10);

fn ctl(broker: &TestBroker, args: &[&str]) -> common::ProgramOutput {
    let url = format!("http://{}", broker.admin_addr.unwrap());
    run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .args(["ctl", "--url", &url])
            .args(args),
        WAIT,
    )
}

#[test]
fn ctl_lists_publishes_and_kicks() {
    let broker = TestBroker::start();
    let id = unique("ctl-sub");
    let mut sub = RunningProgram::spawn(Command::new("stdbuf").args([
        "-oL",
        "mosquitto_sub",
        "-h",
        &broker.host(),
        "-p",
        &broker.port(),
        "-V",
        "mqttv5",
        "-i",
        &id,
        "-t",
        "ctl/#",
        "-v",
        "-d",
        "-W",
        "30",
    ]));
    sub.wait_for_line(|l| l.contains("received SUBACK"), WAIT)
        .expect("subscribed");

    let out = ctl(&broker, &["clients"]);
    assert!(out.success(), "{}", out.describe());
    let mut lines = out.stdout.lines();
    assert!(
        lines.next().unwrap().starts_with("CLIENT ID"),
        "{}",
        out.stdout
    );
    let row = lines.next().expect("one client row");
    assert!(
        row.starts_with(&id) && row.contains("tcp") && row.contains("127.0.0.1"),
        "{row}"
    );

    let out = ctl(&broker, &["--json", "clients", "--connected"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(json["data"][0]["clientid"], id.as_str());

    let out = ctl(&broker, &["publish", "ctl/x", "from ctl", "-q", "1"]);
    assert!(out.stdout.contains("reached 1"), "{}", out.describe());
    sub.wait_for_line(|l| l == "ctl/x from ctl", WAIT)
        .expect("the published message");

    let out = ctl(&broker, &["subscriptions", &id]);
    assert!(
        out.stdout.lines().nth(1).unwrap_or("").contains("ctl/#"),
        "{}",
        out.stdout
    );

    let out = ctl(&broker, &["kick", "no-such-client"]);
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(1),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("HTTP 404") && out.stderr.contains("no-such-client"),
        "{}",
        out.describe()
    );

    let out = ctl(&broker, &["kick", &id]);
    assert!(out.success(), "{}", out.describe());
    let out = sub.wait(WAIT);
    assert!(out.stdout.contains("DISCONNECT"), "{}", out.describe());
    let out = ctl(&broker, &["--json", "stats"]);
    let stats: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(stats["sessions.count"], 0);
}
