//! Broker configuration: the YAML file, its defaults and its validation.
//!
//! It exists so that every knob of the broker has one typed home with a documented default, and
//! so that a bad file is refused at startup with a message a user can act on, instead of showing
//! up later as odd protocol behaviour. [`example_yaml`] is the user-facing reference.
//!
//! Every field has a default, so an empty file (or none) gives a working broker. Unknown keys
//! and out-of-range values are errors that name the file, the key and the problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listeners: Listeners,
    pub limits: Limits,
    pub session: SessionDefaults,
    pub log: Logging,
    pub runtime: Runtime,
    pub tls: Tls,
    pub storage: Storage,
    pub quic: Quic,
    pub auth: Auth,
}

/// The threads the broker runs on.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// Threads that run the connections and the broker task (tokio workers). 0: half the
    /// cores, at least one. The broker's state lives in one task, so more threads only spread
    /// the connections' reads and writes; on 2 cores one thread was faster in every scenario
    /// of `benches/compare.sh` (fan-out QoS 0: +25%), with no wake-ups across cores and the
    /// other core left to the kernel's network work (README "Threads"). Default 0.
    pub worker_threads: usize,
}

/// Most worker threads the configuration accepts.
const MAX_WORKER_THREADS: usize = 1024;

impl Runtime {
    /// The number of worker threads to start on a machine with `cores` cores.
    pub fn worker_threads_for(&self, cores: usize) -> usize {
        match self.worker_threads {
            0 => (cores / 2).max(1),
            n => n,
        }
    }
}

/// Authentication and access control (see `crate::auth` and the README section
/// "Authentication and access control").
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Password file (`user:$argon2id$...` lines, managed with `mqttd passwd`).
    pub password_file: Option<PathBuf>,
    /// ACL file (mosquitto-style `topic`/`pattern`/`user`/`client` lines).
    pub acl_file: Option<PathBuf>,
    /// Clients without credentials: `true` everywhere, `false` nowhere, `null` (automatic):
    /// loopback clients only, and only while no password file and no certificate identities
    /// are configured.
    pub allow_anonymous: Option<bool>,
    /// A verified client certificate's CN (else first SAN) is the user name (mutual TLS).
    pub use_identity_as_username: bool,
}

/// Certificate and key for the TLS-based listeners (QUIC today). Both or neither: with neither,
/// a self-signed certificate is generated in the data directory on first start and reused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM CA certificate(s) client certificates are verified against (mutual TLS on MQTTS
    /// and QUIC); null: client certificates are not asked for.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse TLS clients without a valid certificate (else a certificate
    /// is optional, and verified when presented).
    pub require_client_cert: bool,
}

/// Where the broker keeps its files, and how it persists its state (see `crate::store`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// The data directory (generated certificate, the store `mqttd.redb`). Default:
    /// `$XDG_DATA_HOME/mqttd`, else `$HOME/.local/share/mqttd`, else `./mqttd-data`.
    pub data_dir: Option<PathBuf>,
    /// Keep retained messages and persistent sessions in the data directory so they survive a
    /// restart or a crash. `false` runs purely in memory. Default true.
    pub persistence: bool,
    /// When acknowledgements wait for the disk. Default batched.
    pub durability: Durability,
    /// Milliseconds between commits in `batched` and `off` modes. 1..=10000, default 5.
    pub batch_ms: u64,
}

impl Default for Storage {
    fn default() -> Storage {
        Storage {
            data_dir: None,
            persistence: true,
            durability: Durability::Batched,
            batch_ms: 5,
        }
    }
}

/// How the store commits, and whether acknowledgements wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Every batch of events the broker handles is committed with fsync before any of its
    /// outputs (PUBACK, PUBREC, CONNACK, deliveries) leave.
    Fsync,
    /// Changes are grouped for `batch_ms` and committed with one fsync; outputs wait for the
    /// commit that covers them.
    #[default]
    Batched,
    /// Outputs leave at once; changes are committed (with fsync) every `batch_ms`. A crash
    /// loses up to `batch_ms` of acknowledged changes.
    Off,
}

impl Durability {
    pub const NAMES: &'static [&'static str] = &["fsync", "batched", "off"];

    pub fn name(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Batched => "batched",
            Durability::Off => "off",
        }
    }

    /// Parses a `--durability` value.
    pub fn parse(text: &str) -> Option<Durability> {
        match text {
            "fsync" => Some(Durability::Fsync),
            "batched" => Some(Durability::Batched),
            "off" => Some(Durability::Off),
            _ => None,
        }
    }
}

impl Storage {
    /// The data directory in force.
    pub fn resolved_data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("mqttd");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join(".local/share/mqttd");
        }
        PathBuf::from("mqttd-data")
    }
}

/// QUIC transport limits, sized so that many connections fit in memory.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quic {
    /// Seconds a QUIC handshake may take. Default 10.
    pub handshake_timeout_secs: u64,
    /// QUIC idle timeout in seconds (transport parameter). MQTT keep alive (1.5x) is enforced
    /// on top of it by the broker. Default 300.
    pub idle_timeout_secs: u64,
    /// Concurrent client-initiated bidirectional streams (control + data). Default 16.
    pub max_bidi_streams: u32,
    /// Concurrent client-initiated unidirectional streams. Default 16.
    pub max_uni_streams: u32,
    /// Per-stream receive window in bytes. Default 262144.
    pub stream_receive_window: u32,
    /// Per-connection receive window in bytes. Default 1048576.
    pub receive_window: u32,
    /// Per-connection send window in bytes. Default 1048576.
    pub send_window: u32,
    /// TLS session tickets (resumption, and the precondition of 0-RTT). Default true.
    pub session_tickets: bool,
    /// Resumption tickets the broker remembers (rustls' stateful cache; one per handshake).
    /// A ticket is usable once: this cache is what makes 0-RTT replay-safe. Default 65536.
    pub session_cache_size: usize,
    /// What MQTT packets arriving as 0-RTT early data may do (`proto-ext/zero-rtt.md`).
    /// Default `safe`.
    pub zero_rtt: ZeroRtt,
    /// Let clients change address mid-connection (NAT rebinding, Wi-Fi to cellular).
    /// Default true.
    pub migration: bool,
    /// Server id carried in plaintext in every connection ID the broker issues (QUIC-LB style,
    /// `proto-ext/migration.md`), as hex: 1 to 11 bytes. `null`: no server id. Default null.
    pub server_id: Option<String>,
    /// Config rotation bits of the first connection-ID octet, 0..=6 (7 means "unroutable" and
    /// is used when `server_id` is null). Default 0.
    pub cid_config_id: u8,
    /// Longest delay, in milliseconds, the broker asks each client to wait before
    /// acknowledging packets (QUIC ACK frequency extension; 0: do not ask, the client's own
    /// default applies, 25 ms for quinn). A client's acknowledgement delay is part of the
    /// broker's probe timeout, which recovers a lost packet that nothing follows; in
    /// `benches/lossy.sh` (steady and quiet topics) 5 ms made no measurable difference, so it
    /// is off by default. Default 0.
    pub ack_delay_ms: u32,
    /// Largest UDP payload, in bytes, that MTU discovery may try and that the endpoint
    /// accepts (QUIC packets start at 1200 bytes and grow as DPLPMTUD confirms the path
    /// carries more). Default 8952: jumbo frames (9000-byte MTU) less IPv6 and UDP headers;
    /// a path with a 1500-byte MTU settles at about 1452 after a few lost probes, and
    /// loopback or a jumbo-frame network sends fewer, larger packets. 1200..=65527.
    pub max_udp_payload: u16,
    /// Address validation: answer every new connection's first packet with a Retry (QUIC's
    /// stateless retry, RFC 9000 8.1.2), so a client proves it receives at its address before
    /// the broker keeps any state or does any TLS work for it. Stops floods from spoofed
    /// addresses; costs every new connection one round trip (and its 0-RTT data is sent
    /// again after the Retry). Default false.
    pub address_validation: bool,
}

/// What MQTT packets that arrive as 0-RTT early data may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZeroRtt {
    /// No 0-RTT: early data is refused at the TLS level (tickets still shorten the handshake).
    Off,
    /// CONNECT, SUBSCRIBE, UNSUBSCRIBE and QoS 0 PUBLISH act at once (CONNACK goes out as
    /// 0.5-RTT data); QoS 1/2 PUBLISH and the will wait until the handshake is confirmed.
    #[default]
    Safe,
    /// Everything in early data acts at once.
    Full,
}

impl ZeroRtt {
    pub const NAMES: &'static [&'static str] = &["off", "safe", "full"];

    pub fn name(self) -> &'static str {
        match self {
            ZeroRtt::Off => "off",
            ZeroRtt::Safe => "safe",
            ZeroRtt::Full => "full",
        }
    }
}

/// Largest `quic.server_id`: with the 1-byte first octet and an 8-byte nonce, a connection ID
/// stays within QUIC's 20 bytes.
pub const MAX_SERVER_ID_LEN: usize = 11;

