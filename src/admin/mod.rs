//! The admin HTTP listener: Prometheus `/metrics`, `/healthz`, `/readyz`, the REST API under
//! `/api/v1` (shaped like EMQX's) and the dashboard at `/`.
//!
//! It is glue on top of the server: every figure comes from the broker task (a query sent as
//! an event with a oneshot reply, `crate::server::ServerProbe`) or from transport counters
//! read at scrape time, so serving it adds nothing to the publish path. Loopback by default;
//! off loopback every request except the health checks needs the bearer token
//! (`admin.token` / `admin.token_file`), and the broker refuses to start without one.

mod api;
mod auth;
mod dashboard;
mod error;
mod exposition;
mod openapi;
mod prometheus;
mod quic;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, DEFAULT_ADMIN_LISTEN};
use crate::server::ServerProbe;

pub use error::ApiError;

/// Failure to start the admin listener.
#[derive(Debug, thiserror::Error)]
pub enum AdminSetupError {
    #[error("cannot listen for the admin API on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "admin.listen {addr} is not a loopback address: set admin.token or admin.token_file \
         (off loopback the admin API requires a bearer token), or use --admin 127.0.0.1:PORT"
    )]
    TokenRequired { addr: SocketAddr },
    #[error("admin.token_file {}: {source}", file.display())]
    TokenFile {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("admin.token_file {}: the file holds no token", file.display())]
    EmptyToken { file: PathBuf },
}

/// What the handlers share.
#[derive(Clone)]
struct AdminState {
    probe: ServerProbe,
    token: Option<Arc<str>>,
}

/// A running admin listener.
pub struct AdminHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AdminHandle {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits (briefly) for the listener task.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.task).await;
    }
}

/// The token in force: `admin.token`, else the first line of `admin.token_file`.
fn load_token(config: &Config) -> Result<Option<String>, AdminSetupError> {
    if let Some(token) = &config.admin.token {
        return Ok(Some(token.clone()));
    }
    let Some(file) = &config.admin.token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file).map_err(|source| AdminSetupError::TokenFile {
        file: file.clone(),
        source,
    })?;
    match text.lines().next().map(str::trim) {
        Some(token) if !token.is_empty() => Ok(Some(token.to_string())),
        _ => Err(AdminSetupError::EmptyToken { file: file.clone() }),
    }
}

/// Binds `admin.listen` and serves the admin API for the broker behind `probe`. `Ok(None)`
/// when it is off, or when the *default* address is taken (another broker on this machine):
/// that is logged and the broker runs without it; an address chosen in the configuration or
/// with `--admin` must bind.
pub async fn start(
    config: &Config,
    probe: ServerProbe,
) -> Result<Option<AdminHandle>, AdminSetupError> {
    let Some(addr) = config.admin.listen else {
        return Ok(None);
    };
    let token = load_token(config)?;
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(AdminSetupError::TokenRequired { addr });
    }
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(source) if addr == DEFAULT_ADMIN_LISTEN => {
            tracing::warn!(%addr, error = %source, "admin API not started: its default address is taken (set admin.listen or --admin)");
            return Ok(None);
        }
        Err(source) => return Err(AdminSetupError::Bind { addr, source }),
    };
    let local = listener
        .local_addr()
        .map_err(|source| AdminSetupError::Bind { addr, source })?;
    tracing::info!(addr = %local, token = token.is_some(), "admin API listening (/metrics, /api/v1, dashboard at /)");
    let state = AdminState {
        probe,
        token: token.map(Arc::from),
    };
    let (stop, mut stop_rx) = watch::channel(false);
    let app = router(state);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx.changed().await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin API stopped");
        }
    });
    Ok(Some(AdminHandle {
        addr: local,
        stop,
        task,
    }))
}

fn router(state: AdminState) -> Router {
    let protected = Router::new()
        .route("/metrics", get(prometheus::metrics))
        .nest("/api/v1", api::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/", get(dashboard::page))
        .merge(protected)
        .fallback(error::not_found)
        .with_state(state)
}

/// The process is up and serving HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: the listeners are bound (they are, once the admin listener runs), the broker task
/// answers, and the store, when asked for, is open.
async fn readyz(
    axum::extract::State(state): axum::extract::State<AdminState>,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.probe.run(|_, _| ()),
    )
    .await;
    if !matches!(answered, Ok(Ok(()))) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the broker task does not answer\n".into(),
        );
    }
    if state.probe.store_failed() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the store could not be opened (running in memory)\n".into(),
        );
    }
    (StatusCode::OK, "ready\n".into())
}
