//! How to reach the server and what to ask of it: [`ClientOptions`].
//!
//! Plain public fields with defaults (so a caller sets only what matters to it) and a few
//! chaining setters for the common ones. [`ClientOptions::connect_packet`] turns them into the
//! CONNECT the session state machine sends.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;

use super::quic_ext::{property, StreamMapping, DATAGRAMS_PROPERTY, MAPPING_PROPERTY};
use crate::codec::{Connect, Properties, ProtocolVersion, Will};

/// The ALPN protocol of MQTT over QUIC.
pub const MQTT_ALPN: &[u8] = b"mqtt";

/// Default TCP port of MQTT.
pub const DEFAULT_TCP_PORT: u16 = 1883;
/// Default UDP port of mqttd's MQTT over QUIC.
pub const DEFAULT_QUIC_PORT: u16 = 1884;
/// The usual port of MQTT over TCP + TLS (MQTTS).
pub const DEFAULT_MQTTS_PORT: u16 = 8883;

/// The network under the MQTT connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Transport {
    /// MQTT over TCP (no TLS).
    #[default]
    Tcp,
    /// MQTT over QUIC (TLS 1.3, ALPN `mqtt`): one bidirectional stream carries the MQTT
    /// connection, and more may be opened with `Client::open_stream`.
    Quic(QuicOptions),
    /// MQTT over TCP + TLS 1.3 (MQTTS), with the same trust settings as QUIC.
    Mqtts(QuicOptions),
}

/// TLS settings of the QUIC transport.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuicOptions {
    /// PEM file of the certificates to trust (for mqttd's self-signed certificate, the
    /// `cert.pem` it wrote in its data directory). Without it nothing is trusted.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate: encryption without authentication. For tests and
    /// first contact only.
    pub insecure: bool,
    /// The name to verify the certificate against; default: the host part of
    /// [`ClientOptions::server`] (an IP address is verified against the certificate's IP
    /// SANs).
    pub server_name: Option<String>,
}

/// A client certificate and its private key (PEM files) for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything [`Client::connect`](super::Client::connect) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// `host:port`; an IPv6 literal in brackets (`[::1]:1883`).
    pub server: String,
    pub transport: Transport,
    /// Default MQTT 5.0.
    pub version: ProtocolVersion,
    /// Empty: the server assigns one (5.0; a 3.1.1 server only accepts that with clean
    /// start).
    pub client_id: String,
    /// Start a new session (default), or resume the one the server kept for this client id.
    pub clean_start: bool,
    /// Longest silence before PINGREQ, whole seconds up to 65,535; zero turns keep alive off.
    /// Default 60 s.
    pub keep_alive: Duration,
    /// Session Expiry Interval (5.0), seconds; `u32::MAX` never expires. Default 0: the
    /// session ends with the connection. MQTT 3.1.1 keeps the session iff `clean_start` is
    /// false.
    pub session_expiry: u32,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    /// Published by the server if the connection ends without DISCONNECT.
    pub will: Option<Will>,
    /// QoS 1/2 messages the server may send before we acknowledge them (5.0). Default 128.
    pub receive_maximum: u16,
    /// Topic aliases the server may use toward us (5.0). Default 16.
    pub topic_alias_maximum: u16,
    /// Largest packet we accept (5.0 announces it). Default: no limit but the protocol's.
    pub maximum_packet_size: Option<u32>,
    /// More CONNECT properties (5.0): user properties, request problem/response
    /// information, authentication method... The fields above take precedence.
    pub properties: Properties,
    /// Bound on reaching the server and getting its CONNACK. Default 10 s.
    pub connect_timeout: Duration,
    /// Received messages queued for `recv` per stream. Default 1024; see `Client::recv`.
    pub inbox_capacity: usize,
    /// QUIC: when a ticket from an earlier connection to this server is at hand, send CONNECT
    /// (and what `Client::connect_pipelined` adds) as 0-RTT early data, so the CONNACK comes
    /// one round trip after the first packet. A server that refuses it gets everything again
    /// after the handshake. Default true.
    pub zero_rtt: bool,
    /// QUIC, MQTT 5.0: ask the server for our QoS 0 deliveries in DATAGRAM frames (CONNECT
    /// user property `quic-datagrams: on`, `proto-ext/datagrams.md`); the answer is in
    /// [`Connected::quic`](super::Connected::quic). Per subscription instead:
    /// [`Subscription::datagrams`](super::Subscription::datagrams). Default false.
    pub receive_datagrams: bool,
    /// QUIC: send every QoS 0 publish in a DATAGRAM frame when it fits (as
    /// [`Message::datagram`](super::Message::datagram) does per message). Default false.
    pub send_datagrams: bool,
    /// QUIC, MQTT 5.0: ask for deliveries on server-initiated streams, one per subscription
    /// or per topic (CONNECT user property `quic-stream-mapping`, `proto-ext/flows.md`
    /// section 7). Default `None`: the server's default (off on ALPN `mqtt`).
    pub stream_mapping: Option<StreamMapping>,
    /// QUIC and MQTTS: present this certificate to the server (mutual TLS). Default none.
    pub client_cert: Option<ClientCert>,
    /// Received QoS 1/2 messages are acknowledged only when the application calls
    /// [`Client::ack`](super::Client::ack) with [`ReceivedMessage::ack`](super::ReceivedMessage):
    /// the server keeps (and after a reconnection resends) each message until the application
    /// is done with it, e.g. a bridge that forwarded it. Default false: acknowledged once
    /// queued for `recv`.
    pub manual_acks: bool,
    /// Reconnect by itself when the connection is lost (see [`Reconnect`]). Default `None`.
    pub reconnect: Option<Reconnect>,
    /// QUIC: where to go when UDP is blocked (see [`Fallback`]). Default `None`.
    pub fallback: Option<Fallback>,
    /// MQTT 5.0 enhanced authentication: the method named in every CONNECT and the answers
    /// to the server's AUTH challenges (see [`AuthMethod`](super::AuthMethod)). Default
    /// `None`.
    pub auth: Option<super::auth::EnhancedAuth>,
    /// QUIC: connect through this shared UDP socket instead of one of the client's own (see
    /// [`QuicEndpoint`](super::QuicEndpoint)); a server of the other address family still
    /// gets a socket of its own. Default `None`.
    pub quic_endpoint: Option<super::QuicEndpoint>,
}

