//! Bridges: this broker joined to other MQTT brokers (mosquitto, EMQX, another mqttd), with
//! chosen topics forwarded each way (the `bridges:` list of the configuration, README
//! "Bridges").
//!
//! A bridge is two ordinary MQTT clients of the bundled client ([`crate::client`]) glued
//! together, so it follows the protocol's rules on both sides instead of inventing its own:
//!
//! - the *remote* client connects to the other broker (TCP, MQTTS or QUIC; failover over the
//!   listed addresses; reconnection with backoff and jitter; a session that survives
//!   reconnections);
//! - the *local* client connects to this broker in-process, over an in-memory pipe served by
//!   the broker's normal connection code ([`crate::server::ServerHandle::connect_in_process`]).
//!   Its session is persistent (clean start 0, no expiry), so what waits to go out is queued
//!   in the bridge's session, in the same store as every session, and survives a restart or
//!   a `kill -9` like any subscriber's messages.
//!
//! Both clients acknowledge by hand ([`crate::client::ClientOptions::manual_acks`]): a
//! message is acknowledged to the broker it came from only once the other broker acknowledged
//! it ([`forward`]). Both subscribe with No Local and Retain As Published (MQTT 5), so what the
//! bridge publishes on one side is not sent back to it (no loops) and retained flags cross
//! unchanged. `$SYS/broker/connection/<name>/state` (retained) says `1` while the remote
//! connection is up and `0` otherwise, as mosquitto's bridges do.

mod forward;
mod stats;
pub mod topics;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::task::JoinHandle;

pub use crate::config::BridgeConfig;
pub use stats::{BridgeStats, BridgeStatsSnapshot};

use crate::client::{
    Client, ClientCert, ClientError, ClientOptions, Fallback, QuicOptions, Reconnect, Subscription,
    Transport,
};
use crate::codec::{ProtocolVersion, QoS, SubscriptionOptions};
use crate::config::bridges::{BridgeTransport, BridgeVersion};
use crate::server::ServerHandle;
use topics::{Routes, Way};

/// The running bridges of a broker.
#[derive(Default)]
pub struct Bridges {
    running: Vec<Running>,
}

struct Running {
    name: String,
    stats: Arc<BridgeStats>,
    /// The remote client, once its first connection is made.
    remote: Arc<OnceLock<Client>>,
    task: JoinHandle<()>,
}

impl Bridges {
    /// Each bridge's name and counters.
    pub fn stats(&self) -> Vec<(String, BridgeStatsSnapshot)> {
        self.running
            .iter()
            .map(|r| {
                let mut stats = r.stats.snapshot();
                if let Some(remote) = r.remote.get() {
                    let quic = remote.quic_stats();
                    stats.zero_rtt_connects = quic.zero_rtt_accepted;
                    stats.fallback_connects = quic.fallback_connections;
                    stats.quic_returns = quic.quic_returns;
                }
                (r.name.clone(), stats)
            })
            .collect()
    }

    /// Moves bridge `name`'s QUIC connection to a new local UDP socket, as an address change
    /// of this host would ([`Client::migrate`]): the remote broker follows the new address and
    /// the connection, its session and what is in flight carry on. Returns the new local
    /// address.
    pub async fn migrate(&self, name: &str) -> Result<std::net::SocketAddr, ClientError> {
        let running = self
            .running
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| ClientError::Unsupported(format!("no bridge named {name:?}")))?;
        match running.remote.get() {
            Some(remote) => remote.migrate().await,
            None => Err(ClientError::NotConnected),
        }
    }

    /// Stops every bridge: the remote connections are closed with DISCONNECT, and the local
    /// sessions stay in the broker (with what they hold) for the next start.
    pub async fn stop(self) {
        for r in &self.running {
            r.task.abort();
        }
        for r in self.running {
            let _ = r.task.await;
        }
    }
}

