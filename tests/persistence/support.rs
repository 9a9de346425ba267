//! Support for the persistence tests: an `mqttd` process on a data directory that outlives it
//! (restarted gracefully or killed with SIGKILL), and a raw MQTT 5.0 client over TCP built on
//! the crate's codec, so each test controls exactly which acknowledgements it sends.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqttd::codec::{
    self, ConnAck, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "../common/listening.rs"]
mod listening;
use listening::Listening;

pub const V5: ProtocolVersion = ProtocolVersion::V5;

/// One `mqttd` process. Each start gets a fresh TCP port; the data directory stays.
pub struct BrokerProcess {
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl BrokerProcess {
    /// Starts `mqttd` on `data_dir` (QUIC off, TCP on a port the kernel picks) with `extra`
    /// arguments and waits until it listens. `log` receives its output (appended).
    pub fn start(data_dir: &Path, log: &Path, extra: &[&str]) -> BrokerProcess {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("broker log");
        let err = out.try_clone().expect("broker log");
        // Beside the data directory, fresh for each start.
        let listening_file = data_dir.with_extension("listening");
        let _ = std::fs::remove_file(&listening_file);
        let mut child = Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .args(["--tcp", "127.0.0.1:0", "--quic", "off", "--data-dir"])
            .arg(data_dir)
            .arg("--listening-file")
            .arg(&listening_file)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn mqttd");
        match Listening::wait_for(&mut child, &listening_file, Duration::from_secs(10)) {
            Ok(Listening {
                tcp: Some(addr), ..
            }) => BrokerProcess {
                addr,
                child,
                log: log.to_path_buf(),
            },
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mqttd did not start ({other:?}); log:\n{}", tail(log, 40));
            }
        }
    }

    /// SIGTERM and wait: the graceful stop.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "mqttd exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("mqttd did not stop within 10 s of SIGTERM");
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL mqttd");
        let _ = self.child.wait();
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A raw MQTT 5.0 client connection.
pub struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

/// What a bounded read found.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Read {
    Packet(Packet),
    Closed,
    Timeout,
}

impl Raw {
    /// Connects and sends `connect`; the CONNACK, or why there was none.
    pub async fn connect(addr: SocketAddr, connect: Connect) -> Result<(Raw, ConnAck), String> {
        let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
            .await
            .map_err(|_| "TCP connect timed out".to_string())?
            .map_err(|e| format!("TCP connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
        };
        raw.send(&Packet::Connect(Box::new(connect))).await?;
        match raw.read(Duration::from_secs(3)).await {
            Read::Packet(Packet::ConnAck(ack)) if ack.code == ReasonCode::SUCCESS => Ok((raw, ack)),
            other => Err(format!("no CONNACK: {other:?}")),
        }
    }

    pub async fn send(&mut self, packet: &Packet) -> Result<(), String> {
        let mut out = BytesMut::new();
        codec::encode(packet, V5, &mut out);
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    pub async fn read(&mut self, wait: Duration) -> Read {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if !self.buf.is_empty() {
                match codec::decode(&mut self.buf, Some(V5), u32::MAX) {
                    Ok(Some(packet)) => return Read::Packet(packet),
                    Ok(None) => {}
                    Err(e) => panic!("the broker sent an undecodable packet: {e}"),
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Read::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => return Read::Closed,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next packet, or a panic naming `what` after 3 s.
    pub async fn next(&mut self, what: &str) -> Packet {
        match self.read(Duration::from_secs(3)).await {
            Read::Packet(p) => p,
            other => panic!("waiting for {what}: {other:?}"),
        }
    }
}

/// CONNECT for a persistent session: Clean Start 0 and `expiry` seconds.
pub fn persistent(client_id: &str, expiry: u32) -> Connect {
    Connect {
        protocol: V5,
        clean_start: false,
        keep_alive: 0,
        properties: mqttd::codec::PropertyValues {
            session_expiry_interval: Some(expiry),
            ..Default::default()
        }
        .into(),
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    }
}

/// CONNECT for a clean session that ends with its connection.
pub fn clean(client_id: &str) -> Connect {
    Connect {
        clean_start: true,
        properties: Properties::default(),
        ..persistent(client_id, 0)
    }
}

pub fn publish(topic: &str, payload: &str, qos: QoS, retain: bool, id: Option<u16>) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: topic.into(),
        packet_id: id,
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    })
}

pub fn subscribe(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(codec::Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![(
            filter.into(),
            codec::SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )],
    })
}

pub fn payload(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}
