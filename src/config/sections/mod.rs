//! One file per top-level section of the YAML file: the section's struct, its documented
//! defaults, and any field reader that needs a better message than serde's own.

mod admin;
mod auth;
pub mod bridges;
mod cluster;
mod limits;
mod listeners;
mod log;
mod quic;
mod runtime;
mod session;
mod storage;
mod tls;
mod websocket;

pub use admin::{Admin, DEFAULT_ADMIN_LISTEN};
pub use auth::Auth;
pub use bridges::{BridgeConfig, BridgeTopic, Direction};
pub use cluster::{is_name as is_cluster_name, Cluster};
pub use limits::Limits;
pub use listeners::Listeners;
pub use log::Logging;
pub use quic::{parse_hex, Quic, ZeroRtt, MAX_SERVER_ID_LEN};
pub use runtime::Runtime;
pub(super) use runtime::MAX_WORKER_THREADS;
pub use session::SessionDefaults;
pub use storage::{Durability, Storage};
pub use tls::Tls;
pub use websocket::{ProxyTrust, WebSocket};