/// Starts every configured bridge of a running broker. A bridge whose local side cannot be
/// set up is logged and skipped; the remote side is retried until it answers.
pub async fn start(server: &ServerHandle, configs: &[BridgeConfig]) -> Bridges {
    let mut running = Vec::new();
    for config in configs {
        let stats = Arc::new(BridgeStats::default());
        match connect_local(server, config).await {
            Ok(local) => {
                let remote = Arc::new(OnceLock::new());
                let task = tokio::spawn(run(config.clone(), local, stats.clone(), remote.clone()));
                running.push(Running {
                    name: config.name.clone(),
                    stats,
                    remote,
                    task,
                });
            }
            Err(e) => {
                tracing::error!(bridge = %config.name, error = %e, "bridge not started: its session in this broker failed")
            }
        }
    }
    Bridges { running }
}

/// The bridge's client in this broker, subscribed to what goes out.
async fn connect_local(
    server: &ServerHandle,
    config: &BridgeConfig,
) -> Result<Client, ClientError> {
    let stream = server.connect_in_process(
        format!("bridge:{}", config.name),
        crate::auth::Login::Accepted { username: None },
    );
    let mut options = ClientOptions::new("in-process")
        .client_id(config.local_client_id())
        .clean_start(false)
        .session_expiry(u32::MAX)
        .keep_alive(Duration::ZERO)
        .manual_acks(true);
    options.receive_maximum = config.max_inflight;
    let (local, connected) = Client::connect_over(stream, options).await?;
    tracing::info!(bridge = %config.name, client_id = %connected.client_id, session_present = connected.session_present, "bridge session in this broker");
    let routes = Routes::new(&config.topics);
    let filters = routes.filters(Way::Out);
    if !filters.is_empty() {
        local.subscribe_with(bridge_subscription(&filters)).await?;
    }
    Ok(local)
}

/// No Local: what the bridge publishes on a side is not sent back to it (no loops). Retain As
/// Published: retained flags cross unchanged. QoS 2: the message's own QoS arrives, and the
/// topic entry's `qos` decides (with a warning) what goes on.
fn bridge_subscription(filters: &[String]) -> Subscription {
    let options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: 0,
    };
    filters.iter().fold(Subscription::new(), |s, f| {
        s.filter_with(f.as_str(), options)
    })
}

/// One bridge, until it is stopped.
async fn run(
    config: BridgeConfig,
    local: Client,
    stats: Arc<BridgeStats>,
    remote_slot: Arc<OnceLock<Client>>,
) {
    let name: Arc<str> = Arc::from(config.name.as_str());
    let state_topic = format!("$SYS/broker/connection/{name}/state");
    let _ = local
        .publish(state_topic.clone(), "0", QoS::AtLeastOnce, true)
        .await;
    let remote = connect_remote(&config).await;
    let _ = remote_slot.set(remote.clone());
    let routes = Arc::new(Routes::new(&config.topics));
    let inbound = routes.filters(Way::In);
    if !inbound.is_empty() {
        // Resubscribed by the client itself when a reconnection finds no session.
        if let Err(e) = remote.subscribe_with(bridge_subscription(&inbound)).await {
            tracing::error!(bridge = %name, error = %e, "subscribing at the remote broker failed");
        }
    }
    let out = forward::Direction {
        way: Way::Out,
        name: name.clone(),
        from: local.clone(),
        to: remote.clone(),
        routes: routes.clone(),
        stats: stats.clone(),
    };
    let inn = forward::Direction {
        way: Way::In,
        name: name.clone(),
        from: remote.clone(),
        to: local.clone(),
        routes,
        stats: stats.clone(),
    };
    tokio::join!(
        out.run(),
        inn.run(),
        report_state(&name, &local, &remote, &state_topic, &stats)
    );
}

