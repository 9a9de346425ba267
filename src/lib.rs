//! mqttd: a QUIC-native MQTT 3.1.1 / 5.0 broker, embeddable as a library.
//!
//! Layers, from the wire up:
//! - [`codec`]: sans-IO packet encoding and decoding.
//! - [`topic`]: topic rules, the subscription trie and the retained store.
//! - [`broker`]: the sans-IO broker state machine (sessions, routing, QoS, wills, timers).
//! - `handoff`: the events connections send the broker task, and the outboxes it fills.
//! - `framing`: MQTT packets over a byte stream (read and decode in batches, write batches),
//!   shared by the server's connections and the client.
//! - [`server`] and [`transport`]: the tokio glue that feeds sockets into the state machine.
//! - [`admin`]: the admin HTTP listener (Prometheus metrics, REST API, dashboard).
//! - [`ctl`](mod@ctl): `mqttd ctl`, the admin REST API from the command line.
//! - [`app`]: the embedding API (in-process topic handlers).
//! - [`auth`]: password file, ACL and certificate identities (authentication, authorization).
//! - [`client`]: the bundled MQTT client (sans-IO session state and its tokio glue).
//! - [`bridge`]: bridges to other MQTT brokers, made of two bundled clients.
//! - [`bench`](mod@bench): `mqttd bench`, a load generator and benchmark for any MQTT broker.
#![forbid(unsafe_code)]
// Unit tests may unwrap and index: a panic there is a failed test ([lints] in Cargo.toml).
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod bench;
pub mod bridge;
pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod ctl;
pub mod fdlimit;
pub(crate) mod framing;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod handoff;
pub mod ipnet;
pub mod rate;
pub mod server;
pub mod store;
pub mod topic;
pub mod transport;
pub mod udp_buffers;

pub use app::{App, AppHandle, AppMessage};
pub use config::Config;

#[cfg(test)]
mod tests_layers;