impl Quic {
    /// `server_id` as bytes (validated by [`Config::validate`]).
    pub fn server_id_bytes(&self) -> Option<Vec<u8>> {
        self.server_id
            .as_deref()
            .and_then(|hex| parse_hex(hex).ok())
    }
}

/// Parses hex (whitespace and `:` ignored) into bytes.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b':')
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err("an odd number of hex digits".into());
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("{:?} is not hex", String::from_utf8_lossy(pair)))
        })
        .collect()
}

impl Default for Quic {
    fn default() -> Self {
        Quic {
            handshake_timeout_secs: 10,
            idle_timeout_secs: 300,
            max_bidi_streams: 16,
            max_uni_streams: 16,
            stream_receive_window: 256 * 1024,
            receive_window: 1024 * 1024,
            send_window: 1024 * 1024,
            session_tickets: true,
            session_cache_size: 65_536,
            zero_rtt: ZeroRtt::Safe,
            migration: true,
            server_id: None,
            cid_config_id: 0,
            ack_delay_ms: 0,
            max_udp_payload: 8952,
            address_validation: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    /// MQTT over TCP; `null` disables it. Default `0.0.0.0:1883`.
    pub tcp: Option<SocketAddr>,
    /// MQTT over QUIC (UDP, ALPN `mqtt`); `null` disables it. Default `0.0.0.0:1884`.
    pub quic: Option<SocketAddr>,
    /// MQTT over TCP + TLS 1.3 (MQTTS, usually port 8883); `null` disables it. Default null.
    pub mqtts: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest packet the broker accepts, in bytes (CONNACK Maximum Packet Size). Default 1 MiB.
    pub max_packet_size: u32,
    /// QoS 1/2 PUBLISH packets a client may have unacknowledged toward the broker (CONNACK
    /// Receive Maximum). Default 1024.
    pub receive_maximum: u16,
    /// Largest keep alive the broker allows, seconds; larger requests are lowered with Server
    /// Keep Alive (5.0). 0 means no limit. Default 0.
    pub max_keep_alive: u16,
    /// Topic aliases a client may use toward the broker (CONNACK Topic Alias Maximum). Default 10 (as mosquitto).
    pub topic_alias_maximum: u16,
    /// Messages queued per session (beyond those inflight) before the overflow policy applies:
    /// QoS 0 messages are dropped first, then the oldest QoS 1/2. Default 10_000.
    pub max_queued_messages: usize,
    /// QoS 1/2 messages inflight toward one client when the client sets no Receive Maximum
    /// (always so for 3.1.1). Default 64.
    pub max_inflight: u16,
    /// Seconds a new connection has to send CONNECT. Default 10.
    pub connect_timeout_secs: u64,
    /// Network connections open at once, all listeners together; beyond it CONNECT gets
    /// CONNACK 0x97 (Quota exceeded). Default 100_000.
    pub max_connections: usize,
    /// Connections open at once from one IP address (0: no limit); beyond it CONNACK 0x97.
    /// Default 1000.
    pub max_connections_per_address: usize,
    /// Sessions, connected or not; a CONNECT that would create one more gets CONNACK 0x97.
    /// Default 1_000_000.
    pub max_sessions: usize,
    /// Subscriptions one session may hold; a SUBSCRIBE beyond it gets SUBACK 0x97 (3.1.1: 0x80)
    /// for the new filters. Default 10_000.
    pub max_subscriptions: usize,
    /// Payload and topic bytes queued per session; beyond it the oldest queued messages are
    /// dropped, as for `max_queued_messages` (a message larger than this alone is not
    /// queued). Default 64 MiB.
    pub max_queued_bytes: usize,
    /// Retained messages stored; a retained message for a new topic beyond it is delivered but
    /// not stored. Default 100_000.
    pub max_retained_messages: usize,
    /// Payload and topic bytes of all retained messages; same policy. Default 256 MiB.
    pub max_retained_bytes: usize,
    /// QUIC: streams a client may open per second (burst: as many); beyond it a stream is
    /// refused with STOP_SENDING. 0: no limit. Default 100.
    pub quic_stream_opens_per_sec: u32,
    /// QUIC: datagrams a client may send per second (burst: as many); beyond it they are
    /// dropped and counted. 0: no limit. Default 1000.
    pub quic_datagrams_per_sec: u32,
    /// Levels a topic name or filter may have (`a/b/c` has 3); deeper ones are refused as
    /// invalid (PUBLISH: DISCONNECT 0x90, SUBSCRIBE: SUBACK 0x8F, will: CONNACK 0x90).
    /// Default 128.
    pub max_topic_levels: usize,
    /// Backpressure: a publisher whose message reaches a connection that is behind on writing
    /// stops being read until that connection catches up, for at most this many milliseconds;
    /// a connection still behind after that holds no publisher again until it catches up (its
    /// QoS 0 deliveries are then dropped, QoS 1/2 queue). 0: never pause publishers, drop
    /// QoS 0 to connections behind at once. Default 1000.
    pub max_publisher_pause_ms: u64,
    /// New connections one IP address may open per second (burst: as many); beyond it a
    /// CONNECT gets CONNACK 0x9F Connection rate exceeded (3.1.1: return code 3) and the
    /// connection is closed. 0: no limit. Default 0 (loopback test rigs and load generators
    /// open thousands per second from one address; set it for public listeners).
    pub max_connection_rate_per_address: u32,
    /// PUBLISH packets one connection may send per second (burst: as many); beyond it the
    /// connection is closed, 5.0 clients first getting DISCONNECT 0x96 Message rate too high.
    /// QoS 0 in QUIC datagrams is bounded by `quic_datagrams_per_sec` instead (dropped, never
    /// closing). 0: no limit. Default 0.
    pub max_publish_rate_per_client: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionDefaults {
    /// Upper bound on the Session Expiry Interval a 5.0 client may request, seconds.
    /// Default 86_400 * 7. MQTT 3.1.1 sessions with clean session = 0 use this value too.
    pub max_session_expiry_secs: u32,
    /// Maximum QoS granted (0, 1, 2). Default 2.
    pub max_qos: u8,
    /// Whether retained messages are supported. Default true.
    pub retain_available: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    /// A `tracing` filter (`RUST_LOG` syntax), used when `RUST_LOG` is not set. Default "info".
    pub level: String,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            tcp: Some(SocketAddr::from(([0, 0, 0, 0], 1883))),
            quic: Some(SocketAddr::from(([0, 0, 0, 0], 1884))),
            mqtts: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            max_keep_alive: 0,
            topic_alias_maximum: 10,
            max_queued_messages: 10_000,
            max_inflight: 64,
            connect_timeout_secs: 10,
            max_connections: 100_000,
            max_connections_per_address: 1000,
            max_sessions: 1_000_000,
            max_subscriptions: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_retained_messages: 100_000,
            max_retained_bytes: 256 * 1024 * 1024,
            quic_stream_opens_per_sec: 100,
            quic_datagrams_per_sec: 1000,
            max_topic_levels: 128,
            max_publisher_pause_ms: 1000,
            max_connection_rate_per_address: 0,
            max_publish_rate_per_client: 0,
        }
    }
}

impl Default for SessionDefaults {
    fn default() -> Self {
        SessionDefaults {
            max_session_expiry_secs: 86_400 * 7,
            max_qos: 2,
            retain_available: true,
        }
    }
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            level: "info".into(),
        }
    }
}

/// A configuration error, naming the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
}

