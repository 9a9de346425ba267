//! nats-server processes that a test kills and restarts: one server on a fixed port and
//! store (so it comes back as the same server), and a cluster of three with JetStream on
//! each.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nats-server executable: on PATH, or Debian's /usr/sbin/nats-server.
fn nats_server() -> PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"))
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A port free now (bound to 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One nats-server with JetStream on a fixed port, its store and log in `dir`.
pub struct Server {
    pub name: String,
    pub port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A single server (no NATS cluster) in `dir`.
    pub fn single(dir: &Path, name: &str) -> Server {
        let port = free_port();
        let store = dir.join(format!("{name}-js"));
        let text = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\njetstream {{ store_dir: {:?} }}\n",
            store
        );
        Server::with_config(dir, name, port, &text)
    }

    fn with_config(dir: &Path, name: &str, port: u16, text: &str) -> Server {
        let config = dir.join(format!("{name}.conf"));
        std::fs::write(&config, text).unwrap();
        let mut s = Server {
            name: name.to_string(),
            port,
            config,
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        s.start();
        s
    }

    /// Starts (again) with the same configuration and store; waits until it listens.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(nats_server())
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server {} not listening within 10 s:\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Three nats-servers in one NATS cluster, JetStream on each.
pub struct Trio {
    pub servers: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Trio {
    pub fn start() -> Trio {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let servers = (0..3)
            .map(|i| {
                let (port, route) = ports[i];
                let routes: Vec<String> = ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, (_, r))| format!("nats://127.0.0.1:{r}"))
                    .collect();
                let name = format!("n{}", i + 1);
                let text = format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{port}\n\
                     jetstream {{ store_dir: {:?} }}\n\
                     cluster {{ name: c, listen: 127.0.0.1:{route}, routes: [{}] }}\n",
                    dir.path().join(format!("{name}-js")),
                    routes.join(", ")
                );
                Server::with_config(dir.path(), &name, port, &text)
            })
            .collect();
        let trio = Trio { servers, _dir: dir };
        trio.wait_for_meta_leader();
        trio
    }

    /// JetStream in a NATS cluster answers once a metadata leader is elected.
    fn wait_for_meta_leader(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let elected = self.servers.iter().any(|s| {
                std::fs::read_to_string(&s.log)
                    .unwrap_or_default()
                    .contains("new metadata leader")
            });
            if elected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no JetStream metadata leader within 20 s:\n{}",
                self.servers[0].log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