/// A QUIC client's way around a network that blocks UDP: each connection attempt (the first
/// and every reconnection) tries QUIC first; when QUIC gets no answer within `after`, the same
/// attempt goes to `server` over `transport` (MQTTS, or TCP). A QUIC server that answers with
/// a TLS or ALPN failure is reachable and does not cause the fallback.
/// [`QuicStats::fallback_connections`](super::QuicStats) counts the connections made this way.
///
/// With automatic reconnection ([`Reconnect`]) the client does not stay on the fallback for
/// good: every `retry_quic` it tries a QUIC handshake beside the live connection (no MQTT on
/// it), and once one completes it ends the fallback connection with a normal DISCONNECT and
/// reconnects, QUIC first, resuming the session ([`QuicStats::quic_returns`](super::QuicStats)
/// counts these moves). Without reconnection the connection lives on the fallback until it is
/// lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// [`Transport::Mqtts`] (the usual choice) or [`Transport::Tcp`].
    pub transport: Transport,
    /// `host:port`; `None`: the QUIC server's host with `port`.
    pub server: Option<String>,
    /// The port used with the QUIC server's host when `server` is `None`.
    pub port: u16,
    /// How long the QUIC attempt may wait for an answer.
    pub after: Duration,
    /// While connected over the fallback, how often to check whether QUIC answers again (with
    /// [`Reconnect`] only); `None`: stay on the fallback until the connection is lost.
    pub retry_quic: Option<Duration>,
}

impl Fallback {
    /// MQTTS with `tls` on the QUIC server's host, port 8883, after 3 s of silence; QUIC
    /// tried again every minute.
    pub fn mqtts(tls: QuicOptions) -> Fallback {
        Fallback {
            transport: Transport::Mqtts(tls),
            server: None,
            port: DEFAULT_MQTTS_PORT,
            after: Duration::from_secs(3),
            retry_quic: Some(Duration::from_secs(60)),
        }
    }

    /// The fallback server for the QUIC server `quic_server` (`host:port`).
    pub fn server_for(&self, quic_server: &str) -> String {
        match &self.server {
            Some(server) => server.clone(),
            None => {
                let host = quic_server
                    .rsplit_once(':')
                    .map_or(quic_server, |(host, _)| host);
                format!("{host}:{}", self.port)
            }
        }
    }
}

