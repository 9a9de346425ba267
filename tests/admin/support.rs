//! What the admin tests share: a minimal HTTP/1.1 client (one request per connection, no
//! dependency), the scrape of `/metrics` through Python's `prometheus_client` parser, and
//! mosquitto client helpers. Included with `#[path = "admin/support.rs"] mod support;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{run_python, TestBroker};

/// An HTTP answer: status, body, and the headers in lower case.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): status {} body {:?}",
                self.status, self.body
            )
        })
    }
}

/// Sends one request and reads the whole answer (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    if let Some(body) = body {
        stream.write_all(body.as_bytes()).unwrap();
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

pub fn get(broker: &TestBroker, path: &str) -> Reply {
    request(
        broker.admin_addr.expect("an admin listener"),
        "GET",
        path,
        None,
        None,
    )
}

pub fn send(broker: &TestBroker, method: &str, path: &str, body: Option<&str>) -> Reply {
    request(
        broker.admin_addr.expect("an admin listener"),
        method,
        path,
        None,
        body,
    )
}

/// `/metrics` parsed by `prometheus_client` (tests/interop/prom_scrape.py): sample key
/// (`name{k=v,...}`, labels sorted) to value.
pub fn scrape(broker: &TestBroker, token: Option<&str>) -> HashMap<String, f64> {
    let url = format!("http://{}/metrics", broker.admin_addr.unwrap());
    let mut args = vec![url.as_str()];
    if let Some(token) = token {
        args.push(token);
    }
    let out = run_python("prom_scrape.py", &args, Duration::from_secs(20));
    assert!(out.success(), "scrape failed:\n{}", out.describe());
    let parsed: Value = serde_json::from_str(&out.stdout).expect("the scraper's JSON");
    parsed["samples"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(f64::NAN)))
        .collect()
}

/// How much `key` moved between two scrapes (a missing sample counts as 0).
pub fn moved(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

/// A mosquitto client program (`mosquitto_pub`, `mosquitto_sub`) aimed at `broker`, its
/// output line-buffered.
pub fn mosquitto(program: &str, broker: &TestBroker) -> Command {
    let mut command = Command::new("stdbuf");
    command
        .args(["-oL", program])
        .args(["-h", &broker.host(), "-p", &broker.port()]);
    command
}