impl Config {
    /// Reads and validates a YAML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Config::from_yaml(&text, path)
    }

    /// Parses and validates YAML text; `file` is only used in error messages.
    ///
    /// An empty document (or one holding only comments) gives [`Config::default`]; so does an
    /// empty section (`limits:` with nothing under it).
    pub fn from_yaml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            message,
        };
        let document: Value =
            serde_yaml::from_str(text).map_err(|error| invalid(yaml_error(text, &error)))?;
        let document = check_document(document).map_err(|problem| invalid(problem.render(text)))?;
        // The schema check above accepts exactly what the derived `Deserialize` accepts, so this
        // only fails if the two drift apart; serde's own message still names the key.
        let config: Config = serde_yaml::from_value(document).map_err(|error| {
            invalid(match serde_yaml::from_str::<Config>(text) {
                Err(located) => located.to_string(),
                Ok(_) => error.to_string(),
            })
        })?;
        config.validate(file)?;
        Ok(config)
    }

    /// Checks ranges that serde cannot (e.g. receive_maximum > 0, max_qos <= 2).
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let fail = |key: &str, value: &dyn std::fmt::Display, expected: &str| {
            Err(ConfigError::Invalid {
                file: file.to_path_buf(),
                message: format!("{key}: invalid value {value}: expected {expected}"),
            })
        };
        let quic = &self.quic;
        let ranges: [(&str, u64, std::ops::RangeInclusive<u64>); 7] = [
            (
                "quic.handshake_timeout_secs",
                quic.handshake_timeout_secs,
                1..=3600,
            ),
            ("quic.idle_timeout_secs", quic.idle_timeout_secs, 1..=86_400),
            (
                "quic.max_bidi_streams",
                quic.max_bidi_streams.into(),
                1..=1024,
            ),
            (
                "quic.max_uni_streams",
                quic.max_uni_streams.into(),
                0..=1024,
            ),
            (
                "quic.stream_receive_window",
                quic.stream_receive_window.into(),
                1024..=u32::MAX.into(),
            ),
            (
                "quic.receive_window",
                quic.receive_window.into(),
                1024..=u32::MAX.into(),
            ),
            (
                "quic.send_window",
                quic.send_window.into(),
                1024..=u32::MAX.into(),
            ),
        ];
        if !(1..=10_000).contains(&self.storage.batch_ms) {
            return fail("storage.batch_ms", &self.storage.batch_ms, "1..=10000");
        }
        for (key, value, range) in ranges {
            if !range.contains(&value) {
                return fail(key, &value, &format!("{}..={}", range.start(), range.end()));
            }
        }
        if !(1..=MAX_SESSION_CACHE).contains(&quic.session_cache_size) {
            return fail(
                "quic.session_cache_size",
                &quic.session_cache_size,
                &format!("1..={MAX_SESSION_CACHE}"),
            );
        }
        if quic.ack_delay_ms > 25 {
            return fail(
                "quic.ack_delay_ms",
                &quic.ack_delay_ms,
                "0..=25 (quinn clamps longer requests to 25 ms)",
            );
        }
        if !(1200..=65527).contains(&quic.max_udp_payload) {
            return fail(
                "quic.max_udp_payload",
                &quic.max_udp_payload,
                "1200..=65527 (QUIC needs 1200; a UDP payload is at most 65527)",
            );
        }
        if self.runtime.worker_threads > MAX_WORKER_THREADS {
            return fail(
                "runtime.worker_threads",
                &self.runtime.worker_threads,
                &format!("0..={MAX_WORKER_THREADS} (0: half the cores)"),
            );
        }
        if quic.cid_config_id > 6 {
            return fail(
                "quic.cid_config_id",
                &quic.cid_config_id,
                "0..=6 (7 marks unroutable connection IDs)",
            );
        }
        if let Some(id) = &quic.server_id {
            let expected = format!("1 to {MAX_SERVER_ID_LEN} bytes of hex, e.g. \"0a01\"");
            match parse_hex(id) {
                Ok(bytes) if (1..=MAX_SERVER_ID_LEN).contains(&bytes.len()) => {}
                Ok(bytes) => {
                    return fail(
                        "quic.server_id",
                        &format!("{id:?} ({} bytes)", bytes.len()),
                        &expected,
                    )
                }
                Err(why) => return fail("quic.server_id", &format!("{id:?} ({why})"), &expected),
            }
        }
        // Both or neither: half a certificate configuration is a mistake, not a request for
        // a generated one.
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) => {
                return fail("tls.key", &"null", "a key file, since tls.cert is set")
            }
            (None, Some(_)) => {
                return fail(
                    "tls.cert",
                    &"null",
                    "a certificate file, since tls.key is set",
                )
            }
            _ => {}
        }
        if self.tls.require_client_cert && self.tls.client_ca.is_none() {
            return fail(
                "tls.require_client_cert",
                &true,
                "false, or tls.client_ca set (client certificates are verified against it)",
            );
        }
        if self.auth.use_identity_as_username && self.tls.client_ca.is_none() {
            return fail(
                "auth.use_identity_as_username",
                &true,
                "false, or tls.client_ca set (identities come from verified client certificates)",
            );
        }
        let limits = &self.limits;
        if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&limits.max_packet_size) {
            return fail(
                "limits.max_packet_size",
                &limits.max_packet_size,
                &format!(
                    "{MIN_PACKET_SIZE}..={MAX_PACKET_SIZE} bytes \
                     ({MAX_PACKET_SIZE} is the MQTT maximum)"
                ),
            );
        }
        if limits.receive_maximum == 0 {
            // MQTT 5.0 3.2.2.3.3: "It is a Protocol Error to include the Receive Maximum value
            // more than once or for it to have the value 0."
            return fail(
                "limits.receive_maximum",
                &limits.receive_maximum,
                "1..=65535 (0 is a protocol error in MQTT 5)",
            );
        }
        if limits.max_queued_messages == 0 {
            return fail(
                "limits.max_queued_messages",
                &limits.max_queued_messages,
                "1 or more",
            );
        }
        if limits.max_inflight == 0 {
            return fail("limits.max_inflight", &limits.max_inflight, "1..=65535");
        }
        if !(1..=MAX_CONNECT_TIMEOUT_SECS).contains(&limits.connect_timeout_secs) {
            return fail(
                "limits.connect_timeout_secs",
                &limits.connect_timeout_secs,
                &format!("1..={MAX_CONNECT_TIMEOUT_SECS} seconds"),
            );
        }
        for (key, value) in [
            ("limits.max_connections", limits.max_connections),
            ("limits.max_sessions", limits.max_sessions),
            ("limits.max_subscriptions", limits.max_subscriptions),
            ("limits.max_retained_messages", limits.max_retained_messages),
            ("limits.max_queued_bytes", limits.max_queued_bytes),
            ("limits.max_retained_bytes", limits.max_retained_bytes),
            ("limits.max_topic_levels", limits.max_topic_levels),
        ] {
            if value == 0 {
                return fail(key, &value, "1 or more");
            }
        }
        if self.session.max_qos > 2 {
            return fail("session.max_qos", &self.session.max_qos, "0, 1 or 2");
        }
        if let Err(why) = check_log_level(&self.log.level) {
            return fail(
                "log.level",
                &format!("{:?}", self.log.level),
                &format!("a tracing filter such as info, debug or \"mqttd=debug,warn\" ({why})"),
            );
        }
        Ok(())
    }
}

/// Smallest `limits.max_packet_size` accepted. Below it even a modest CONNECT would not fit,
/// so a smaller value is a typo that would make the broker refuse every client.
const MIN_PACKET_SIZE: u32 = 64;
/// Largest packet MQTT can express: a 4-byte Remaining Length of 268_435_455 plus the fixed
/// header (1 type byte and 4 length bytes).
const MAX_PACKET_SIZE: u32 = 268_435_460;
/// Largest `limits.connect_timeout_secs` (one day). Beyond that the timeout is meaningless, and
/// a value near `u64::MAX` would overflow `Instant + Duration` in the server.
const MAX_CONNECT_TIMEOUT_SECS: u64 = 86_400;

/// Largest `quic.session_cache_size` (a ticket costs a few hundred bytes).
const MAX_SESSION_CACHE: usize = 16 * 1024 * 1024;

/// Level names `tracing` understands in a filter directive.
const LEVEL_NAMES: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Checks a `log.level` filter: it must parse as an `EnvFilter`, and a bare word must not be a
/// misspelt level (EnvFilter would silently read `inf` as "everything from the target `inf`").
fn check_log_level(level: &str) -> Result<(), String> {
    if level.trim().is_empty() {
        return Err("it is empty; use off to disable logging".into());
    }
    tracing_subscriber::EnvFilter::try_new(level).map_err(|error| error.to_string())?;
    for directive in level.split(',').map(str::trim) {
        let is_bare_word = !directive.is_empty()
            && directive
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_bare_word || LEVEL_NAMES.contains(&directive.to_ascii_lowercase().as_str()) {
            continue;
        }
        if let Some(level_name) = closest(directive, LEVEL_NAMES.iter().copied()) {
            return Err(format!(
                "{directive:?} would be read as a target name; did you mean {level_name}?"
            ));
        }
    }
    Ok(())
}

/// Returns a fully commented configuration listing every key with its default value.
///
/// `mqttd --print-config` prints it, and the README copies it. It parses to exactly
/// [`Config::default`] (a unit test checks this).
pub fn example_yaml() -> &'static str {
    EXAMPLE_YAML
}

const EXAMPLE_YAML: &str = r#"# mqttd configuration.
#
# Every key is optional: the values below are the defaults, and an empty file (or no file)
# gives the same broker. Unknown keys and out-of-range values are errors.
# Check a file with `mqttd check-config FILE`.

listeners:
  # MQTT over TCP, as IP:PORT; null disables it. Quote IPv6 addresses: "[::]:1883".
  # The --tcp command-line flag overrides it.
  tcp: 0.0.0.0:1883
  # MQTT over QUIC (UDP, ALPN mqtt; also mqttv5), as IP:PORT; null disables it.
  # EMQX-family clients default to port 14567; mqttd keeps the original design's 1884.
  # The --quic command-line flag overrides it.
  quic: 0.0.0.0:1884
  # MQTT over TCP + TLS 1.3 (MQTTS; the usual port is 8883) with the same certificate as
  # QUIC; null disables it. The --mqtts command-line flag overrides it.
  mqtts: null