/// Publishes the remote connection's state (retained) and counts reconnections.
async fn report_state(
    name: &str,
    local: &Client,
    remote: &Client,
    topic: &str,
    stats: &BridgeStats,
) {
    let mut up = remote.connection_state();
    let mut was_up = false;
    let mut connected_before = false;
    loop {
        let now_up = *up.borrow_and_update();
        if now_up != was_up {
            stats.set_up(now_up);
            if now_up {
                if connected_before {
                    stats.reconnected();
                }
                connected_before = true;
                tracing::info!(bridge = %name, "bridge connected to the remote broker");
            } else {
                tracing::warn!(bridge = %name, "bridge lost the remote broker; reconnecting");
            }
            let value = if now_up { "1" } else { "0" };
            let _ = local
                .publish(topic.to_owned(), value, QoS::AtLeastOnce, true)
                .await;
            was_up = now_up;
        }
        if up.changed().await.is_err() {
            return;
        }
    }
}

/// The options of the remote client (the first address as its server).
fn remote_options(config: &BridgeConfig) -> ClientOptions {
    let tls = QuicOptions {
        ca_file: config.tls.ca_file.clone(),
        insecure: config.tls.insecure,
        server_name: config.tls.server_name.clone(),
    };
    let transport_of = |t: BridgeTransport| match t {
        BridgeTransport::Tcp => Transport::Tcp,
        BridgeTransport::Mqtts => Transport::Mqtts(tls.clone()),
        BridgeTransport::Quic => Transport::Quic(tls.clone()),
    };
    let transport = transport_of(config.transport);
    let version = match config.version {
        BridgeVersion::V5 => ProtocolVersion::V5,
        BridgeVersion::V3_1_1 => ProtocolVersion::V3_1_1,
    };
    // Validation requires at least one address (config::sections::bridges).
    let (first, alternates) = config
        .addresses
        .split_first()
        .map(|(first, rest)| (first.clone(), rest.to_vec()))
        .unwrap_or_default();
    let mut options = ClientOptions::new(first)
        .transport(transport)
        .version(version)
        .client_id(config.remote_client_id())
        .clean_start(config.clean_start)
        .session_expiry(config.session_expiry_secs)
        .keep_alive(Duration::from_secs(u64::from(config.keep_alive_secs)))
        .manual_acks(true)
        .reconnect(Reconnect {
            base: Duration::from_millis(config.backoff.base_ms),
            cap: Duration::from_millis(config.backoff.cap_ms),
            alternates,
        });
    options.receive_maximum = config.max_inflight;
    options.fallback = config.fallback.as_ref().map(|f| Fallback {
        transport: transport_of(f.transport),
        server: f.address.clone(),
        port: f.port,
        after: Duration::from_millis(f.after_ms),
        retry_quic: (f.retry_quic_ms > 0).then(|| Duration::from_millis(f.retry_quic_ms)),
    });
    options.username = config.username.clone();
    options.password = config.password.clone().map(Into::into);
    if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) {
        options.client_cert = Some(ClientCert {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    options
}

/// Connects to the first remote address that answers, in order, with backoff between rounds;
/// from then on the client reconnects by itself.
async fn connect_remote(config: &BridgeConfig) -> Client {
    let options = remote_options(config);
    let reconnect = options.reconnect.clone().unwrap_or_default();
    let mut attempt = 0u32;
    loop {
        let server = reconnect.server_for(&options.server, attempt).to_owned();
        let mut try_options = options.clone();
        try_options.server = server.clone();
        // Failover keeps the configured order: the others, first to last.
        if let Some(r) = try_options.reconnect.as_mut() {
            r.alternates = config
                .addresses
                .iter()
                .filter(|a| **a != server)
                .cloned()
                .collect();
        }
        match Client::connect(try_options).await {
            Ok((client, connected)) => {
                tracing::info!(bridge = %config.name, %server, session_present = connected.session_present, "bridge connected to the remote broker");
                return client;
            }
            Err(e) => {
                if attempt < 3 || attempt.is_power_of_two() {
                    tracing::warn!(bridge = %config.name, %server, error = %e, attempt, "bridge cannot reach the remote broker; retrying");
                }
                let round = attempt / u32::try_from(config.addresses.len()).unwrap_or(1);
                tokio::time::sleep(reconnect.delay(round, crate::client::jitter())).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}
