//! The embedding API: run the broker inside a Rust program and handle topics in-process.
//!
//! This is the original `MQTTApp` design (`@app.subscribe("sensors/#")`) in Rust:
//!
//! ```no_run
//! # async fn example() -> Result<(), mqttd::app::AppError> {
//! let mut app = mqttd::App::new(mqttd::Config::default());
//! let publisher = app.publisher();
//! app.subscribe("sensors/+/temperature", move |msg| {
//!     let publisher = publisher.clone();
//!     async move {
//!         let celsius: f64 = std::str::from_utf8(&msg.payload).unwrap_or("").parse().unwrap_or(0.0);
//!         if celsius > 30.0 {
//!             let _ = publisher.publish("alerts/heat", msg.topic.to_string(), mqttd::codec::QoS::AtLeastOnce, false).await;
//!         }
//!     }
//! })?;
//! app.run().await
//! # }
//! ```
//!
//! Handlers run on their own task, one message at a time and in order, so a slow handler never
//! stalls the broker; each has a bounded queue and loses (and logs) messages it cannot keep up
//! with, like a QoS 0 subscriber.
//!
//! The broker runs on the caller's tokio runtime. Run it on a current-thread runtime (as the
//! `mqttd` binary does with one worker thread) to have packets from different connections
//! handled in the order they arrived: tokio's multi-thread runtime may run the later of two
//! connections that became readable together first (README "Threads").

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::{mpsc, oneshot};

use crate::broker::{HandlerId, Message, SharedMessage};
use crate::codec::{Properties, QoS, ReasonCode};
use crate::config::Config;
use crate::handoff::{Event, EVENT_QUEUE};
use crate::server::{ServerError, ServerHandle, ServerOptions};

/// Messages waiting for one handler before new ones are dropped.
const HANDLER_QUEUE: usize = 1024;

/// A message as an in-process handler sees it.
#[derive(Debug, Clone)]
pub struct AppMessage {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Forwarded MQTT 5 properties (user properties, content type, response topic, ...).
    pub properties: Properties,
    /// Client id of the publisher; `None` when the application itself published it.
    pub client_id: Option<ByteString>,
}