limits:
  # Largest packet the broker accepts, in bytes (CONNACK Maximum Packet Size).
  # 64..=268435460 (the MQTT maximum). Default 1 MiB.
  max_packet_size: 1048576
  # QoS 1/2 PUBLISH packets a client may have unacknowledged toward the broker
  # (CONNACK Receive Maximum). 1..=65535.
  receive_maximum: 1024
  # Largest keep alive the broker allows, in seconds; larger requests are lowered with
  # Server Keep Alive (MQTT 5.0). 0 means no limit.
  max_keep_alive: 0
  # Topic aliases a client may use toward the broker (CONNACK Topic Alias Maximum).
  # 0 disables topic aliases.
  topic_alias_maximum: 10
  # Messages queued per session (beyond those inflight) before the overflow policy applies:
  # QoS 0 messages are dropped first, then the oldest QoS 1/2. At least 1.
  max_queued_messages: 10000
  # QoS 1/2 messages inflight toward one client when the client sets no Receive Maximum
  # (always so for MQTT 3.1.1). 1..=65535.
  max_inflight: 64
  # Seconds a new connection has to send CONNECT. 1..=86400.
  connect_timeout_secs: 10
  # Connections open at once (all listeners) and from one IP address (0: no limit); beyond
  # them CONNECT is answered with CONNACK 0x97 Quota exceeded.
  max_connections: 100000
  max_connections_per_address: 1000
  # Sessions, connected or not; one more is refused with CONNACK 0x97.
  max_sessions: 1000000
  # Subscriptions per session; new ones beyond it get SUBACK 0x97 (3.1.1: 0x80).
  max_subscriptions: 10000
  # Payload + topic bytes queued per session (64 MiB); beyond it the oldest queued messages
  # are dropped (a message larger than this alone is not queued).
  max_queued_bytes: 67108864
  # Retained messages stored, and their payload + topic bytes (256 MiB); a retained message
  # for a new topic beyond them is delivered but not stored.
  max_retained_messages: 100000
  max_retained_bytes: 268435456
  # QUIC: streams opened and datagrams sent per second by one client (0: no limit); extra
  # streams are refused (STOP_SENDING), extra datagrams dropped.
  quic_stream_opens_per_sec: 100
  quic_datagrams_per_sec: 1000
  # Levels a topic or filter may have (a/b/c has 3); deeper ones are invalid (PUBLISH:
  # DISCONNECT 0x90, SUBSCRIBE: SUBACK 0x8F, will topic: CONNACK 0x90).
  max_topic_levels: 128
  # Backpressure: a publisher whose messages reach a subscriber that is behind is not read
  # until the subscriber catches up, for at most this long (ms); a subscriber still behind
  # then stops holding publishers and loses QoS 0 messages (QoS 1/2 queue). 0: never pause.
  max_publisher_pause_ms: 1000
  # New connections per second from one IP address (0: no limit); beyond it CONNACK 0x9F
  # Connection rate exceeded (3.1.1: return code 3).
  max_connection_rate_per_address: 0
  # PUBLISH packets per second from one connection (0: no limit); beyond it the connection is
  # closed (5.0: DISCONNECT 0x96 Message rate too high). Datagrams: quic_datagrams_per_sec.
  max_publish_rate_per_client: 0

session:
  # Upper bound on the Session Expiry Interval an MQTT 5.0 client may request, in seconds
  # (default 7 days). MQTT 3.1.1 sessions with clean session = 0 use this value too.
  max_session_expiry_secs: 604800
  # Maximum QoS granted: 0, 1 or 2.
  max_qos: 2
  # Whether retained messages are supported.
  retain_available: true

runtime:
  # Threads that run connections and the broker (tokio workers); 0: half the cores, at least 1.
  worker_threads: 0

log:
  # A tracing filter in RUST_LOG syntax, e.g. debug or "mqttd=debug,warn".
  # The RUST_LOG environment variable, when set, takes precedence.
  level: info

tls:
  # PEM certificate chain (leaf first) and private key for QUIC. Both or neither: with
  # neither, a self-signed certificate for localhost, 127.0.0.1 and ::1 is generated in the
  # data directory on first start and reused (--cert / --key override these).
  cert: null
  key: null
  # Mutual TLS: PEM CA certificate(s) that client certificates must chain to, on MQTTS and
  # QUIC; null means client certificates are not asked for. QUIC 0-RTT is off with it (early
  # data would come before the handshake that proves the certificate).
  client_ca: null
  # With client_ca: refuse TLS clients without a valid certificate; false makes one optional
  # (verified when presented).
  require_client_cert: false

storage:
  # The broker's data directory; null means $XDG_DATA_HOME/mqttd, else
  # $HOME/.local/share/mqttd, else ./mqttd-data (--data-dir overrides it).
  data_dir: null
  # Keep retained messages and persistent sessions (subscriptions, queued and inflight QoS 1/2
  # messages, pending wills, expiry) in <data_dir>/mqttd.redb, so they survive a restart and a
  # crash. false runs purely in memory (--in-memory).
  persistence: true
  # When acknowledgements wait for the disk (--durability):
  #   fsync:   each batch of events is committed with fsync before its PUBACK/PUBREC/CONNACK
  #            and deliveries leave (slowest, nothing acknowledged is ever lost);
  #   batched: changes are grouped for batch_ms and committed with one fsync; outputs wait
  #            for that commit (nothing acknowledged is lost, acks wait up to batch_ms);
  #   off:     outputs leave at once, changes are committed every batch_ms (a crash loses up
  #            to batch_ms of acknowledged changes).
  durability: batched
  # Milliseconds between commits in batched and off modes. 1..=10000.
  batch_ms: 5

quic:
  # Seconds a QUIC handshake may take. 1..=3600.
  handshake_timeout_secs: 10
  # QUIC idle timeout in seconds; MQTT keep alive (1.5x) is enforced on top. 1..=86400.
  idle_timeout_secs: 300
  # Concurrent client bidirectional streams (control + data streams). 1..=1024.
  max_bidi_streams: 16
  # Concurrent client unidirectional streams. 0..=1024.
  max_uni_streams: 16
  # Receive windows in bytes (per stream, per connection) and the send window. >= 1024.
  stream_receive_window: 262144
  receive_window: 1048576
  send_window: 1048576
  # TLS session tickets: a returning client resumes without the certificate exchange, and
  # may send 0-RTT early data.
  session_tickets: true
  # Tickets remembered (one per handshake, each usable once: see proto-ext/zero-rtt.md).
  # 1..=16777216.
  session_cache_size: 65536
  # MQTT packets in 0-RTT early data: off (no 0-RTT), safe (CONNECT, SUBSCRIBE, UNSUBSCRIBE
  # and QoS 0 PUBLISH act at once and CONNACK goes out as 0.5-RTT data; QoS 1/2 PUBLISH and
  # the will wait for the handshake to be confirmed) or full (everything acts at once).
  zero_rtt: safe
  # Clients may change address mid-connection (NAT rebinding, Wi-Fi to cellular).
  migration: true
  # Server id carried in every connection ID (QUIC-LB plaintext layout, for a load balancer
  # that routes on connection IDs): hex, 1 to 11 bytes, or null. See proto-ext/migration.md.
  server_id: null
  # Config rotation bits of the connection ID's first octet, 0..=6.
  cid_config_id: 0
  # Longest acknowledgement delay asked of clients, ms (QUIC ACK frequency): shorter may
  # recover a lost last packet sooner, with more ACKs. 0: do not ask (client default). 0..=25.
  ack_delay_ms: 0
  # Largest UDP payload MTU discovery may try, bytes (1200..=65527): 8952 fits jumbo frames;
  # paths with a 1500-byte MTU settle at ~1452 by themselves.
  max_udp_payload: 8952
  # Answer each new connection with a QUIC Retry first (stateless address validation against
  # spoofed floods; one more round trip per connection).
  address_validation: false

auth:
  # Password file: `user:$argon2id$...` lines; create and edit it with
  # `mqttd passwd [-c] FILE USER`. With it, a CONNECT with a user name must carry its
  # password (else CONNACK 0x86 / 3.1.1 return code 4).
  password_file: null
  # ACL file (mosquitto syntax plus `deny` and `client` sections: see the README); null
  # allows every client every topic.
  acl_file: null
  # Clients without a user name (or certificate identity): true allows them, false refuses
  # them (CONNACK 0x87 / 5), null is automatic: allowed from loopback addresses only, and only
  # while neither password_file nor use_identity_as_username is set (a first run on a laptop).
  # Without a password file a CONNECT's user name is not verified and counts as anonymous.
  allow_anonymous: null
  # The verified client certificate's CN (else its first SAN) is the user name, for the ACL;
  # needs tls.client_ca. Clients without a certificate go through the password rules.
  use_identity_as_username: false
"#;

// ---------------------------------------------------------------------------------------------
// Schema check.
//
// serde_yaml names the key path of a type error but not the full path of an unknown key, its
// messages speak serde ("invalid type: integer `70000`, expected u16"), and it refuses
// `limits: ~`. So the text is first parsed into a `Value` and walked against `SCHEMA`, which
// reports each problem with its full key path, the valid keys or the valid range, and a hint
// where one helps. The line and column are borrowed from serde_yaml's own error for the same
// problem, when it reports one. A unit test checks that `SCHEMA` lists exactly the fields of
// the structs.
// ---------------------------------------------------------------------------------------------

