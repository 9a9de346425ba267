//! `storage:` the data directory and how the store persists the broker's state.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the broker keeps its files, and how it persists its state (see `crate::store`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// The data directory (generated certificate, the store `mqttd.redb`). Default:
    /// `$XDG_DATA_HOME/mqttd`, else `$HOME/.local/share/mqttd`, else `./mqttd-data`.
    pub data_dir: Option<PathBuf>,
    /// Keep retained messages and persistent sessions in the data directory so they survive a
    /// restart or a crash. `false` runs purely in memory. Default true.
    pub persistence: bool,
    /// When acknowledgements wait for the disk. Default batched.
    pub durability: Durability,
    /// Milliseconds between commits in `batched` and `off` modes. 1..=10000, default 5.
    pub batch_ms: u64,
}

impl Default for Storage {
    fn default() -> Storage {
        Storage {
            data_dir: None,
            persistence: true,
            durability: Durability::Batched,
            batch_ms: 5,
        }
    }
}

/// How the store commits, and whether acknowledgements wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Every batch of events the broker handles is committed with fsync before any of its
    /// outputs (PUBACK, PUBREC, CONNACK, deliveries) leave.
    Fsync,
    /// Changes are grouped for `batch_ms` and committed with one fsync; outputs wait for the
    /// commit that covers them.
    #[default]
    Batched,
    /// Outputs leave at once; changes are committed (with fsync) every `batch_ms`. A crash
    /// loses up to `batch_ms` of acknowledged changes.
    Off,
}

impl Durability {
    pub const NAMES: &'static [&'static str] = &["fsync", "batched", "off"];

    pub fn name(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Batched => "batched",
            Durability::Off => "off",
        }
    }

    /// Parses a `--durability` value.
    pub fn parse(text: &str) -> Option<Durability> {
        match text {
            "fsync" => Some(Durability::Fsync),
            "batched" => Some(Durability::Batched),
            "off" => Some(Durability::Off),
            _ => None,
        }
    }
}

impl Storage {
    /// The data directory in force.
    pub fn resolved_data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("mqttd");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join(".local/share/mqttd");
        }
        PathBuf::from("mqttd-data")
    }
}
