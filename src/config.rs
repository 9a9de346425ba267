//! Broker configuration: the YAML file, its defaults and its validation.
//!
//! Every field has a default, so an empty file (or none) gives a working broker. Unknown keys
//! and out-of-range values are errors that name the file, the key and the problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listeners: Listeners,
    pub limits: Limits,
    pub session: SessionDefaults,
    pub log: Logging,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    /// MQTT over TCP; `null` disables it. Default `0.0.0.0:1883`.
    pub tcp: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest packet the broker accepts, in bytes (CONNACK Maximum Packet Size). Default 1 MiB.
    pub max_packet_size: u32,
    /// QoS 1/2 PUBLISH packets a client may have unacknowledged toward the broker (CONNACK
    /// Receive Maximum). Default 1024.
    pub receive_maximum: u16,
    /// Largest keep alive the broker allows, seconds; larger requests are lowered with Server
    /// Keep Alive (5.0). 0 means no limit. Default 0.
    pub max_keep_alive: u16,
    /// Topic aliases a client may use toward the broker (CONNACK Topic Alias Maximum). Default 64.
    pub topic_alias_maximum: u16,
    /// Messages queued per session (beyond those inflight) before the overflow policy applies:
    /// QoS 0 messages are dropped first, then the oldest QoS 1/2. Default 10_000.
    pub max_queued_messages: usize,
    /// QoS 1/2 messages inflight toward one client when the client sets no Receive Maximum
    /// (always so for 3.1.1). Default 64.
    pub max_inflight: u16,
    /// Seconds a new connection has to send CONNECT. Default 10.
    pub connect_timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionDefaults {
    /// Upper bound on the Session Expiry Interval a 5.0 client may request, seconds.
    /// Default 86_400 * 7. MQTT 3.1.1 sessions with clean session = 0 use this value too.
    pub max_session_expiry_secs: u32,
    /// Maximum QoS granted (0, 1, 2). Default 2.
    pub max_qos: u8,
    /// Whether retained messages are supported. Default true.
    pub retain_available: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    /// A `tracing` filter (`RUST_LOG` syntax), used when `RUST_LOG` is not set. Default "info".
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: Listeners::default(),
            limits: Limits::default(),
            session: SessionDefaults::default(),
            log: Logging::default(),
        }
    }
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners { tcp: Some(SocketAddr::from(([0, 0, 0, 0], 1883))) }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            max_keep_alive: 0,
            topic_alias_maximum: 64,
            max_queued_messages: 10_000,
            max_inflight: 64,
            connect_timeout_secs: 10,
        }
    }
}

impl Default for SessionDefaults {
    fn default() -> Self {
        SessionDefaults { max_session_expiry_secs: 86_400 * 7, max_qos: 2, retain_available: true }
    }
}

impl Default for Logging {
    fn default() -> Self {
        Logging { level: "info".into() }
    }
}

/// A configuration error, naming the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
}

impl Config {
    /// Reads and validates a YAML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        todo!("config helper")
    }

    /// Parses and validates YAML text; `file` is only used in error messages.
    pub fn from_yaml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        todo!("config helper")
    }

    /// Checks ranges that serde cannot (e.g. receive_maximum > 0, max_qos <= 2).
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        todo!("config helper")
    }
}