/// What a leaf value must be; mirrors the Rust type of the field.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// An unsigned integer: the Rust type's name and its largest value.
    Unsigned(&'static str, u64),
    Bool,
    Text,
    /// `Option<SocketAddr>`: `IP:PORT`, or null for "disabled".
    OptionalSocketAddr,
    /// `Option<PathBuf>`: a path, or null.
    OptionalPath,
    /// One of a few words (a unit enum).
    Choice(&'static [&'static str]),
    /// `Option<String>` of hex digits, or null.
    OptionalHex,
    /// `Option<bool>`: true, false, or null for "automatic".
    OptionalBool,
}

const U8: Kind = Kind::Unsigned("u8", u8::MAX as u64);
const U16: Kind = Kind::Unsigned("u16", u16::MAX as u64);
const U32: Kind = Kind::Unsigned("u32", u32::MAX as u64);
const U64: Kind = Kind::Unsigned("u64", u64::MAX);
const USIZE: Kind = Kind::Unsigned("usize", usize::MAX as u64);

/// Every section and key the file may hold, in the order of the struct fields.
const SCHEMA: &[(&str, &[(&str, Kind)])] = &[
    (
        "listeners",
        &[
            ("tcp", Kind::OptionalSocketAddr),
            ("quic", Kind::OptionalSocketAddr),
            ("mqtts", Kind::OptionalSocketAddr),
        ],
    ),
    (
        "limits",
        &[
            ("max_packet_size", U32),
            ("receive_maximum", U16),
            ("max_keep_alive", U16),
            ("topic_alias_maximum", U16),
            ("max_queued_messages", USIZE),
            ("max_inflight", U16),
            ("connect_timeout_secs", U64),
            ("max_connections", USIZE),
            ("max_connections_per_address", USIZE),
            ("max_sessions", USIZE),
            ("max_subscriptions", USIZE),
            ("max_queued_bytes", USIZE),
            ("max_retained_messages", USIZE),
            ("max_retained_bytes", USIZE),
            ("quic_stream_opens_per_sec", U32),
            ("quic_datagrams_per_sec", U32),
            ("max_topic_levels", USIZE),
            ("max_publisher_pause_ms", U64),
            ("max_connection_rate_per_address", U32),
            ("max_publish_rate_per_client", U32),
        ],
    ),
    (
        "session",
        &[
            ("max_session_expiry_secs", U32),
            ("max_qos", U8),
            ("retain_available", Kind::Bool),
        ],
    ),
    ("log", &[("level", Kind::Text)]),
    ("runtime", &[("worker_threads", USIZE)]),
    (
        "tls",
        &[
            ("cert", Kind::OptionalPath),
            ("key", Kind::OptionalPath),
            ("client_ca", Kind::OptionalPath),
            ("require_client_cert", Kind::Bool),
        ],
    ),
    (
        "storage",
        &[
            ("data_dir", Kind::OptionalPath),
            ("persistence", Kind::Bool),
            ("durability", Kind::Choice(Durability::NAMES)),
            ("batch_ms", U64),
        ],
    ),
    (
        "quic",
        &[
            ("handshake_timeout_secs", U64),
            ("idle_timeout_secs", U64),
            ("max_bidi_streams", U32),
            ("max_uni_streams", U32),
            ("stream_receive_window", U32),
            ("receive_window", U32),
            ("send_window", U32),
            ("session_tickets", Kind::Bool),
            ("session_cache_size", USIZE),
            ("zero_rtt", Kind::Choice(ZeroRtt::NAMES)),
            ("migration", Kind::Bool),
            ("server_id", Kind::OptionalHex),
            ("cid_config_id", U8),
            ("ack_delay_ms", U32),
            ("max_udp_payload", U16),
            ("address_validation", Kind::Bool),
        ],
    ),
    (
        "auth",
        &[
            ("password_file", Kind::OptionalPath),
            ("acl_file", Kind::OptionalPath),
            ("allow_anonymous", Kind::OptionalBool),
            ("use_identity_as_username", Kind::Bool),
        ],
    ),
];

/// A problem found by the schema check.
#[derive(Debug)]
struct Problem {
    /// Key path such as `limits.receive_maximum`; empty for the document itself.
    path: String,
    message: String,
    /// How serde_yaml's error for the same problem begins, so its location can be borrowed.
    serde_prefix: Option<String>,
}

impl Problem {
    /// The message with its key path, plus the line and column when serde_yaml knows them.
    fn render(&self, text: &str) -> String {
        let mut out = if self.path.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.path, self.message)
        };
        let located = self.serde_prefix.as_deref().and_then(|prefix| {
            let error = serde_yaml::from_str::<Config>(text).err()?;
            let location = error.location()?;
            error.to_string().starts_with(prefix).then_some(location)
        });
        if let Some(location) = located {
            out.push_str(&format!(
                " at line {} column {}",
                location.line(),
                location.column()
            ));
        }
        out
    }
}

/// Checks the document against `SCHEMA` and returns it ready for serde: empty sections
/// (`limits:` or `limits: ~`) are dropped so they take their defaults.
fn check_document(document: Value) -> Result<Value, Problem> {
    let sections = match document {
        Value::Null => return Ok(Value::Mapping(Mapping::new())),
        Value::Mapping(sections) => sections,
        other => {
            return Err(Problem {
                path: String::new(),
                message: format!(
                    "expected a mapping with the sections {}, found {}",
                    section_names().join(", "),
                    describe(&other)
                ),
                serde_prefix: Some("invalid type".into()),
            })
        }
    };
    let mut checked = Mapping::new();
    for (name, body) in sections {
        let known = name
            .as_str()
            .and_then(|section| Some((section, section_keys(section)?)));
        let Some((section, keys)) = known else {
            return Err(unknown_key("", &name, &section_names()));
        };
        match &body {
            Value::Null => continue,
            Value::Mapping(entries) => check_section(section, keys, entries)?,
            other => {
                return Err(Problem {
                    path: section.into(),
                    message: format!(
                        "expected a mapping with the keys {}, found {}",
                        key_names(keys).join(", "),
                        describe(other)
                    ),
                    serde_prefix: Some(format!("{section}: invalid type")),
                })
            }
        }
        checked.insert(name, body);
    }
    Ok(Value::Mapping(checked))
}

fn check_section(
    section: &str,
    keys: &[(&'static str, Kind)],
    entries: &Mapping,
) -> Result<(), Problem> {
    for (key, value) in entries {
        let known = key
            .as_str()
            .and_then(|key| keys.iter().find(|(name, _)| *name == key));
        let Some(&(name, kind)) = known else {
            return Err(unknown_key(section, key, &key_names(keys)));
        };
        let path = format!("{section}.{name}");
        check_value(kind, value).map_err(|message| Problem {
            serde_prefix: Some(format!("{path}: ")),
            path,
            message,
        })?;
    }
    Ok(())
}

/// Checks one leaf value; the error is the message that follows the key path.
fn check_value(kind: Kind, value: &Value) -> Result<(), String> {
    const ADDRESS: &str =
        "IP:PORT such as 0.0.0.0:1883 or \"[::]:1883\" (host names are not resolved), \
         or null to disable";
    match (kind, value) {
        (Kind::Unsigned(ty, max), Value::Number(number)) => match number.as_u64() {
            Some(n) if n <= max => Ok(()),
            _ => Err(format!("invalid value {number}: expected {ty} (0..={max})")),
        },
        (Kind::Unsigned(ty, max), other) => {
            let hint = match other {
                Value::String(s) if s.replace('_', "").parse::<u64>().is_ok() => {
                    " (write numbers without quotes or `_` separators)"
                }
                _ => "",
            };
            Err(format!(
                "invalid type: expected {ty} (0..={max}), found {}{hint}",
                describe(other)
            ))
        }
        (Kind::Bool, Value::Bool(_)) => Ok(()),
        (Kind::OptionalBool, Value::Bool(_) | Value::Null) => Ok(()),
        (Kind::OptionalBool, other) => Err(format!(
            "invalid type: expected true, false or null, found {}",
            describe(other)
        )),
        (Kind::Bool, other) => Err(format!(
            "invalid type: expected true or false, found {}",
            describe(other)
        )),
        (Kind::Text, Value::String(_)) => Ok(()),
        (Kind::Text, other) => Err(format!(
            "invalid type: expected a string, found {}",
            describe(other)
        )),
        (Kind::OptionalPath, Value::Null) => Ok(()),
        (Kind::OptionalPath, Value::String(s)) if !s.is_empty() => Ok(()),
        (Kind::OptionalPath, other) => Err(format!(
            "invalid value: expected a file path or null, found {}",
            describe(other)
        )),
        (Kind::Choice(words), Value::String(s)) if words.contains(&s.as_str()) => Ok(()),
        (Kind::Choice(words), other) => Err(format!(
            "invalid value {}: expected one of {}",
            match other {
                Value::String(s) => format!("{s:?}"),
                other => describe(other),
            },
            words.join(", ")
        )),
        (Kind::OptionalHex, Value::Null) => Ok(()),
        (Kind::OptionalHex, Value::String(s)) => parse_hex(s)
            .map(|_| ())
            .map_err(|why| format!("invalid value {s:?}: expected hex digits or null ({why})")),
        (Kind::OptionalHex, other) => Err(format!(
            "invalid type: expected a quoted hex string such as \"0a01\", or null, found {}",
            describe(other)
        )),
        (Kind::OptionalSocketAddr, Value::Null) => Ok(()),
        (Kind::OptionalSocketAddr, Value::String(s)) => match s.parse::<SocketAddr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("invalid value {s:?}: expected {ADDRESS}")),
        },
        (Kind::OptionalSocketAddr, other) => {
            let hint = match other {
                Value::Number(_) => " (a port alone is not enough: write 0.0.0.0:PORT)",
                Value::Sequence(_) => " (quote IPv6 addresses: \"[::]:1883\")",
                _ => "",
            };
            Err(format!(
                "invalid type: expected {ADDRESS}, found {}{hint}",
                describe(other)
            ))
        }
    }
}

