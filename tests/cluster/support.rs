//! Support for the cluster tests: a `nats-server` with JetStream in a temporary directory on a
//! port it picks (read from its log), and mqttd nodes joined to it (each an `mqttd` process on
//! port 0, read from its `--listening-file`).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../persistence/support.rs"]
mod persistence;
// Not every test file uses all of them.
#[allow(unused_imports)]
pub use persistence::{
    clean, payload, persistent, publish, subscribe as subscribe_packet, BrokerProcess, Raw, Read,
};

/// The nats-server executable: on PATH, or Debian's /usr/sbin/nats-server.
fn nats_server() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("nats-server");
        if p.is_file() {
            return p;
        }
    }
    let debian = PathBuf::from("/usr/sbin/nats-server");
    assert!(
        debian.is_file(),
        "nats-server not found: run tests/run-all.sh (it installs Debian's nats-server)"
    );
    debian
}

/// One nats-server process with JetStream, stopped when dropped.
pub struct Nats {
    pub url: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// A single server with JetStream, storing in a fresh temporary directory.
    pub fn start() -> Nats {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("nats.log");
        let store = dir.path().join("js");
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut child = Command::new(nats_server())
            .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn nats-server");
        let port = wait_for_port(&mut child, &log);
        Nats {
            url: format!("nats://127.0.0.1:{port}"),
            child,
            log,
            _dir: dir,
        }
    }

    pub fn log_tail(&self) -> String {
        persistence::tail(&self.log, 30)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client port nats-server logged ("Listening for client connections on HOST:PORT"),
/// once it is ready.
fn wait_for_port(child: &mut Child, log: &Path) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let port = text
            .lines()
            .find_map(|l| l.split("Listening for client connections on ").nth(1))
            .and_then(|addr| addr.trim().rsplit(':').next()?.parse().ok());
        if let (Some(port), true) = (port, text.contains("Server is ready")) {
            return port;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("nats-server exited with {status}:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "nats-server not ready within 10 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One mqttd node of a cluster, with its data directory.
pub struct Node {
    pub name: String,
    pub process: BrokerProcess,
    pub data: PathBuf,
    pub log: PathBuf,
}

impl Node {
    pub fn addr(&self) -> SocketAddr {
        self.process.addr
    }
    pub fn port(&self) -> String {
        self.process.addr.port().to_string()
    }
}

/// Nodes of one cluster in one temporary directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub urls: String,
}

impl Cluster {
    pub fn new(urls: &str) -> Cluster {
        Cluster {
            dir: tempfile::tempdir().unwrap(),
            urls: urls.to_string(),
        }
    }

    /// Starts node `name` (TCP only, no admin listener) joined to the cluster's NATS.
    pub fn node(&self, name: &str, extra: &[&str]) -> Node {
        let data = self.dir.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        let log = self.dir.path().join(format!("{name}.log"));
        let mut args = vec![
            "--admin",
            "off",
            "--cluster",
            self.urls.as_str(),
            "--cluster-node",
            name,
        ];
        args.extend_from_slice(extra);
        let process = BrokerProcess::start(&data, &log, &args);
        Node {
            name: name.to_string(),
            process,
            data,
            log,
        }
    }
}

/// Reads until the broker closes the connection; the DISCONNECT it sent before, if any.
pub async fn disconnect_reason(raw: &mut Raw, wait: Duration) -> Option<mqttd::codec::ReasonCode> {
    let mut reason = None;
    loop {
        match raw.read(wait).await {
            Read::Packet(mqttd::codec::Packet::Disconnect(d)) => reason = Some(d.code),
            Read::Packet(_) => {}
            Read::Closed => return reason,
            Read::Timeout => panic!("the connection was not closed within {wait:?}"),
        }
    }
}
