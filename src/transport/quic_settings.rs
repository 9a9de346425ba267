//! What the QUIC listener and its connection tasks take from the configuration, and the ALPN
//! protocol ids they speak.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::early::QuicStats;
use crate::config::Config;

/// ALPN protocol ids accepted on the listener: plain MQTT over QUIC (EMQX style) and the
/// MQTT-next draft (flow headers).
pub const ALPN: [&[u8]; 3] = [b"mqtt", b"mqttv5", MQTT_NEXT];
pub const MQTT_NEXT: &[u8] = b"MQTT-next";

/// Timeouts and limits the connection tasks need.
#[derive(Debug, Clone)]
pub struct QuicSettings {
    pub max_packet_size: u32,
    pub handshake_timeout: Duration,
    /// How long the client has to open its control stream.
    pub connect_timeout: Duration,
    /// What 0-RTT early data may do (`Off` when the TLS configuration refuses it).
    pub zero_rtt: crate::config::ZeroRtt,
    /// 0-RTT counters of the listener.
    pub stats: Arc<QuicStats>,
    /// Streams a client may open per second, and datagrams it may send (0: no limit).
    pub stream_opens_per_sec: u32,
    pub datagrams_per_sec: u32,
    /// Connections refused before their handshake (`super::admission`).
    pub admission: Arc<super::admission::Admission>,
    /// `quic.address_validation`: a Retry before every new connection.
    pub address_validation: bool,
    /// Live connections, for the admin API's QUIC figures.
    pub connections: Arc<super::quic_registry::QuicConnections>,
    /// Connections being served; server shutdown waits until each has handed its last packets
    /// to QUIC and closed.
    pub flushing: TaskTracker,
    /// `quic.webtransport`: connections on ALPN `h3` go to `super::webtransport`.
    pub webtransport: Option<super::webtransport::WtSettings>,
    /// `quic.qlog_dir`: which connections write a qlog trace (set once the server
    /// configuration exists, `super::qlog`).
    pub qlog: Option<super::qlog::QlogSettings>,
    /// The server configuration for peers on this host (`quic::loopback_server_config`; set
    /// with the endpoint's own).
    pub loopback_config: Option<Arc<quinn::ServerConfig>>,
}

impl QuicSettings {
    pub fn from_config(config: &Config) -> QuicSettings {
        let early = super::quic_tls::early_data_enabled(config, super::quic_tls::Listener::Quic);
        QuicSettings {
            max_packet_size: config.limits.max_packet_size,
            handshake_timeout: Duration::from_secs(config.quic.handshake_timeout_secs),
            connect_timeout: Duration::from_secs(config.limits.connect_timeout_secs),
            zero_rtt: if early {
                config.quic.zero_rtt
            } else {
                crate::config::ZeroRtt::Off
            },
            stats: Arc::default(),
            stream_opens_per_sec: config.limits.quic_stream_opens_per_sec,
            datagrams_per_sec: config.limits.quic_datagrams_per_sec,
            admission: Arc::new(super::admission::Admission::new(&config.limits)),
            address_validation: config.quic.address_validation,
            connections: Arc::default(),
            flushing: TaskTracker::new(),
            webtransport: super::webtransport::WtSettings::from_config(config),
            qlog: None,
            loopback_config: None,
        }
    }
}
