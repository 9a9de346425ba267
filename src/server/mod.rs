//! Running a broker: binds the listeners, starts the broker task, and hands back a handle to
//! stop it. This is the tokio layer around the sans-IO [`crate::broker::Broker`].

mod core;
mod probe;

pub use probe::ServerProbe;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, EnhancedAuth, Settings};
use crate::config::Config;
use crate::handoff::{Event, EVENT_QUEUE};

/// The longest shutdown waits for connections to write their last packets: a client that
/// stopped reading would otherwise hold it up.
const FLUSH_AT_SHUTDOWN: Duration = Duration::from_secs(1);

/// Failure to start the broker.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen for MQTT over TLS (MQTTS) on {addr}: {source}")]
    BindMqtts {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("MQTTS TLS configuration: {0}")]
    MqttsTls(String),
    #[error("cannot listen for MQTT over WebSocket on {addr}: {source}")]
    BindWs {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for MQTT over TCP on {addr}: {source}")]
    BindTcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Certificate(#[from] crate::transport::cert::CertError),
    #[error(transparent)]
    Quic(#[from] crate::transport::quic::QuicSetupError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error(transparent)]
    Qlog(#[from] crate::transport::qlog::QlogDirError),
    #[error("the broker has stopped")]
    Stopped,
    #[error(transparent)]
    Store(crate::store::StoreError),
}

/// Opens the store in the data directory, loads it into the broker and starts its writer.
/// Only a store held by another broker is an error; a store that cannot be used otherwise
/// leaves the broker running in memory, loudly.
fn open_store(
    storage: &crate::config::Storage,
    broker: &mut Broker,
) -> Result<Option<crate::store::writer::Writer>, ServerError> {
    use crate::store::{Store, StoreError};
    let dir = storage.resolved_data_dir();
    let opened = match Store::open(&dir) {
        Ok(opened) => opened,
        Err(e @ StoreError::InUse { .. }) => return Err(ServerError::Store(e)),
        Err(e) => {
            tracing::error!(error = %e, "CANNOT USE THE STORE: running in memory, nothing will survive a restart");
            return Ok(None);
        }
    };
    let report = broker.restore(
        opened.loaded,
        std::time::Instant::now(),
        std::time::SystemTime::now(),
    );
    for problem in &report.skipped {
        tracing::error!(record = %problem, "store record skipped");
    }
    tracing::info!(
        store = %opened.store.path().display(),
        durability = storage.durability.name(),
        sessions = report.sessions,
        messages = report.deliveries,
        retained = report.retained,
        skipped = report.skipped.len(),
        "store loaded"
    );
    Ok(Some(crate::store::writer::Writer::start(
        opened.store,
        storage.durability,
        storage.batch_ms,
    )))
}

/// Options that are code, not configuration.
#[derive(Default)]
pub struct ServerOptions {
    pub enhanced_auth: Option<Box<dyn EnhancedAuth>>,
    /// Bind the listeners but serve no connection until [`ServerHandle::open_listeners`]:
    /// what must be in place before the first client (a bridge's subscription in this
    /// broker) is set up first over in-process connections. Default false.
    pub hold_listeners: bool,
    /// Makes the broker a node of a cluster: what it publishes goes to this channel, read by
    /// the cluster actor (`crate::cluster`), which answers with `Event::Cluster`.
    pub cluster: Option<mpsc::Sender<crate::broker::ClusterOutput>>,
    /// This node's name in the cluster (with `cluster`).
    pub cluster_node: String,
    /// The QUIC stateless-reset key shared by the nodes of a cluster (`crate::cluster`).
    pub quic_reset_key: Option<Vec<u8>>,
}

/// A running broker.
pub struct ServerHandle {
    tcp_addr: Option<SocketAddr>,
    quic_addr: Option<SocketAddr>,
    mqtts_addr: Option<SocketAddr>,
    ws_addr: Option<SocketAddr>,
    wss_addr: Option<SocketAddr>,
    quic_endpoint: Option<quinn::Endpoint>,
    quic_stats: Arc<crate::transport::early::QuicStats>,
    quic_admission: Arc<crate::transport::admission::Admission>,
    quic_connections: Arc<crate::transport::quic_registry::QuicConnections>,
    /// The certificate the QUIC listener presents (PEM file), for clients to trust.
    cert_path: Option<std::path::PathBuf>,
    commit_stats: Option<Arc<crate::store::writer::CommitStats>>,
    store_failed: bool,
    started: std::time::Instant,
    pub(crate) events: mpsc::Sender<Event>,
    /// What an in-process connection needs ([`ServerHandle::connect_in_process`]).
    ids: Arc<AtomicU64>,
    gate: Arc<crate::transport::login::LoginGate>,
    max_packet_size: u32,
    stop: watch::Sender<bool>,
    /// Whether the listeners serve connections ([`ServerOptions::hold_listeners`]).
    open: watch::Sender<bool>,
    core: JoinHandle<()>,
    listeners: Vec<JoinHandle<()>>,
    /// Connections that have not yet written their last packets (see `shutdown`).
    flushing: TaskTracker,
}

/// Binds every configured listener and starts serving.
pub async fn start(config: Config) -> Result<ServerHandle, ServerError> {
    start_with(config, ServerOptions::default()).await
}

pub async fn start_with(
    config: Config,
    options: ServerOptions,
) -> Result<ServerHandle, ServerError> {
    let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
    start_with_channel(config, options, events, events_rx).await
}

/// Starts with an event channel made beforehand (the embedding API hands out publishers
/// before the broker runs).
pub(crate) async fn start_with_channel(
    config: Config,
    options: ServerOptions,
    events: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
) -> Result<ServerHandle, ServerError> {
    // Authentication and ACL (src/auth): files are read first, so a bad one
    // stops the start before anything is opened or bound.
    let authenticator = crate::auth::Authenticator::from_config(&config)?;
    let acl = crate::auth::load_acl(&config)?.map(Arc::new);
    log_access(&config, &authenticator);
    let gate = crate::transport::login::LoginGate::new(authenticator);

    // Then the store: recovery happens before any listener accepts, and a store in use by
    // another broker stops the start before anything is bound.
    let storage = config.storage.clone();
    let mut broker = Broker::new(Settings::from(&config));
    if let Some(auth) = options.enhanced_auth {
        broker.set_enhanced_auth(auth);
    }
    let node = options.cluster_node;
    let reset_key = options.quic_reset_key;
    let cluster = options.cluster.map(|tx| {
        broker.enable_cluster(&node);
        core::ClusterLink::new(tx)
    });
    let started = std::time::Instant::now();
    let writer = if storage.persistence {
        open_store(&storage, &mut broker)?
    } else {
        tracing::info!("persistence off: retained messages and sessions live in memory only");
        None
    };

    let (stop, stop_rx) = watch::channel(false);
    let (open, open_rx) = watch::channel(!options.hold_listeners);
    let ids = Arc::new(AtomicU64::new(1));
    let max_packet_size = config.limits.max_packet_size;

    let mut listeners = Vec::new();
    // QUIC first: once TCP accepts, every listener is up (the certificate may take a moment
    // to generate on first start).
    let mut quic_addr = None;
    let mut quic_endpoint = None;
    let mut cert_path = None;
    let mut quic_settings = crate::transport::quic::QuicSettings::from_config(&config);
    let quic_stats = quic_settings.stats.clone();
    let quic_admission = quic_settings.admission.clone();
    // Every connection, on any listener, until it has written its last packets.
    let flushing = quic_settings.flushing.clone();
    let quic_connections = quic_settings.connections.clone();
    // One certificate for every TLS listener (QUIC and MQTTS).
    let tls_listeners = [
        config.listeners.quic,
        config.listeners.mqtts,
        config.listeners.wss,
    ];
    let identity = if tls_listeners.iter().any(Option::is_some) {
        let identity = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => crate::transport::cert::load_pem(cert, key)?,
            _ => crate::transport::cert::load_or_generate(&config.storage.resolved_data_dir())?,
        };
        // Loading refuses an empty chain (cert::load_pem); the leaf is the first certificate.
        let fingerprint = identity
            .chain
            .first()
            .map(crate::transport::cert::fingerprint)
            .unwrap_or_default();
        let path = identity.cert_path.display().to_string();
        if identity.generated {
            tracing::info!(cert = %path, sha256 = %fingerprint, "generated a self-signed certificate for localhost, 127.0.0.1 and ::1");
        } else {
            tracing::info!(cert = %path, sha256 = %fingerprint, "TLS certificate");
        }
        cert_path = Some(identity.cert_path.clone());
        Some(identity)
    } else {
        None
    };
    let mut mqtts_addr = None;
    if let (Some(addr), Some(identity)) = (config.listeners.mqtts, &identity) {
        use crate::transport::quic_tls::{server_config, Listener};
        let tls = server_config(&config, identity, Listener::Mqtts, &[])
            .map_err(ServerError::MqttsTls)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::BindMqtts { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServerError::BindMqtts { addr, source })?;
        tracing::info!(addr = %local, "listening for MQTT over TLS (MQTTS)");
        mqtts_addr = Some(local);
        listeners.push(tokio::spawn(when_open(
            open_rx.clone(),
            crate::transport::tls_tcp::accept_loop(
                listener,
                crate::transport::tls_tcp::acceptor(tls),
                events.clone(),
                ids.clone(),
                max_packet_size,
                Duration::from_secs(config.quic.handshake_timeout_secs),
                gate.clone(),
                stop_rx.clone(),
                flushing.clone(),
            ),
        )));
    }
    // WebTransport's development certificate: presented on ALPN h3, its hash served by the
    // WebSocket listeners.
    let dev_cert = match (&config.quic, &identity) {
        (q, Some(_)) if q.webtransport && q.webtransport_dev_cert => {
            let dev = crate::transport::wt_cert::DevCert::generate()
                .map_err(|e| crate::transport::quic::QuicSetupError::Tls(e.to_string()))?;
            tracing::info!(sha256 = %dev.hash(), path = crate::transport::wt_cert::HASH_PATH, "WebTransport development certificate (ECDSA P-256, 13 days, rotated every 6)");
            listeners.push(tokio::spawn(crate::transport::wt_cert::rotate_forever(
                dev.clone(),
            )));
            Some(dev)
        }
        _ => None,
    };
    let (ws_addr, wss_addr, ws_listeners) = start_websocket(
        &config,
        identity.as_ref(),
        dev_cert.clone(),
        &events,
        &ids,
        &gate,
        &stop_rx,
        &open_rx,
        &flushing,
    )
    .await?;
    listeners.extend(ws_listeners);
    if let (Some(addr), Some(identity)) = (config.listeners.quic, identity) {
        let server_config = crate::transport::quic::server_config(&config, identity, dev_cert)?;
        quic_settings.qlog =
            crate::transport::qlog::QlogSettings::from_config(&config, &server_config)?;
        quic_settings.loopback_config = Some(crate::transport::quic::loopback_server_config(
            &config,
            &server_config,
        ));
        let layout = crate::transport::cid::CidLayout::from_config(&config.quic);
        let endpoint = crate::transport::quic::bind(
            addr,
            &config.quic,
            server_config,
            crate::transport::cid::endpoint_config(
                layout,
                config
                    .quic
                    .max_udp_payload_accepted
                    .unwrap_or(config.quic.max_udp_payload),
                reset_key.as_deref(),
            ),
        )?;
        let local = endpoint
            .local_addr()
            .map_err(|source| crate::transport::quic::QuicSetupError::Bind { addr, source })?;
        tracing::info!(addr = %local, alpn = "mqtt", webtransport = config.quic.webtransport, "listening for MQTT over QUIC");
        quic_addr = Some(local);
        listeners.push(tokio::spawn(when_open(
            open_rx.clone(),
            crate::transport::quic::accept_loop(
                endpoint.clone(),
                events.clone(),
                ids.clone(),
                quic_settings,
                gate.clone(),
                stop_rx.clone(),
            ),
        )));
        quic_endpoint = Some(endpoint);
    }

    let mut tcp_addr = None;
    if let Some(addr) = config.listeners.tcp {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::BindTcp { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServerError::BindTcp { addr, source })?;
        tracing::info!(addr = %local, "listening for MQTT over TCP");
        tcp_addr = Some(local);
        listeners.push(tokio::spawn(when_open(
            open_rx.clone(),
            crate::transport::tcp::accept_loop(
                listener,
                events.clone(),
                ids.clone(),
                max_packet_size,
                gate.clone(),
                stop_rx.clone(),
                flushing.clone(),
            ),
        )));
    }
    #[cfg(unix)]
    listeners.push(tokio::spawn(reload_on_sighup(
        config.clone(),
        gate.clone(),
        events.clone(),
    )));

    // Restored sessions keep no user name: their rules are resolved when they reconnect
    // (broker/access.rs), so set_acl after the store is loaded.
    broker.require_login();
    broker.set_acl(acl);
    let commit_stats = writer.as_ref().map(|w| w.stats());
    let store_failed = storage.persistence && writer.is_none();
    let core = tokio::spawn(core::run(broker, events_rx, writer, cluster));
    Ok(ServerHandle {
        commit_stats,
        store_failed,
        started,
        tcp_addr,
        quic_addr,
        mqtts_addr,
        ws_addr,
        wss_addr,
        quic_endpoint,
        quic_stats,
        quic_admission,
        quic_connections,
        cert_path,
        events,
        ids,
        gate,
        max_packet_size,
        stop,
        open,
        core,
        listeners,
        flushing,
    })
}

/// Runs an accept loop once the listeners are open ([`ServerOptions::hold_listeners`]).
/// Until then connections wait where the kernel (TCP backlog) or quinn (incoming queue) put
/// them, unserved.
async fn when_open(mut open: watch::Receiver<bool>, accept_loop: impl Future<Output = ()>) {
    if open.wait_for(|open| *open).await.is_ok() {
        accept_loop.await;
    }
}

/// Binds `listeners.ws` and `listeners.wss` (when set) and starts their accept loops; returns
/// their bound addresses.
#[allow(clippy::too_many_arguments)]
async fn start_websocket(
    config: &Config,
    identity: Option<&crate::transport::cert::Identity>,
    dev_cert: Option<Arc<crate::transport::wt_cert::DevCert>>,
    events: &mpsc::Sender<Event>,
    ids: &Arc<AtomicU64>,
    gate: &Arc<crate::transport::login::LoginGate>,
    stop: &watch::Receiver<bool>,
    open: &watch::Receiver<bool>,
    flushing: &TaskTracker,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>, Vec<JoinHandle<()>>), ServerError> {
    use crate::transport::ws::{accept_loop, no_resources, Resources, WsListener};
    let mut listeners = Vec::new();
    let ws = &config.websocket;
    let resources: Resources = match dev_cert {
        Some(dev) => Arc::new(move |path: &str| {
            (path == crate::transport::wt_cert::HASH_PATH).then(|| {
                crate::transport::ws_http::Response {
                    status: 200,
                    content_type: "application/json",
                    headers: Vec::new(),
                    body: dev.hash_json(),
                }
            })
        }),
        None => no_resources(),
    };
    let mut bound = [None, None];
    for ((addr, scheme, proxy), slot) in [
        (config.listeners.ws, "ws", ws.ws_proxy),
        (config.listeners.wss, "wss", ws.wss_proxy),
    ]
    .into_iter()
    .zip(bound.iter_mut())
    {
        let Some(addr) = addr else { continue };
        let tls = match (scheme, identity) {
            ("wss", Some(identity)) => {
                use crate::transport::quic_tls::{server_config, Listener};
                let tls = server_config(config, identity, Listener::Mqtts, &[])
                    .map_err(ServerError::MqttsTls)?;
                Some(crate::transport::tls_tcp::acceptor(tls))
            }
            _ => None,
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::BindWs { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServerError::BindWs { addr, source })?;
        tracing::info!(addr = %local, path = %ws.path, tls = tls.is_some(), proxy = ?proxy, "listening for MQTT over WebSocket");
        *slot = Some(local);
        let settings = WsListener {
            scheme,
            tls,
            path: ws.path.as_str().into(),
            proxy,
            trusted_proxies: ws.trusted_proxies.clone().into(),
            handshake_timeout: Duration::from_secs(config.quic.handshake_timeout_secs),
            max_packet_size: config.limits.max_packet_size,
            resources: resources.clone(),
            flushing: flushing.clone(),
        };
        listeners.push(tokio::spawn(when_open(
            open.clone(),
            accept_loop(
                listener,
                settings,
                events.clone(),
                ids.clone(),
                gate.clone(),
                stop.clone(),
            ),
        )));
    }
    let [ws_addr, wss_addr] = bound;
    Ok((ws_addr, wss_addr, listeners))
}

/// Says at startup who may connect and whether an ACL applies.
fn log_access(config: &Config, auth: &crate::auth::Authenticator) {
    use crate::auth::Anonymous;
    let users = auth.users();
    match auth.anonymous() {
        Anonymous::LoopbackOnly => tracing::warn!(
            "anonymous access allowed from loopback addresses only (no auth.password_file): \
             set auth.password_file (see `mqttd passwd`), or auth.allow_anonymous: true to \
             let remote clients in without credentials"
        ),
        Anonymous::Allowed => tracing::warn!(
            password_users = users.unwrap_or(0),
            "anonymous access allowed from any address (auth.allow_anonymous: true)"
        ),
        Anonymous::Refused => tracing::info!(
            password_users = users.unwrap_or(0),
            certificate_identities = config.auth.use_identity_as_username,
            "anonymous access refused: clients must authenticate"
        ),
    }
    if let Some(file) = &config.auth.acl_file {
        tracing::info!(acl = %file.display(), "ACL in force");
    } else if users.is_some() || config.auth.use_identity_as_username {
        tracing::info!("no auth.acl_file: every authenticated client may use every topic");
    }
}

/// SIGHUP reads the password file and the ACL file again; a file that does not load is
/// logged and the previous one stays in force.
#[cfg(unix)]
async fn reload_on_sighup(
    config: Config,
    gate: Arc<crate::transport::login::LoginGate>,
    events: mpsc::Sender<Event>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let mut auth = (*gate.current()).clone();
        match auth.reload() {
            Ok(users) => {
                gate.replace(auth);
                if let Some(users) = users {
                    tracing::info!(users, "password file reloaded");
                }
            }
            Err(e) => tracing::error!(error = %e, "password file not reloaded"),
        }
        match crate::auth::load_acl(&config) {
            Ok(Some(acl)) => {
                tracing::info!("ACL file reloaded");
                let _ = events
                    .send(Event::SetAcl {
                        acl: Some(Arc::new(acl)),
                    })
                    .await;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "ACL file not reloaded"),
        }
    }
}

impl ServerHandle {
    /// The bound TCP address (useful with port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The bound QUIC (UDP) address.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.quic_addr
    }

    /// The bound MQTTS (TCP + TLS) address.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.mqtts_addr
    }

    /// The bound MQTT over WebSocket address (`listeners.ws`).
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// The bound MQTT over WebSocket + TLS address (`listeners.wss`).
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.wss_addr
    }

    /// Counters of the QUIC listener: 0-RTT, and connections refused before their handshake.
    pub fn quic_stats(&self) -> crate::transport::early::QuicStatsSnapshot {
        crate::transport::early::QuicStatsSnapshot {
            refused_before_handshake: self.quic_admission.refused(),
            ..self.quic_stats.snapshot()
        }
    }

    /// The broker's counters (connections, sessions, messages, migrations...).
    pub async fn metrics(&self) -> Result<crate::broker::Metrics, ServerError> {
        Ok(self.inspect().await?.0)
    }

    /// Every connection with its client id and current peer address (QUIC peers follow
    /// migrations).
    pub async fn clients(&self) -> Result<Vec<crate::broker::ClientInfo>, ServerError> {
        Ok(self.inspect().await?.1)
    }

    async fn inspect(
        &self,
    ) -> Result<(crate::broker::Metrics, Vec<crate::broker::ClientInfo>), ServerError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.events
            .send(Event::Inspect { reply })
            .await
            .map_err(|_| ServerError::Stopped)?;
        answer.await.map_err(|_| ServerError::Stopped)
    }

    /// A connection to this broker inside the process: the returned stream is the client's
    /// end of an in-memory pipe whose other end the broker serves like a TCP socket (same
    /// code, same protocol rules, same persistence), logged in with `login` without a password
    /// check. A bridge's local side is one (`crate::bridge`). `label` names the peer in logs.
    pub fn connect_in_process(
        &self,
        label: String,
        login: crate::auth::Login,
    ) -> tokio::io::DuplexStream {
        /// Bytes buffered in each direction of the pipe.
        const PIPE_BUFFER: usize = 256 * 1024;
        let (client, server) = tokio::io::duplex(PIPE_BUFFER);
        let conn =
            crate::broker::ConnId(self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let login = crate::transport::login::LoginContext {
            gate: self.gate.clone(),
            peer: SocketAddr::from(([127, 0, 0, 1], 0)),
            identity: None,
            preauthorized: Some(login),
        };
        let events = self.events.clone();
        let max_packet_size = self.max_packet_size;
        let flushing = self.flushing.token();
        tokio::spawn(async move {
            let (reader, writer) = tokio::io::split(server);
            crate::transport::stream::serve(
                conn,
                label,
                reader,
                writer,
                events,
                max_packet_size,
                login,
                flushing,
            )
            .await;
        });
        client
    }

    /// What the admin listener needs: queries on the broker task, transport counters.
    pub fn probe(&self) -> ServerProbe {
        let mut listeners = Vec::new();
        for (name, addr) in [
            ("tcp", self.tcp_addr),
            ("quic", self.quic_addr),
            ("mqtts", self.mqtts_addr),
        ] {
            if let Some(addr) = addr {
                listeners.push((name, addr));
            }
        }
        ServerProbe {
            events: self.events.clone(),
            quic_endpoint: self.quic_endpoint.clone(),
            quic_stats: self.quic_stats.clone(),
            quic_admission: self.quic_admission.clone(),
            quic_connections: self.quic_connections.clone(),
            commit_stats: self.commit_stats.clone(),
            store_failed: self.store_failed,
            listeners,
            started: self.started,
        }
    }

    /// Starts serving connections on the listeners held by [`ServerOptions::hold_listeners`]
    /// (nothing changes when they are open already).
    pub fn open_listeners(&self) {
        self.open.send_replace(true);
    }

    /// The PEM certificate the QUIC listener presents (generated or configured).
    pub fn cert_path(&self) -> Option<&std::path::Path> {
        self.cert_path.as_deref()
    }

    /// Stops accepting, disconnects every client (5.0: reason 0x8B) and waits for the broker
    /// task to finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for l in &self.listeners {
            l.abort();
        }
        let _ = self.events.send(Event::Shutdown).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.core).await;
        // Every connection has its DISCONNECT (or close) queued: wait until each has written
        // it and shut its write side down, bounded for clients that stopped reading.
        self.flushing.close();
        let _ = tokio::time::timeout(FLUSH_AT_SHUTDOWN, self.flushing.wait()).await;
        if let Some(endpoint) = self.quic_endpoint {
            endpoint.close(
                quinn::VarInt::from_u32(crate::transport::app_error::NORMAL),
                b"server shutting down",
            );
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        }
    }

    /// Resolves when the broker task ends (it only does on shutdown).
    pub async fn stopped(&mut self) {
        let _ = (&mut self.core).await;
    }
}
