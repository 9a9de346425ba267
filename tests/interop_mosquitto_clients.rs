//! Interoperability with Debian's command-line clients `mosquitto_pub` and
//! `mosquitto_sub` (package `mosquitto-clients`), over MQTT 3.1.1
//! (`-V mqttv311`) and 5.0 (`-V mqttv5`).
//!
//! Every test starts its own broker and uses its own client ids and topics.
//! Subscribers run under `stdbuf -oL` with `-d` so the test can wait for "received SUBACK"
//! before publishing, and print messages with `-F` as
//! `MSG|qos|retain|topic|payload` (plus v5 properties where a test needs
//! them), which keeps message lines apart from debug lines.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{run_with_timeout, unique, RunningProgram, TestBroker};

/// Longest wait for a subscriber to be subscribed or a message to arrive.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
enum Version {
    V311,
    V5,
}

impl Version {
    fn flag(self) -> &'static str {
        match self {
            Version::V311 => "mqttv311",
            Version::V5 => "mqttv5",
        }
    }
}

/// The `-F` format of every subscriber: message lines start with `MSG|`.
const FORMAT: &str = "MSG|%q|%r|%t|%p";

fn base_command(program: &str, broker: &TestBroker, version: Version) -> Command {
    // stdbuf: line-buffered stdout, so "received SUBACK" shows up as it happens.
    let mut command = Command::new("stdbuf");
    command
        .args(["-oL", program])
        .args(["-h", &broker.host(), "-p", &broker.port()])
        .args(["-V", version.flag()]);
    command
}

/// Starts `mosquitto_sub` with `extra` arguments and waits until its
/// subscription is acknowledged.
fn start_subscriber(broker: &TestBroker, version: Version, extra: &[&str]) -> RunningProgram {
    let mut command = base_command("mosquitto_sub", broker, version);
    command.arg("-d").args(["-W", "15"]).args(extra);
    let mut subscriber = RunningProgram::spawn(&mut command);
    if let Err(e) = subscriber.wait_for_line(|line| line.contains("received SUBACK"), WAIT) {
        panic!(
            "subscriber not subscribed: {e}\n{}",
            subscriber.wait(WAIT).describe()
        );
    }
    subscriber
}

/// Runs `mosquitto_pub` with `args` and asserts it succeeds.
fn publish(broker: &TestBroker, version: Version, args: &[&str]) {
    let mut command = base_command("mosquitto_pub", broker, version);
    command.args(args);
    let output = run_with_timeout(&mut command, WAIT);
    assert!(
        output.success(),
        "mosquitto_pub failed:\n{}",
        output.describe()
    );
}

/// Waits for the subscriber to exit by itself (it was started with `-C n`)
/// and returns its message lines without the `MSG|` prefix.
fn messages(subscriber: RunningProgram) -> Vec<String> {
    let output = subscriber.wait(WAIT + Duration::from_secs(5));
    assert!(
        output.success(),
        "mosquitto_sub did not receive its messages:\n{}",
        output.describe()
    );
    output
        .stdout
        .lines()
        .filter_map(|line| line.strip_prefix("MSG|"))
        .map(str::to_string)
        .collect()
}

fn qos_delivery(version: Version) {
    let broker = TestBroker::start();
    for qos in ["0", "1", "2"] {
        let topic = unique(&format!("clients/qos{qos}"));
        let payload = format!("qos {qos} payload");
        let subscriber = start_subscriber(
            &broker,
            version,
            &["-t", &topic, "-q", qos, "-C", "1", "-F", FORMAT],
        );
        publish(&broker, version, &["-t", &topic, "-q", qos, "-m", &payload]);
        assert_eq!(
            messages(subscriber),
            vec![format!("{qos}|0|{topic}|{payload}")],
            "QoS {qos} delivery over {version:?}"
        );
    }
}

#[test]
fn qos_0_1_2_delivery_v311() {
    qos_delivery(Version::V311);
}

#[test]
fn qos_0_1_2_delivery_v5() {
    qos_delivery(Version::V5);
}