/// Automatic reconnection: after a lost connection the client dials again, `server` first
/// and then each of `alternates` in turn, waiting between attempts an exponential backoff
/// from `base` up to `cap` with jitter (each wait is drawn between half and all of it). It
/// resumes the session (clean start 0), so QoS 1/2 publishes keep waiting for their outcome
/// across the gap (and publishes made meanwhile wait for the connection); when the server
/// did not keep the session it subscribes again to everything subscribed on the control
/// stream. [`Client::connection_state`](super::Client::connection_state) tells when it is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    pub base: Duration,
    pub cap: Duration,
    /// More `host:port` servers tried in order after `server` (failover).
    pub alternates: Vec<String>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            alternates: Vec::new(),
        }
    }
}

/// A factor in [0.5, 1] for the reconnection backoff, so clients that lost the same server at
/// once do not all come back at once.
pub(crate) fn jitter() -> f64 {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 2];
    match SystemRandom::new().fill(&mut bytes) {
        Ok(()) => 0.5 + f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX) / 2.0,
        Err(_) => 0.75,
    }
}

impl Reconnect {
    /// The wait before attempt `attempt` (0 for the first retry): `base * 2^attempt` capped at
    /// `cap`, scaled by `jitter` in [0.5, 1].
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
        exp.min(self.cap).mul_f64(jitter.clamp(0.5, 1.0))
    }

    /// The server of attempt `attempt`: `server`, then the alternates, round and round.
    pub fn server_for<'a>(&'a self, server: &'a str, attempt: u32) -> &'a str {
        let n = self.alternates.len() + 1;
        match attempt as usize % n {
            0 => server,
            i => self.alternates.get(i - 1).map_or(server, String::as_str),
        }
    }
}

impl ClientOptions {
    /// Options for `server` (`host:port`) with the defaults: TCP, MQTT 5.0, server-assigned
    /// client id, clean start, keep alive 60 s.
    pub fn new(server: impl Into<String>) -> ClientOptions {
        ClientOptions {
            server: server.into(),
            transport: Transport::Tcp,
            version: ProtocolVersion::V5,
            client_id: String::new(),
            clean_start: true,
            keep_alive: Duration::from_secs(60),
            session_expiry: 0,
            username: None,
            password: None,
            will: None,
            receive_maximum: 128,
            topic_alias_maximum: 16,
            maximum_packet_size: None,
            properties: Properties::default(),
            connect_timeout: Duration::from_secs(10),
            inbox_capacity: 1024,
            zero_rtt: true,
            receive_datagrams: false,
            send_datagrams: false,
            stream_mapping: None,
            client_cert: None,
            manual_acks: false,
            reconnect: None,
            fallback: None,
            auth: None,
            quic_endpoint: None,
        }
    }

    /// See [`ClientOptions::quic_endpoint`].
    pub fn quic_endpoint(mut self, endpoint: super::QuicEndpoint) -> ClientOptions {
        self.quic_endpoint = Some(endpoint);
        self
    }

    /// See [`ClientOptions::manual_acks`].
    pub fn manual_acks(mut self, on: bool) -> ClientOptions {
        self.manual_acks = on;
        self
    }

    /// See [`ClientOptions::reconnect`].
    pub fn reconnect(mut self, reconnect: Reconnect) -> ClientOptions {
        self.reconnect = Some(reconnect);
        self
    }

    /// Ask for QoS 0 deliveries in datagrams and send QoS 0 publishes in datagrams.
    pub fn datagrams(mut self, on: bool) -> ClientOptions {
        self.receive_datagrams = on;
        self.send_datagrams = on;
        self
    }

    pub fn stream_mapping(mut self, mapping: StreamMapping) -> ClientOptions {
        self.stream_mapping = Some(mapping);
        self
    }

    pub fn version(mut self, version: ProtocolVersion) -> ClientOptions {
        self.version = version;
        self
    }

    pub fn client_id(mut self, client_id: impl Into<String>) -> ClientOptions {
        self.client_id = client_id.into();
        self
    }

    pub fn clean_start(mut self, clean_start: bool) -> ClientOptions {
        self.clean_start = clean_start;
        self
    }

    pub fn keep_alive(mut self, keep_alive: Duration) -> ClientOptions {
        self.keep_alive = keep_alive;
        self
    }

    pub fn session_expiry(mut self, secs: u32) -> ClientOptions {
        self.session_expiry = secs;
        self
    }