/// An unknown key under `parent` (empty for the top level), with a suggestion when the key is
/// misspelt or belongs to another section.
fn unknown_key(parent: &str, key: &Value, valid: &[&'static str]) -> Problem {
    let expected = format!("expected one of {}", valid.join(", "));
    let Some(name) = key.as_str() else {
        return Problem {
            path: parent.into(),
            message: format!(
                "unexpected key {}: keys are names; {expected}",
                describe(key)
            ),
            serde_prefix: None,
        };
    };
    let elsewhere = SCHEMA.iter().find_map(|(section, keys)| {
        (*section != parent && keys.iter().any(|(k, _)| *k == name))
            .then(|| format!("{section}.{name}"))
    });
    let hint = elsewhere.or_else(|| closest(name, valid.iter().copied()).map(str::to_string));
    let hint = hint.map_or(String::new(), |h| format!(" (did you mean {h}?)"));
    let (path, serde_prefix) = if parent.is_empty() {
        (name.to_string(), format!("unknown field `{name}`"))
    } else {
        (
            format!("{parent}.{name}"),
            format!("{parent}: unknown field `{name}`"),
        )
    };
    Problem {
        path,
        message: format!("unknown key{hint}; {expected}"),
        serde_prefix: Some(serde_prefix),
    }
}

fn section_names() -> Vec<&'static str> {
    SCHEMA.iter().map(|(name, _)| *name).collect()
}

fn section_keys(name: &str) -> Option<&'static [(&'static str, Kind)]> {
    SCHEMA
        .iter()
        .find(|(section, _)| *section == name)
        .map(|(_, keys)| *keys)
}