fn retained_message(version: Version) {
    let broker = TestBroker::start();
    let topic = unique("clients/retained");

    publish(
        &broker,
        version,
        &["-t", &topic, "-q", "1", "-r", "-m", "kept"],
    );
    let late = start_subscriber(&broker, version, &["-t", &topic, "-C", "1", "-F", FORMAT]);
    assert_eq!(
        messages(late),
        vec![format!("0|1|{topic}|kept")],
        "a later subscriber gets the retained message with the retain flag set"
    );

    // An empty retained publish clears it: a new subscriber then gets only a
    // live marker message published after its SUBACK.
    publish(&broker, version, &["-t", &topic, "-q", "1", "-r", "-n"]);
    let after_clear = start_subscriber(&broker, version, &["-t", &topic, "-C", "1", "-F", FORMAT]);
    publish(&broker, version, &["-t", &topic, "-m", "live marker"]);
    assert_eq!(
        messages(after_clear),
        vec![format!("0|0|{topic}|live marker")],
        "the retained message must be gone after an empty retained publish"
    );
}

#[test]
fn retained_message_and_clear_v311() {
    retained_message(Version::V311);
}

#[test]
fn retained_message_and_clear_v5() {
    retained_message(Version::V5);
}

fn will_on_kill(version: Version) {
    let broker = TestBroker::start();
    let will_topic = unique("clients/will");
    let listener = start_subscriber(
        &broker,
        version,
        &["-t", &will_topic, "-C", "1", "-F", FORMAT],
    );

    let doomed_topic = unique("clients/doomed");
    let doomed = start_subscriber(
        &broker,
        version,
        &[
            "-t",
            &doomed_topic,
            "--will-topic",
            &will_topic,
            "--will-payload",
            "client vanished",
            "--will-qos",
            "1",
        ],
    );
    doomed.signal("KILL");
    drop(doomed);

    assert_eq!(
        messages(listener),
        vec![format!("0|0|{will_topic}|client vanished")],
        "the will is published when its client's connection drops without DISCONNECT"
    );
}

#[test]
fn will_published_when_client_killed_v311() {
    will_on_kill(Version::V311);
}

#[test]
fn will_published_when_client_killed_v5() {
    will_on_kill(Version::V5);
}

fn persistent_session(version: Version) {
    let broker = TestBroker::start();
    let client_id = unique("clients-persistent");
    let topic = unique("clients/persistent");
    // v5: a finite session expiry well beyond the test's duration.
    let mut session: Vec<&str> = vec!["-c", "-i", &client_id, "-q", "1", "-t", &topic];
    if let Version::V5 = version {
        session.extend(["-x", "300"]);
    }

    // Subscribe, then disconnect once the subscription is acknowledged.
    let mut first = session.clone();
    first.push("-E");
    let mut command = base_command("mosquitto_sub", &broker, version);
    command.args(&first);
    let output = run_with_timeout(&mut command, WAIT);
    assert!(
        output.success(),
        "initial subscribe failed:\n{}",
        output.describe()
    );

    publish(
        &broker,
        version,
        &["-t", &topic, "-q", "1", "-m", "while you were away"],
    );

    let mut resume = session.clone();
    resume.extend(["-C", "1", "-F", FORMAT]);
    let mut command = base_command("mosquitto_sub", &broker, version);
    command.args(["-W", "10"]).args(&resume);
    let output = run_with_timeout(&mut command, WAIT + Duration::from_secs(5));
    assert!(
        output.success(),
        "the queued message was not delivered on resume:\n{}",
        output.describe()
    );
    let received: Vec<&str> = output
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("MSG|"))
        .collect();
    assert_eq!(received, vec![format!("1|0|{topic}|while you were away")]);
}

#[test]
fn persistent_session_queues_qos1_v311() {
    persistent_session(Version::V311);
}

#[test]
fn persistent_session_queues_qos1_v5() {
    persistent_session(Version::V5);
}

#[test]
fn v5_properties_forwarded() {
    let broker = TestBroker::start();
    let topic = unique("clients/properties");
    let subscriber = start_subscriber(
        &broker,
        Version::V5,
        &["-t", &topic, "-C", "1", "-F", "MSG|%P|%C|%R|%p"],
    );
    publish(
        &broker,
        Version::V5,
        &[
            "-t",
            &topic,
            "-q",
            "1",
            "-m",
            "with properties",
            "-D",
            "publish",
            "user-property",
            "colour",
            "blue",
            "-D",
            "publish",
            "user-property",
            "colour",
            "green",
            "-D",
            "publish",
            "user-property",
            "shape",
            "round",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "response-topic",
            "clients/reply",
        ],
    );
    // User properties are forwarded unchanged and in order [MQTT-3.3.2-17],
    // [MQTT-3.3.2-18], duplicates included.
    assert_eq!(
        messages(subscriber),
        vec![
            "colour:blue colour:green shape:round|text/plain|clients/reply|with properties"
                .to_string()
        ]
    );
}
