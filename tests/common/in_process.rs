//! What the tests of the bundled client share: a broker started in-process
//! (`mqttd::server::start`) with TCP and QUIC on free loopback ports and its certificate
//! generated in a temporary data directory, and a timeout that names what it waited for.
//! Included with `#[path = "common/in_process.rs"] mod in_process;` (not every test file uses
//! every item).
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mqttd::server::{self, ServerHandle};
use mqttd::Config;

pub struct Broker {
    pub server: ServerHandle,
    pub tcp: SocketAddr,
    pub quic: SocketAddr,
    /// The generated certificate, for clients' `ca_file`.
    pub cert: PathBuf,
    pub dir: tempfile::TempDir,
}

/// Starts a broker on loopback (TCP and QUIC, logs at `warn`) with `configure` applied last.
pub async fn start(configure: impl FnOnce(&mut Config)) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.listeners.tcp = Some("127.0.0.1:0".parse().unwrap());
    config.listeners.quic = Some("127.0.0.1:0".parse().unwrap());
    config.storage.data_dir = Some(dir.path().to_path_buf());
    config.log.level = "warn".into();
    configure(&mut config);
    let server = server::start(config).await.expect("broker starts");
    Broker {
        tcp: server.tcp_addr().expect("a TCP listener"),
        quic: server.quic_addr().expect("a QUIC listener"),
        cert: server
            .cert_path()
            .expect("a generated certificate")
            .to_path_buf(),
        server,
        dir,
    }
}

/// Awaits `future` for at most `limit`; panics naming `what` when it takes longer.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
