//! The addresses an `mqttd` process bound, from its `--listening-file`: tests start brokers on
//! port 0 and read the ports the kernel chose, instead of a port that was free a moment ago
//! (which another process may take before the broker binds it).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// The listeners of one `mqttd` process.
#[derive(Debug, Default, Clone, Copy)]
pub struct Listening {
    pub tcp: Option<SocketAddr>,
    pub quic: Option<SocketAddr>,
    pub mqtts: Option<SocketAddr>,
    pub ws: Option<SocketAddr>,
    pub wss: Option<SocketAddr>,
}

impl Listening {
    /// Parses `KIND ADDR` lines.
    pub fn parse(text: &str) -> Result<Listening, String> {
        let mut listening = Listening::default();
        for line in text.lines() {
            let (kind, addr) = line
                .split_once(' ')
                .ok_or_else(|| format!("listening file line {line:?}: expected KIND ADDR"))?;
            let addr: SocketAddr = addr
                .parse()
                .map_err(|e| format!("listening file line {line:?}: {e}"))?;
            match kind {
                "tcp" => listening.tcp = Some(addr),
                "quic" => listening.quic = Some(addr),
                "mqtts" => listening.mqtts = Some(addr),
                "ws" => listening.ws = Some(addr),
                "wss" => listening.wss = Some(addr),
                other => return Err(format!("listening file: unknown listener {other:?}")),
            }
        }
        Ok(listening)
    }

    /// Waits until `child` has written `file` (it appears whole), or exits, or `timeout` passes.
    pub fn wait_for(
        child: &mut Child,
        file: &Path,
        timeout: Duration,
    ) -> Result<Listening, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(text) = std::fs::read_to_string(file) {
                return Listening::parse(&text);
            }
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("mqttd exited with {status} before listening"));
            }
            if Instant::now() >= deadline {
                return Err(format!("mqttd did not listen within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