fn key_names(keys: &[(&'static str, Kind)]) -> Vec<&'static str> {
    keys.iter().map(|(name, _)| *name).collect()
}

/// A short description of a YAML value for "found ..." messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Sequence(_) => "a sequence".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(tagged) => format!("a value tagged {}", tagged.tag),
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .map(|candidate| (edit_distance(&word, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 4).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Message for text that is not valid YAML, with serde_yaml's line and column.
fn yaml_error(text: &str, syntax: &serde_yaml::Error) -> String {
    let mut message = format!("invalid YAML: {syntax}");
    // An unquoted IPv6 address (`tcp: [::]:1883`) is a syntax error, as `[` opens a flow
    // sequence. serde_yaml, reading the text straight into `Config`, stops earlier, at the
    // sequence where an address belongs: use that to say what to do.
    if let Err(schema) = serde_yaml::from_str::<Config>(text) {
        let schema = schema.to_string();
        if let Some((path, _)) = schema
            .split_once(": ")
            .filter(|_| schema.contains("sequence, expected socket address"))
        {
            message.push_str(&format!(
                "; {path}: quote IPv6 addresses, e.g. \"[::]:1883\""
            ));
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "mqttd.yaml";

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, Path::new(FILE))
    }

    /// The full error text, as `mqttd` prints it.
    fn error(text: &str) -> String {
        match load(text) {
            Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    fn assert_error(text: &str, expected: &[&str]) {
        let message = error(text);
        assert!(message.starts_with("mqttd.yaml: "), "{message}");
        for part in expected {
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
    }

    #[test]
    fn defaults_are_the_documented_values() {
        let config = Config::default();
        assert_eq!(config.listeners.tcp, Some("0.0.0.0:1883".parse().unwrap()));
        assert_eq!(config.limits.max_packet_size, 1_048_576);
        assert_eq!(config.limits.receive_maximum, 1024);
        assert_eq!(config.limits.max_keep_alive, 0);
        assert_eq!(config.limits.topic_alias_maximum, 10);
        assert_eq!(config.limits.max_queued_messages, 10_000);
        assert_eq!(config.limits.max_inflight, 64);
        assert_eq!(config.limits.connect_timeout_secs, 10);
        assert_eq!(config.limits.max_connections, 100_000);
        assert_eq!(config.limits.max_connections_per_address, 1000);
        assert_eq!(config.limits.max_sessions, 1_000_000);
        assert_eq!(config.limits.max_subscriptions, 10_000);
        assert_eq!(config.limits.max_queued_bytes, 64 << 20);
        assert_eq!(config.limits.max_retained_messages, 100_000);
        assert_eq!(config.limits.max_retained_bytes, 256 << 20);
        assert_eq!(config.limits.quic_stream_opens_per_sec, 100);
        assert_eq!(config.limits.quic_datagrams_per_sec, 1000);
        assert_eq!(config.limits.max_topic_levels, 128);
        assert_eq!(config.session.max_session_expiry_secs, 604_800);
        assert_eq!(config.session.max_qos, 2);
        assert!(config.session.retain_available);
        assert_eq!(config.log.level, "info");
        config.validate(Path::new(FILE)).unwrap();
    }

    #[test]
    fn empty_and_comment_only_files_give_the_defaults() {
        for text in [
            "",
            "\n\n",
            "   \n",
            "# nothing here\n# at all\n",
            "---\n",
            "---\n# c\n",
        ] {
            assert_eq!(load(text).unwrap(), Config::default(), "{text:?}");
        }
    }

    #[test]
    fn empty_sections_give_their_defaults() {
        let text = "listeners:\nlimits:\nsession: ~\nlog: null\n";
        assert_eq!(load(text).unwrap(), Config::default());
    }

    #[test]
    fn every_key_can_be_set() {
        let text = "
listeners:
  tcp: 127.0.0.1:18830
limits:
  max_packet_size: 65536
  receive_maximum: 100
  max_keep_alive: 600
  topic_alias_maximum: 0
  max_queued_messages: 500
  max_inflight: 32
  connect_timeout_secs: 5
session:
  max_session_expiry_secs: 3600
  max_qos: 1
  retain_available: false
log:
  level: mqttd=debug,warn
";
        let expected = Config {
            listeners: Listeners {
                tcp: Some("127.0.0.1:18830".parse().unwrap()),
                ..Listeners::default()
            },
            limits: Limits {
                max_packet_size: 65_536,
                receive_maximum: 100,
                max_keep_alive: 600,
                topic_alias_maximum: 0,
                max_queued_messages: 500,
                max_inflight: 32,
                connect_timeout_secs: 5,
                ..Limits::default()
            },
            session: SessionDefaults {
                max_session_expiry_secs: 3600,
                max_qos: 1,
                retain_available: false,
            },
            log: Logging {
                level: "mqttd=debug,warn".into(),
            },
            ..Config::default()
        };
        assert_eq!(load(text).unwrap(), expected);
    }

    #[test]
    fn abuse_limits_can_be_set_and_are_checked() {
        let text = "limits:\n  max_connections: 5\n  max_connections_per_address: 0\n  \
                    max_sessions: 7\n  max_subscriptions: 3\n  max_queued_bytes: 2000000\n  \
                    max_retained_messages: 9\n  max_retained_bytes: 1048576\n  \
                    quic_stream_opens_per_sec: 0\n  quic_datagrams_per_sec: 10\n";
        let l = load(text).unwrap().limits;
        assert_eq!(
            (
                l.max_connections,
                l.max_connections_per_address,
                l.max_sessions
            ),
            (5, 0, 7)
        );
        assert_eq!((l.max_subscriptions, l.max_queued_bytes), (3, 2_000_000));
        assert_eq!(
            (l.max_retained_messages, l.max_retained_bytes),
            (9, 1 << 20)
        );
        assert_eq!(
            (l.quic_stream_opens_per_sec, l.quic_datagrams_per_sec),
            (0, 10)
        );
        assert_error(
            "limits:\n  max_connections: 0\n",
            &["limits.max_connections: invalid value 0: expected 1 or more"],
        );
        assert_error(
            "limits:\n  max_queued_bytes: 0\n",
            &["limits.max_queued_bytes: invalid value 0: expected 1 or more"],
        );
    }

    #[test]
    fn a_partial_section_keeps_the_other_defaults() {
        let config = load("limits:\n  max_inflight: 8\n").unwrap();
        let mut expected = Config::default();
        expected.limits.max_inflight = 8;
        assert_eq!(config, expected);
    }

    #[test]
    fn example_yaml_parses_to_the_defaults() {
        assert_eq!(load(example_yaml()).unwrap(), Config::default());
    }

    #[test]
    fn example_yaml_lists_every_key() {
        let document: Value = serde_yaml::from_str(example_yaml()).unwrap();
        for (section, keys) in SCHEMA {
            for (key, _) in *keys {
                assert!(
                    document.get(section).and_then(|s| s.get(key)).is_some(),
                    "example_yaml() lacks {section}.{key}"
                );
            }
        }
    }

    #[test]
    fn unknown_top_level_key() {
        assert_error(
            "limits:\n  max_inflight: 8\nlimitz:\n  max_inflight: 8\n",
            &[
                "limitz: unknown key (did you mean limits?)",
                "expected one of listeners, limits, session, log",
                "at line 3 column 1",
            ],
        );
    }

    #[test]
    fn unknown_nested_key_names_the_full_path_and_the_valid_keys() {
        assert_error(
            "limits:\n  foo: 1\n",
            &[
                "mqttd.yaml: limits.foo: unknown key; expected one of max_packet_size, \
                 receive_maximum, max_keep_alive, topic_alias_maximum, max_queued_messages, \
                 max_inflight, connect_timeout_secs, max_connections, \
                 max_connections_per_address, max_sessions, max_subscriptions, \
                 max_queued_bytes, max_retained_messages, max_retained_bytes, \
                 quic_stream_opens_per_sec, quic_datagrams_per_sec, max_topic_levels, \
                 max_publisher_pause_ms, max_connection_rate_per_address, \
                 max_publish_rate_per_client at line 2 column 3",
            ],
        );
        assert_error(
            "limits:\n  receive_maxim: 10\n",
            &["limits.receive_maxim: unknown key (did you mean receive_maximum?)"],
        );
        assert_error(
            "log:\n  level: info\n  format: json\n",
            &["log.format: unknown key; expected one of level", "line 3"],
        );
    }

    #[test]
    fn a_key_in_the_wrong_section_points_to_the_right_one() {
        assert_error(
            "limits:\n  max_qos: 1\n",
            &["limits.max_qos: unknown key (did you mean session.max_qos?)"],
        );
        assert_error(
            "receive_maximum: 1\n",
            &["receive_maximum: unknown key (did you mean limits.receive_maximum?)"],
        );
    }

    #[test]
    fn a_non_string_key_is_an_error() {
        assert_error(
            "limits:\n  1: 2\n",
            &["limits: unexpected key number 1", "expected one of"],
        );
    }

    #[test]
    fn wrong_types_name_the_key_path() {
        assert_error(
            "limits:\n  receive_maximum: 70000\n",
            &["mqttd.yaml: limits.receive_maximum: invalid value 70000: \
               expected u16 (0..=65535) at line 2 column 20"],
        );
        assert_error(
            "limits:\n  max_inflight: lots\n",
            &[
                "limits.max_inflight: invalid type: expected u16 (0..=65535), \
                 found string \"lots\"",
                "line 2",
            ],
        );
        assert_error(
            "limits:\n  max_queued_messages: 10_000\n",
            &[
                "limits.max_queued_messages: invalid type",
                "without quotes or `_` separators",
            ],
        );
        assert_error(
            "limits:\n  connect_timeout_secs: -1\n",
            &["limits.connect_timeout_secs: invalid value -1: expected u64"],
        );
        assert_error(
            "limits:\n  max_packet_size: 1.5\n",
            &["limits.max_packet_size: invalid value 1.5: expected u32 (0..=4294967295)"],
        );
        assert_error(
            "session:\n  max_qos: 300\n",
            &["session.max_qos: invalid value 300: expected u8 (0..=255)"],
        );
        assert_error(
            "session:\n  retain_available: yes\n",
            &["session.retain_available: invalid type: \
               expected true or false, found string \"yes\""],
        );
        assert_error(
            "log:\n  level: 3\n",
            &["log.level: invalid type: expected a string, found number 3"],
        );
        assert_error(
            "limits: 5\n",
            &[
                "limits: expected a mapping with the keys max_packet_size,",
                "found number 5",
                "line 1",
            ],
        );
        assert_error(
            "- limits\n",
            &[
                "expected a mapping with the sections listeners, limits, session, log, runtime, tls, storage, quic, auth, \
               found a sequence",
            ],
        );
    }

    #[test]
    fn null_tcp_disables_tcp() {
        assert_eq!(
            load("listeners:\n  tcp: null\n").unwrap().listeners.tcp,
            None
        );
        assert_eq!(load("listeners:\n  tcp: ~\n").unwrap().listeners.tcp, None);
        assert_eq!(load("listeners:\n  tcp:\n").unwrap().listeners.tcp, None);
    }

    #[test]
    fn ipv6_listener_address() {
        let config = load("listeners:\n  tcp: \"[::1]:1883\"\n").unwrap();
        assert_eq!(config.listeners.tcp, Some("[::1]:1883".parse().unwrap()));
    }

    #[test]
    fn bad_socket_addresses_name_listeners_tcp() {
        assert_error(
            "listeners:\n  tcp: localhost:1883\n",
            &[
                "mqttd.yaml: listeners.tcp: invalid value \"localhost:1883\": expected IP:PORT",
                "line 2 column 8",
            ],
        );
        assert_error(
            "listeners:\n  tcp: 1883\n",
            &[
                "listeners.tcp: invalid type",
                "found number 1883",
                "a port alone is not enough",
            ],
        );
        // Unquoted, `[::]` starts a YAML flow sequence.
        assert_error(
            "listeners:\n  tcp: [::]:1883\n",
            &["listeners.tcp", "quote IPv6 addresses", "line 2"],
        );
        assert_error(
            "listeners:\n  tcp: [\"::\", 1883]\n",
            &[
                "listeners.tcp: invalid type",
                "found a sequence",
                "quote IPv6 addresses",
            ],
        );
    }

    #[test]
    fn yaml_syntax_errors_name_the_file_and_position() {
        assert_error("limits:\n  max_inflight: [1\n", &["invalid YAML", "line"]);
        assert_error(
            "limits:\n  max_inflight: 1\n  max_inflight: 2\n",
            &["invalid YAML", "duplicate", "max_inflight", "line 2"],
        );
    }

    #[test]
    fn validate_rejects_each_out_of_range_value() {
        let cases: &[(&str, &[&str])] = &[
            (
                "limits:\n  receive_maximum: 0\n",
                &["mqttd.yaml: limits.receive_maximum: invalid value 0: expected 1..=65535"],
            ),
            (
                "limits:\n  max_packet_size: 63\n",
                &["limits.max_packet_size: invalid value 63: expected 64..=268435460"],
            ),
            (
                "limits:\n  max_packet_size: 268435461\n",
                &["limits.max_packet_size: invalid value 268435461: expected 64..=268435460"],
            ),
            (
                "runtime:\n  worker_threads: 1025\n",
                &["runtime.worker_threads: invalid value 1025: expected 0..=1024 (0: half the cores)"],
            ),
            (
                "session:\n  max_qos: 3\n",
                &["session.max_qos: invalid value 3: expected 0, 1 or 2"],
            ),
            (
                "limits:\n  max_queued_messages: 0\n",
                &["limits.max_queued_messages: invalid value 0: expected 1 or more"],
            ),
            (
                "limits:\n  max_inflight: 0\n",
                &["limits.max_inflight: invalid value 0: expected 1..=65535"],
            ),
            (
                "limits:\n  connect_timeout_secs: 0\n",
                &["limits.connect_timeout_secs: invalid value 0: expected 1..=86400 seconds"],
            ),
            (
                "limits:\n  connect_timeout_secs: 18446744073709551615\n",
                &["limits.connect_timeout_secs: invalid value 18446744073709551615"],
            ),
            (
                "log:\n  level: \"info=bogus\"\n",
                &["log.level: invalid value \"info=bogus\": expected a tracing filter"],
            ),
            (
                "log:\n  level: \"\"\n",
                &["log.level: invalid value \"\"", "empty"],
            ),
            (
                "log:\n  level: inf0\n",
                &["log.level: invalid value \"inf0\"", "did you mean info?"],
            ),
        ];
        for (text, expected) in cases {
            assert_error(text, expected);
        }
    }

    #[test]
    fn validate_accepts_the_bounds() {
        let text = "limits:\n  max_packet_size: 64\n  receive_maximum: 1\n  max_inflight: 1\n  \
                    max_queued_messages: 1\n  connect_timeout_secs: 86400\n\
                    session:\n  max_qos: 0\n";
        load(text).unwrap();
        load("limits:\n  max_packet_size: 268435460\n  receive_maximum: 65535\n").unwrap();
        let runtime = load("runtime:\n  worker_threads: 1024\n").unwrap().runtime;
        assert_eq!(runtime.worker_threads_for(2), 1024);
        let auto = Runtime::default();
        assert_eq!(
            (
                auto.worker_threads_for(1),
                auto.worker_threads_for(2),
                auto.worker_threads_for(8)
            ),
            (1, 1, 4)
        );
        for level in [
            "off",
            "trace",
            "WARN",
            "mqttd",
            "mqttd::codec=trace,info",
            "mqttd[conn]=debug",
        ] {
            load(&format!("log:\n  level: {level:?}\n")).unwrap();
        }
    }

    #[test]
    fn validate_names_the_file_it_is_given() {
        let mut config = Config::default();
        config.session.max_qos = 7;
        let error = config
            .validate(Path::new("/etc/mqttd/broker.yaml"))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "/etc/mqttd/broker.yaml: session.max_qos: invalid value 7: expected 0, 1 or 2"
        );
    }

    #[test]
    fn from_file_reads_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.yaml");
        std::fs::write(&path, "limits:\n  max_inflight: 9\n").unwrap();
        assert_eq!(Config::from_file(&path).unwrap().limits.max_inflight, 9);

        std::fs::write(&path, "limits:\n  nope: 9\n").unwrap();
        let message = Config::from_file(&path).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("{}: limits.nope", path.display())),
            "{message}"
        );

        let missing = dir.path().join("missing.yaml");
        let error = Config::from_file(&missing).unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }), "{error:?}");
        assert!(
            error.to_string().contains("missing.yaml: cannot read"),
            "{error}"
        );
    }

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            closest(
                "recieve_maximum",
                ["receive_maximum", "max_inflight"].into_iter()
            ),
            Some("receive_maximum")
        );
        assert_eq!(closest("colour", ["listeners", "limits"].into_iter()), None);
    }

    /// Field names of a struct, read from its derived `Deserialize` (which hands them to
    /// `deserialize_struct`), so the test cannot drift from the structs.
    fn fields_of<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
        use serde::de::{self, Visitor};
        struct Fields<'a>(&'a mut &'static [&'static str]);
        impl<'de> de::Deserializer<'de> for Fields<'_> {
            type Error = de::value::Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("not a struct"))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                *self.0 = fields;
                Err(de::Error::custom("fields recorded"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }
        let mut fields: &'static [&'static str] = &[];
        let _ = T::deserialize(Fields(&mut fields));
        fields
    }

    #[test]
    fn schema_matches_the_structs() {
        assert_eq!(fields_of::<Config>(), section_names().as_slice());
        let sections = [
            fields_of::<Listeners>(),
            fields_of::<Limits>(),
            fields_of::<SessionDefaults>(),
            fields_of::<Logging>(),
            fields_of::<Runtime>(),
            fields_of::<Tls>(),
            fields_of::<Storage>(),
            fields_of::<Quic>(),
            fields_of::<Auth>(),
        ];
        for ((name, keys), fields) in SCHEMA.iter().zip(sections) {
            assert_eq!(fields, key_names(keys).as_slice(), "section {name}");
        }
    }

    #[test]
    fn schema_kinds_match_the_field_types() {
        // Each kind accepts its type's extremes and serde agrees; one past them is refused.
        for (section, keys) in SCHEMA {
            for (key, kind) in *keys {
                let valid = match kind {
                    Kind::Unsigned(_, max) => max.to_string(),
                    Kind::Bool => "false".into(),
                    Kind::Text => "x".into(),
                    Kind::OptionalSocketAddr => "\"[::1]:1\"".into(),
                    Kind::OptionalPath => "/tmp/x.pem".into(),
                    Kind::Choice(words) => words[words.len() - 1].into(),
                    Kind::OptionalHex => "\"0a01\"".into(),
                    Kind::OptionalBool => "true".into(),
                };
                let text = format!("{section}:\n  {key}: {valid}\n");
                let document: Value = serde_yaml::from_str(&text).unwrap();
                let document = check_document(document).unwrap();
                serde_yaml::from_value::<Config>(document).unwrap_or_else(|e| {
                    panic!("{section}.{key}: schema accepts {valid}, serde does not: {e}")
                });
                if let Kind::Unsigned(_, max) = kind {
                    if let Some(over) = max.checked_add(1) {
                        let text = format!("{section}:\n  {key}: {over}\n");
                        assert!(serde_yaml::from_str::<Config>(&text).is_err());
                        assert!(check_document(serde_yaml::from_str(&text).unwrap()).is_err());
                    }
                }
            }
        }
    }
    #[test]
    fn storage_keys() {
        let config =
            load("storage:\n  persistence: false\n  durability: fsync\n  batch_ms: 20\n").unwrap();
        assert!(!config.storage.persistence);
        assert_eq!(config.storage.durability, Durability::Fsync);
        assert_eq!(config.storage.batch_ms, 20);
        let err = load("storage:\n  batch_ms: 0\n").unwrap_err().to_string();
        assert!(err.contains("storage.batch_ms: invalid value 0"), "{err}");
        let err = load("storage:\n  durability: never\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.durability"), "{err}");
    }

    #[test]
    fn zero_rtt_migration_and_mqtts_keys() {
        let config = Config::default();
        assert_eq!(config.quic.zero_rtt, ZeroRtt::Safe);
        assert!(config.quic.session_tickets && config.quic.migration);
        assert_eq!(config.quic.session_cache_size, 65_536);
        assert_eq!(config.quic.server_id, None);
        assert_eq!(config.listeners.mqtts, None, "MQTTS is opt-in");
        let config = load(
            "listeners:\n  mqtts: 127.0.0.1:8883\nquic:\n  zero_rtt: full\n  session_tickets: false\n  \
             session_cache_size: 10\n  server_id: \"0a:01\"\n  cid_config_id: 6\n  migration: false\n",
        )
        .unwrap();
        assert_eq!(
            config.listeners.mqtts,
            Some("127.0.0.1:8883".parse().unwrap())
        );
        assert_eq!(config.quic.zero_rtt, ZeroRtt::Full);
        assert!(!config.quic.session_tickets && !config.quic.migration);
        assert_eq!(config.quic.server_id_bytes(), Some(vec![0x0a, 0x01]));
        assert_eq!(
            load("quic:\n  zero_rtt: off\n").unwrap().quic.zero_rtt,
            ZeroRtt::Off
        );
        assert_error(
            "quic:\n  zero_rtt: sometimes\n",
            &["quic.zero_rtt: invalid value \"sometimes\": expected one of off, safe, full"],
        );
        assert_error(
            "quic:\n  server_id: \"0g\"\n",
            &["quic.server_id: invalid value \"0g\"", "hex"],
        );
        assert_error(
            "quic:\n  server_id: \"000102030405060708090a0b\"\n",
            &[
                "quic.server_id: invalid value",
                "(12 bytes)",
                "1 to 11 bytes",
            ],
        );
        assert_error(
            "quic:\n  server_id: 12\n",
            &["quic.server_id: invalid type", "quoted hex"],
        );
        assert_error(
            "quic:\n  max_udp_payload: 1199\n",
            &["quic.max_udp_payload: invalid value 1199: expected 1200..=65527"],
        );
        assert_error(
            "quic:\n  max_udp_payload: 65528\n",
            &["quic.max_udp_payload: invalid value 65528"],
        );
        assert_error(
            "quic:\n  cid_config_id: 7\n",
            &["quic.cid_config_id: invalid value 7: expected 0..=6"],
        );
        assert_error(
            "quic:\n  ack_delay_ms: 30\n",
            &["quic.ack_delay_ms: invalid value 30: expected 0..=25"],
        );
        assert_error(
            "quic:\n  session_cache_size: 0\n",
            &["quic.session_cache_size: invalid value 0"],
        );
        assert_eq!(parse_hex("0A ff").unwrap(), vec![0x0a, 0xff]);
        assert!(parse_hex("abc").is_err());
    }

    #[test]
    fn quic_and_tls_sections() {
        let config = load("listeners:\n  quic: 127.0.0.1:14567\ntls:\n  cert: c.pem\n  key: k.pem\nquic:\n  max_bidi_streams: 32\n").unwrap();
        assert_eq!(
            config.listeners.quic,
            Some("127.0.0.1:14567".parse().unwrap())
        );
        assert_eq!(config.tls.cert.as_deref(), Some(Path::new("c.pem")));
        assert_eq!(config.quic.max_bidi_streams, 32);
        let err = load("tls:\n  cert: c.pem\n").unwrap_err().to_string();
        assert!(err.contains("tls.key"), "{err}");
        let err = load("quic:\n  max_bidi_streams: 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("quic.max_bidi_streams") && err.contains("1..=1024"),
            "{err}"
        );
        let err = load("storage:\n  data_dir: 3\n").unwrap_err().to_string();
        assert!(err.contains("storage.data_dir"), "{err}");
    }
}
