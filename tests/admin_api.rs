//! The REST API under `/api/v1` against the binary, with mosquitto clients: every endpoint,
//! and bad input (unknown client, bad JSON, bad base64, bad values, missing or wrong token)
//! answered with a 4xx and a JSON message, changing nothing.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
#[path = "admin/support.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use common::{run_with_timeout, unique, RunningProgram, TestBroker};
use serde_json::Value;
use support::{get, mosquitto, request, send};

const WAIT: Duration = Duration::from_secs(10);

/// A 5.0 subscriber that prints `topic payload` lines (and `-d` debug lines).
fn subscriber(broker: &TestBroker, id: &str, filter: &str) -> RunningProgram {
    let mut sub = RunningProgram::spawn(mosquitto("mosquitto_sub", broker).args([
        "-V", "mqttv5", "-i", id, "-t", filter, "-v", "-d", "-c", "-x", "600", "-W", "30",
    ]));
    sub.wait_for_line(|l| l.contains("received SUBACK"), WAIT)
        .expect("subscribed");
    sub
}

fn assert_error(reply: &support::Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["code"], code, "{reply:?}");
    assert!(
        !body["message"].as_str().unwrap_or("").is_empty(),
        "{reply:?}"
    );
}

#[test]
fn clients_subscriptions_publish_retained_and_kick() {
    let broker = TestBroker::start();
    let id = unique("api-sub");
    let mut sub = subscriber(&broker, &id, "api/first");

    // Clients: list with filters and paging, one client.
    let list = get(&broker, "/api/v1/clients").json();
    assert_eq!(list["meta"]["count"], 1, "{list}");
    let c = &list["data"][0];
    assert_eq!(c["clientid"], id.as_str());
    assert_eq!(c["connected"], true);
    assert_eq!(c["transport"], "tcp");
    assert_eq!(c["ip_address"], "127.0.0.1");
    assert_eq!(c["proto_ver"], 5);
    assert_eq!(c["subscriptions_cnt"], 1);
    assert_eq!(
        get(&broker, "/api/v1/clients?transport=quic").json()["meta"]["count"],
        0
    );
    assert_eq!(
        get(
            &broker,
            &format!("/api/v1/clients?clientid={id}&conn_state=connected")
        )
        .json()["meta"]["count"],
        1
    );
    let page2 = get(&broker, "/api/v1/clients?page=2&limit=1").json();
    assert_eq!(page2["data"].as_array().unwrap().len(), 0);
    let one = get(&broker, &format!("/api/v1/clients/{id}"));
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["keepalive"], 60);

    // Subscribe on its behalf, publish through the API (plain and base64), it gets both.
    let r = send(
        &broker,
        "POST",
        &format!("/api/v1/clients/{id}/subscribe"),
        Some(r#"{"topic": "api/second/#", "qos": 1}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["qos"], 1);
    let subs = get(&broker, &format!("/api/v1/clients/{id}/subscriptions")).json();
    let filters: Vec<&str> = subs
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["topic"].as_str().unwrap())
        .collect();
    assert_eq!(filters, ["api/first", "api/second/#"]);
    assert_eq!(
        get(&broker, "/api/v1/subscriptions?qos=1").json()["meta"]["count"],
        1
    );
    let topics = get(&broker, "/api/v1/topics").json();
    assert_eq!(topics["meta"]["count"], 2, "{topics}");

    let r = send(
        &broker,
        "POST",
        "/api/v1/publish",
        Some(r#"{"topic": "api/second/x", "payload": "plain text", "qos": 1}"#),
    );
    assert_eq!(r.json()["reached"], 1, "{r:?}");
    sub.wait_for_line(|l| l == "api/second/x plain text", WAIT)
        .expect("the plain publish");
    let r = send(
        &broker,
        "POST",
        "/api/v1/publish",
        Some(
            r#"{"topic": "api/first", "payload": "aGVsbG8gYmFzZTY0", "payload_encoding": "base64", "retain": true}"#,
        ),
    );
    assert_eq!(r.json()["reached"], 1, "{r:?}");
    sub.wait_for_line(|l| l == "api/first hello base64", WAIT)
        .expect("the base64 publish");

    // Retained: listed, read (payload in base64), deleted.
    let retained = get(&broker, "/api/v1/mqtt/retainer/messages?topic=api/%23").json();
    assert_eq!(retained["meta"]["count"], 1, "{retained}");
    let one = get(&broker, "/api/v1/mqtt/retainer/message/api%2Ffirst").json();
    assert_eq!(one["payload"], "aGVsbG8gYmFzZTY0");
    assert_eq!(one["topic"], "api/first");
    let r = send(
        &broker,
        "DELETE",
        "/api/v1/mqtt/retainer/message/api%2Ffirst",
        None,
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_error(
        &get(&broker, "/api/v1/mqtt/retainer/message/api%2Ffirst"),
        404,
        "NOT_FOUND",
    );

    // Unsubscribe on its behalf: the next publish does not reach it.
    let r = send(
        &broker,
        "POST",
        &format!("/api/v1/clients/{id}/unsubscribe"),
        Some(r#"{"topic": "api/second/#"}"#),
    );
    assert_eq!(r.status, 204, "{r:?}");
    let r = send(
        &broker,
        "POST",
        "/api/v1/publish",
        Some(r#"{"topic": "api/second/y", "payload": "nobody"}"#),
    );
    assert_eq!(r.json()["reached"], 0);

    // Stats and listeners.
    let stats = get(&broker, "/api/v1/stats").json();
    assert_eq!(stats["connections.count"], 1, "{stats}");
    assert_eq!(stats["subscriptions.count"], 1);
    let listeners = get(&broker, "/api/v1/listeners").json();
    let tcp = listeners
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["type"] == "tcp")
        .expect("a tcp listener");
    assert_eq!(tcp["bind"], broker.addr.to_string());
    assert_eq!(tcp["current_connections"], 1);

    // Kick: the 5.0 client reads DISCONNECT 0x98 and the session is gone.
    let r = send(&broker, "DELETE", &format!("/api/v1/clients/{id}"), None);
    assert_eq!(r.status, 204, "{r:?}");
    let out = sub.wait(WAIT);
    assert!(
        out.stdout.contains("DISCONNECT") || out.stderr.contains("dministrative"),
        "{}",
        out.describe()
    );
    assert_error(
        &get(&broker, &format!("/api/v1/clients/{id}")),
        404,
        "CLIENTID_NOT_FOUND",
    );
    assert_eq!(get(&broker, "/api/v1/clients").json()["meta"]["count"], 0);
}

#[test]
fn bad_input_is_a_4xx_with_a_json_message_and_changes_nothing() {
    let broker = TestBroker::start();
    let id = unique("api-bad");
    let _sub = subscriber(&broker, &id, "bad/first");
    let stats_before = get(&broker, "/api/v1/stats").json();
    let subs_before = get(&broker, "/api/v1/subscriptions").json();

    let cases: Vec<(&str, String, Option<&str>, u16, &str)> = vec![
        (
            "GET",
            "/api/v1/clients/nobody".into(),
            None,
            404,
            "CLIENTID_NOT_FOUND",
        ),
        (
            "DELETE",
            "/api/v1/clients/nobody".into(),
            None,
            404,
            "CLIENTID_NOT_FOUND",
        ),
        (
            "GET",
            "/api/v1/clients/nobody/subscriptions".into(),
            None,
            404,
            "CLIENTID_NOT_FOUND",
        ),
        (
            "POST",
            "/api/v1/clients/nobody/subscribe".into(),
            Some(r#"{"topic":"a"}"#),
            404,
            "CLIENTID_NOT_FOUND",
        ),
        (
            "POST",
            format!("/api/v1/clients/{id}/subscribe"),
            Some(r#"{"topic": "a/#/b"}"#),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            format!("/api/v1/clients/{id}/subscribe"),
            Some(r#"{"topic": "a", "qos": 3}"#),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            format!("/api/v1/clients/{id}/subscribe"),
            Some(r#"{"topic": "a""#),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            format!("/api/v1/clients/{id}/subscribe"),
            Some(r#"{"filter": "a"}"#),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            format!("/api/v1/clients/{id}/unsubscribe"),
            Some(r#"{"topic": "not/subscribed"}"#),
            404,
            "SUBSCRIPTION_NOT_FOUND",
        ),
        (
            "POST",
            "/api/v1/publish".into(),
            Some("not json"),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/api/v1/publish".into(),
            Some(r#"{"topic": "bad/first", "payload": "***", "payload_encoding": "base64"}"#),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/api/v1/publish".into(),
            Some(r#"{"topic": "bad/first", "payload": "x", "payload_encoding": "hex"}"#),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/api/v1/publish".into(),
            Some(r#"{"topic": "bad/+", "payload": "x"}"#),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/api/v1/publish".into(),
            Some(r#"{"topic": "$SYS/broker/uptime", "payload": "x"}"#),
            400,
            "BAD_REQUEST",
        ),
        (
            "GET",
            "/api/v1/clients?page=0".into(),
            None,
            400,
            "BAD_REQUEST",
        ),
        (
            "GET",
            "/api/v1/clients?conn_state=maybe".into(),
            None,
            400,
            "BAD_REQUEST",
        ),
        (
            "GET",
            "/api/v1/mqtt/retainer/messages?topic=a/%23/b".into(),
            None,
            400,
            "BAD_REQUEST",
        ),
        (
            "GET",
            "/api/v1/no/such/thing".into(),
            None,
            404,
            "NOT_FOUND",
        ),
    ];
    for (method, path, body, status, code) in &cases {
        let reply = send(&broker, method, path, *body);
        assert_eq!(reply.status, *status, "{method} {path} {body:?}: {reply:?}");
        assert_eq!(
            reply.json()["code"],
            *code,
            "{method} {path} {body:?}: {reply:?}"
        );
    }
    // Nothing changed: no message went out, no subscription moved.
    assert_eq!(
        get(&broker, "/api/v1/stats").json()["messages.received"],
        stats_before["messages.received"]
    );
    assert_eq!(
        get(&broker, "/api/v1/stats").json()["messages.sent"],
        stats_before["messages.sent"]
    );
    assert_eq!(get(&broker, "/api/v1/subscriptions").json(), subs_before);
    assert_eq!(
        get(&broker, &format!("/api/v1/clients/{id}")).json()["connected"],
        true
    );
}

#[test]
fn openapi_describes_every_route_and_the_dashboard_is_served() {
    let broker = TestBroker::start();
    let spec = get(&broker, "/api/v1/openapi.json").json();
    assert_eq!(spec["openapi"], "3.0.3");
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/api/v1/clients",
        "/api/v1/clients/{clientid}",
        "/api/v1/clients/{clientid}/subscribe",
        "/api/v1/publish",
        "/api/v1/mqtt/retainer/message/{topic}",
        "/api/v1/stats",
        "/api/v1/listeners",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(paths["/api/v1/clients/{clientid}"]["delete"].is_object());
    let page = get(&broker, "/");
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"].starts_with("text/html"));
    assert!(page.body.contains("<canvas id=\"plot\""));
    assert_eq!(get(&broker, "/healthz").body, "ok\n");
    assert_eq!(get(&broker, "/readyz").body, "ready\n");
}

#[test]
fn a_token_guards_everything_but_the_health_checks() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let config = dir.path().join("mqttd.yaml");
    std::fs::write(
        &config,
        format!("admin:\n  token_file: {}\n", token_file.display()),
    )
    .unwrap();
    let broker = TestBroker::start_with_args(&["-c", config.to_str().unwrap()]);
    let addr = broker.admin_addr.unwrap();
    for path in ["/metrics", "/api/v1/clients", "/api/v1/stats"] {
        let missing = request(addr, "GET", path, None, None);
        assert_error(&missing, 401, "UNAUTHORIZED");
        assert_eq!(missing.headers["www-authenticate"], "Bearer");
        assert_error(
            &request(addr, "GET", path, Some("wrong"), None),
            401,
            "UNAUTHORIZED",
        );
        assert_eq!(
            request(addr, "GET", path, Some("s3cret-token"), None).status,
            200
        );
    }
    // A refused publish changed nothing.
    let r = request(
        addr,
        "POST",
        "/api/v1/publish",
        None,
        Some(r#"{"topic":"t","payload":"x"}"#),
    );
    assert_error(&r, 401, "UNAUTHORIZED");
    let stats: Value = request(addr, "GET", "/api/v1/stats", Some("s3cret-token"), None).json();
    assert_eq!(stats["messages.received"], 0);
    assert_eq!(request(addr, "GET", "/healthz", None, None).status, 200);
    let scraped = support::scrape(&broker, Some("s3cret-token"));
    assert_eq!(scraped["mqttd_build_info{version=0.1.0}"], 1.0);
}

#[test]
fn off_loopback_without_a_token_the_broker_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_mqttd")).args([
            "--tcp",
            "127.0.0.1:0",
            "--quic",
            "off",
            "--in-memory",
            "--admin",
            "0.0.0.0:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ]),
        WAIT,
    );
    assert!(!out.success(), "{}", out.describe());
    assert!(
        out.stderr
            .contains("admin.listen 0.0.0.0:0 is not a loopback address")
            && out.stderr.contains("admin.token"),
        "{}",
        out.describe()
    );
    // In a file, check-config says so too.
    let config = dir.path().join("mqttd.yaml");
    std::fs::write(&config, "admin:\n  listen: 0.0.0.0:9884\n").unwrap();
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .arg("check-config")
            .arg(&config),
        WAIT,
    );
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(2),
        "{}",
        out.describe()
    );
    assert!(out.stderr.contains("admin.listen"), "{}", out.describe());
}