impl AppMessage {
    fn from_shared(m: &SharedMessage) -> AppMessage {
        AppMessage {
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            qos: m.qos,
            retain: m.retain,
            properties: m.properties.clone(),
            client_id: m.origin.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("invalid topic filter {0:?}")]
    InvalidFilter(String),
    #[error("refused with reason code {0}")]
    Refused(ReasonCode),
    #[error("the broker has stopped")]
    Stopped,
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminSetupError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

type Handler = Arc<dyn Fn(AppMessage) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

struct Registration {
    filter: String,
    qos: QoS,
    handler: Handler,
}

/// A broker with in-process handlers, before it runs.
pub struct App {
    config: Config,
    options: ServerOptions,
    registrations: Vec<Registration>,
    events: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
}

/// Publishes into a broker from the application; cheap to clone, usable before the broker runs.
#[derive(Clone)]
pub struct Publisher {
    events: mpsc::Sender<Event>,
}

impl App {
    pub fn new(config: Config) -> App {
        let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
        App {
            config,
            options: ServerOptions::default(),
            registrations: Vec::new(),
            events,
            events_rx,
        }
    }

    /// Code-level options (e.g. an enhanced authentication hook).
    pub fn options(&mut self) -> &mut ServerOptions {
        &mut self.options
    }

    /// Calls `handler` for every message published to a topic matching `filter` (MQTT
    /// wildcards `+` and `#`; shared subscriptions are for network clients).
    pub fn subscribe<F, Fut>(&mut self, filter: &str, handler: F) -> Result<&mut App, AppError>
    where
        F: Fn(AppMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        check_filter(filter)?;
        self.registrations.push(Registration {
            filter: filter.into(),
            qos: QoS::ExactlyOnce,
            handler: boxed(handler),
        });
        Ok(self)
    }

    pub fn publisher(&self) -> Publisher {
        Publisher {
            events: self.events.clone(),
        }
    }

    /// Starts the broker, the handlers and the bridges.
    ///
    /// The listeners are bound first but serve no client until the handlers are registered
    /// and every bridge has subscribed in this broker: a message published by the first
    /// client to connect is already forwarded (README "Bridges").
    pub async fn start(self) -> Result<AppHandle, AppError> {
        let bridges = self.config.bridges.clone();
        // Checked before anything binds: off loopback without a token is refused.
        let admin_config = self.config.clone();
        if let Some(addr) = admin_config.admin.listen {
            if !addr.ip().is_loopback() && !admin_config.admin.has_token() {
                return Err(crate::admin::AdminSetupError::TokenRequired { addr }.into());
            }
        }
        // The cluster first: a node that cannot reach NATS does not start (README "Cluster").
        let mut options = self.options;
        options.hold_listeners = true;
        let cluster = if self.config.cluster.enabled() {
            let (cluster, tx) =
                crate::cluster::Cluster::start(&self.config.cluster, self.events.clone()).await?;
            options.cluster = Some(tx);
            options.cluster_node = cluster.names.node.clone();
            options.quic_reset_key = Some(cluster.reset_key.clone());
            Some(cluster)
        } else {
            None
        };
        let server =
            crate::server::start_with_channel(self.config, options, self.events, self.events_rx)
                .await?;
        let mut handle = AppHandle {
            admin: None,
            server,
            next_handler: Arc::new(std::sync::atomic::AtomicU64::new(1)),
            bridges: crate::bridge::Bridges::default(),
            cluster,
        };
        for r in self.registrations {
            if let Err(e) = handle.register(&r.filter, r.qos, r.handler).await {
                handle.shutdown().await;
                return Err(e);
            }
        }
        handle.bridges = crate::bridge::start(&handle.server, &bridges).await;
        // The admin API publishes too (`POST /publish`): after the bridges as well.
        match crate::admin::start(&admin_config, handle.server.probe()).await {
            Ok(admin) => handle.admin = admin,
            Err(e) => {
                handle.shutdown().await;
                return Err(e.into());
            }
        }
        handle.server.open_listeners();
        Ok(handle)
    }

    /// Starts the broker and runs until Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run(self) -> Result<(), AppError> {
        self.start().await?.run_until_signal().await;
        Ok(())
    }
}

/// A running [`App`].
pub struct AppHandle {
    admin: Option<crate::admin::AdminHandle>,
    server: ServerHandle,
    next_handler: Arc<std::sync::atomic::AtomicU64>,
    bridges: crate::bridge::Bridges,
    cluster: Option<crate::cluster::Cluster>,
}

impl AppHandle {
    pub fn publisher(&self) -> Publisher {
        Publisher {
            events: self.server.events.clone(),
        }
    }

    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }

    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.tcp_addr()
    }

    pub fn quic_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.quic_addr()
    }

    /// The admin API's address, when it runs.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().map(|a| a.addr())
    }

    /// Adds a handler while the broker runs.
    pub async fn subscribe<F, Fut>(&self, filter: &str, handler: F) -> Result<(), AppError>
    where
        F: Fn(AppMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        check_filter(filter)?;
        self.register(filter, QoS::ExactlyOnce, boxed(handler))
            .await
    }

    async fn register(&self, filter: &str, qos: QoS, handler: Handler) -> Result<(), AppError> {
        let id = HandlerId(
            self.next_handler
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        let (deliver, mut rx) = mpsc::channel::<SharedMessage>(HANDLER_QUEUE);
        let (reply, answer) = oneshot::channel();
        let event = Event::AppSubscribe {
            handler: id,
            filter: filter.into(),
            qos,
            deliver,
            reply,
        };
        self.server
            .events
            .send(event)
            .await
            .map_err(|_| AppError::Stopped)?;
        answer
            .await
            .map_err(|_| AppError::Stopped)?
            .map_err(|_| AppError::InvalidFilter(filter.into()))?;
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                handler(AppMessage::from_shared(&msg)).await;
            }
        });
        Ok(())
    }

    /// Each bridge's name and counters (`bridges:` in the configuration).
    pub fn bridge_stats(&self) -> Vec<(String, crate::bridge::BridgeStatsSnapshot)> {
        self.bridges.stats()
    }

    /// Moves bridge `name`'s QUIC connection to a new local UDP socket, as an address change
    /// would ([`crate::bridge::Bridges::migrate`]); returns the new local address.
    pub async fn bridge_migrate(
        &self,
        name: &str,
    ) -> Result<std::net::SocketAddr, crate::client::ClientError> {
        self.bridges.migrate(name).await
    }

    /// Stops the bridges (DISCONNECT to each remote), then the broker.
    pub async fn shutdown(self) {
        self.bridges.stop().await;
        if let Some(admin) = self.admin {
            admin.stop().await;
        }
        self.server.shutdown().await;
        if let Some(cluster) = self.cluster {
            cluster.stop().await;
        }
    }
}

impl Publisher {
    /// Publishes a message; returns how many subscribers it reached. With persistence (and
    /// `storage.durability` other than `off`) it returns once what the message changed (queued
    /// deliveries, a retained message) is committed to the store.
    pub async fn publish(
        &self,
        topic: impl Into<ByteString>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<usize, AppError> {
        self.publish_with(topic, payload, qos, retain, Properties::default(), None)
            .await
    }

    /// Publishes with MQTT 5 properties and an optional expiry.
    pub async fn publish_with(
        &self,
        topic: impl Into<ByteString>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
        properties: Properties,
        expiry: Option<Duration>,
    ) -> Result<usize, AppError> {
        let message = Message {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            properties: crate::broker::forwardable_properties(properties),
            expires_at: expiry.map(|d| Instant::now() + d),
            origin: None,
            received_at: Some(Instant::now()),
            cluster_seq: None,
        };
        let (reply, answer) = oneshot::channel();
        self.events
            .send(Event::AppPublish {
                message: Box::new(message),
                reply,
            })
            .await
            .map_err(|_| AppError::Stopped)?;
        answer
            .await
            .map_err(|_| AppError::Stopped)?
            .map_err(AppError::Refused)
    }
}

fn check_filter(filter: &str) -> Result<(), AppError> {
    if crate::topic::is_valid_filter(filter) && crate::topic::parse_shared(filter).is_none() {
        Ok(())
    } else {
        Err(AppError::InvalidFilter(filter.into()))
    }
}

fn boxed<F, Fut>(handler: F) -> Handler
where
    F: Fn(AppMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |m| Box::pin(handler(m)))
}

/// Resolves on Ctrl-C or (Unix) SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
