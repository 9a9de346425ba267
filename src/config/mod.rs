//! Broker configuration: the YAML file, its defaults and its validation.
//!
//! It exists so that every knob of the broker has one typed home with a documented default, and
//! so that a bad file is refused at startup with a message a user can act on, instead of showing
//! up later as odd protocol behaviour. [`example_yaml`] (`example.yaml`, printed by
//! `mqttd --print-config`) is the user-facing reference.
//!
//! Every field has a default, so an empty file (or none) gives a working broker. The structs'
//! derived `Deserialize` is the schema: `deny_unknown_fields` refuses unknown keys, and
//! `load.rs` turns serde's error into one that names the file, the key path (via
//! `serde_path_to_error`), the problem and, for a misspelt key, the key meant. Ranges and
//! relations between keys are checked after deserialization, in `validate.rs`.
//!
//! # Adding a section (say `admin:`)
//! 1. `sections/admin.rs`: `pub struct Admin` deriving `Debug, Clone, PartialEq, Serialize,
//!    Deserialize` with `#[serde(deny_unknown_fields, default)]`, a doc comment per field
//!    stating its default, and `impl Default`. Re-export it from `sections/mod.rs`.
//! 2. A field `pub admin: Admin` in [`Config`] below, with
//!    `#[serde(deserialize_with = "section")]` (so `admin:` left empty means the defaults).
//! 3. Every key with its default and a comment in `example.yaml`.
//! 4. Range checks, each naming its key, in `validate.rs`.
//!
//! The tests check 2 and 3 for every section (an empty section loads, an unknown key is
//! refused, the example lists every key and parses to the defaults).

mod explain;
mod load;
mod sections;
mod validate;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Deserializer, Serialize};

pub use load::ConfigError;
pub use sections::*;

/// The whole configuration: one field per top-level section of the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    #[serde(deserialize_with = "section")]
    pub listeners: Listeners,
    #[serde(deserialize_with = "section")]
    pub limits: Limits,
    #[serde(deserialize_with = "section")]
    pub session: SessionDefaults,
    #[serde(deserialize_with = "section")]
    pub log: Logging,
    #[serde(deserialize_with = "section")]
    pub runtime: Runtime,
    #[serde(deserialize_with = "section")]
    pub tls: Tls,
    #[serde(deserialize_with = "section")]
    pub storage: Storage,
    #[serde(deserialize_with = "section")]
    pub quic: Quic,
    #[serde(deserialize_with = "section")]
    pub auth: Auth,
    #[serde(deserialize_with = "section")]
    pub websocket: WebSocket,
    /// Bridges to other MQTT brokers: a list, empty by default (`crate::bridge`, README
    /// "Bridges"; checked by `crate::bridge::config::check`).
    #[serde(deserialize_with = "section")]
    pub bridges: Vec<BridgeConfig>,
    #[serde(deserialize_with = "section")]
    pub admin: Admin,
    /// Several nodes as one broker over NATS JetStream (`crate::cluster`).
    #[serde(deserialize_with = "section")]
    pub cluster: Cluster,
}

/// Reads a section, taking an empty one (`limits:`, `limits: ~`) as all its defaults.
fn section<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Returns a fully commented configuration listing every key with its default value.
///
/// `mqttd --print-config` prints it, and the README copies it. It parses to exactly
/// [`Config::default`] (a unit test checks this).
pub fn example_yaml() -> &'static str {
    include_str!("example.yaml")
}