    pub fn credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<Bytes>,
    ) -> ClientOptions {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    pub fn will(mut self, will: Will) -> ClientOptions {
        self.will = Some(will);
        self
    }

    pub fn transport(mut self, transport: Transport) -> ClientOptions {
        self.transport = transport;
        self
    }

    /// The CONNECT these options describe (clean start as configured).
    pub fn connect_packet(&self) -> Connect {
        let v5 = self.version.is_v5();
        let mut properties = if v5 {
            self.properties.clone()
        } else {
            Properties::default()
        };
        if v5 {
            properties.session_expiry_interval = Some(self.session_expiry).filter(|&s| s > 0);
            // 3.1.2.11.3: 65,535 is the default; 0 is a protocol error.
            properties.receive_maximum =
                Some(self.receive_maximum.max(1)).filter(|&r| r < u16::MAX);
            properties.topic_alias_maximum = Some(self.topic_alias_maximum).filter(|&t| t > 0);
            // 3.1.2.11.4: 0 is a protocol error.
            properties.maximum_packet_size = self.maximum_packet_size.filter(|&m| m > 0);
            if self.receive_datagrams {
                properties
                    .user_properties
                    .push(property(DATAGRAMS_PROPERTY, "on"));
            }
            if let Some(mapping) = self.stream_mapping {
                properties
                    .user_properties
                    .push(property(MAPPING_PROPERTY, mapping.name()));
            }
        }
        let mut will = self.will.clone();
        if let (Some(will), false) = (will.as_mut(), v5) {
            will.properties = Properties::default();
        }
        Connect {
            protocol: self.version,
            clean_start: self.clean_start,
            keep_alive: self.keep_alive.as_secs().min(u64::from(u16::MAX)) as u16,
            properties,
            client_id: ByteString::from(self.client_id.as_str()),
            will,
            username: self.username.as_deref().map(ByteString::from),
            password: self.password.clone(),
        }
    }

    /// Largest packet the decoder accepts from the server.
    pub(crate) fn decode_limit(&self) -> u32 {
        // 1 byte of header, 4 of remaining length, 268,435,455 of body.
        const PROTOCOL_MAX: u32 = 1 + 4 + 268_435_455;
        self.maximum_packet_size
            .filter(|&m| self.version.is_v5() && m > 0)
            .unwrap_or(PROTOCOL_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;

    #[test]
    fn the_fallback_server_defaults_to_the_quic_host() {
        let mut fallback = Fallback::mqtts(QuicOptions::default());
        assert_eq!(
            fallback.server_for("cloud.example:1884"),
            "cloud.example:8883"
        );
        assert_eq!(fallback.server_for("[::1]:1884"), "[::1]:8883");
        fallback.server = Some("other:443".into());
        assert_eq!(fallback.server_for("cloud.example:1884"), "other:443");
    }

    #[test]
    fn connect_packet_follows_the_options() {
        let will = Will {
            topic: "status".into(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::from(crate::codec::PropertyValues {
                will_delay_interval: Some(5),
                ..crate::codec::PropertyValues::default()
            }),
        };
        let options = ClientOptions::new("localhost:1883")
            .client_id("c1")
            .clean_start(false)
            .session_expiry(60)
            .keep_alive(Duration::from_secs(100_000))
            .credentials("user", "pw")
            .will(will.clone());
        let c = options.connect_packet();
        assert_eq!(c.protocol, ProtocolVersion::V5);
        assert!(!c.clean_start);
        assert_eq!(c.keep_alive, u16::MAX);
        assert_eq!(c.client_id, "c1");
        assert_eq!(c.username.as_deref(), Some("user"));
        assert_eq!(c.properties.session_expiry_interval, Some(60));
        assert_eq!(c.properties.receive_maximum, Some(128));
        assert_eq!(c.properties.topic_alias_maximum, Some(16));
        assert_eq!(c.will, Some(will));

        let ext = ClientOptions::new("localhost:1884")
            .datagrams(true)
            .stream_mapping(StreamMapping::Topic)
            .connect_packet();
        assert_eq!(
            ext.properties.user_properties,
            vec![
                property(DATAGRAMS_PROPERTY, "on"),
                property(MAPPING_PROPERTY, "topic")
            ]
        );

        let v3 = options.version(ProtocolVersion::V3_1_1).connect_packet();
        assert!(v3.properties.is_empty());
        assert!(v3.will.unwrap().properties.is_empty());
    }
}
