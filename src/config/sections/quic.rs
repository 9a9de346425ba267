//! `quic:` QUIC transport parameters, 0-RTT, migration and connection IDs.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::ipnet::IpNetwork;

/// QUIC transport limits, sized so that many connections fit in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(deserialize_with = "optional_hex")]
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
    /// loopback or a jumbo-frame network sends fewer, larger packets. A client on this host
    /// (127.0.0.0/8, ::1), whose path is the kernel's loopback, gets packets of this size
    /// from the start, with no probes. 1200..=65527.
    pub max_udp_payload: u16,
    /// Largest UDP payload, in bytes, the broker tells clients it accepts (the
    /// `max_udp_payload_size` transport parameter): it bounds the packets clients send, and
    /// so the MTU probes their path MTU discovery tries toward the broker. A probe is that
    /// many bytes of padding that the broker receives, decrypts and parses a frame per byte
    /// (quinn); on a path that carries jumbo packets (loopback) a client with a high upper
    /// bound sends about nine, up to 72 KB: with 8952 here a QUIC connection cost the broker
    /// twice the CPU of one with 1472 (README "Handshakes"). 1472 is what a 1500-byte MTU
    /// carries, so clients on ordinary networks lose nothing. What the broker sends is
    /// `max_udp_payload`. null: `max_udp_payload`. 1200..=65527. Default 1472.
    pub max_udp_payload_accepted: Option<u16>,
    /// Receive buffer of the listener's UDP socket, bytes (`SO_RCVBUF`; 0: the kernel's
    /// default, 208 KiB on Linux). One socket takes every client's packets: with the default,
    /// 100 clients connecting at once overflowed it and each dropped Initial cost its client a
    /// one-second retransmission (README "QUIC against TCP and MQTTS"). Linux caps the value
    /// at `net.core.rmem_max` unless the broker has CAP_NET_ADMIN (then `SO_RCVBUFFORCE`);
    /// the broker warns when it got less. Default 4 MiB.
    pub udp_receive_buffer: u32,
    /// Send buffer of the listener's UDP socket, bytes (`SO_SNDBUF`; 0: the kernel's
    /// default). Capped at `net.core.wmem_max`. Default 4 MiB.
    pub udp_send_buffer: u32,
    /// Address validation: answer every new connection's first packet with a Retry (QUIC's
    /// stateless retry, RFC 9000 8.1.2), so a client proves it receives at its address before
    /// the broker keeps any state or does any TLS work for it. Stops floods from spoofed
    /// addresses; costs every new connection one round trip (and its 0-RTT data is sent
    /// again after the Retry). Default false.
    pub address_validation: bool,
    /// MQTT over WebTransport for browsers: ALPN `h3` on this endpoint too, a session at
    /// `websocket.path` (`proto-ext/webtransport.md`). Default false.
    pub webtransport: bool,
    /// Present a generated ECDSA P-256 certificate valid for 13 days (rotated every 6) to
    /// WebTransport clients, so Chromium accepts it by hash (logged, and served by the
    /// WebSocket listeners at `/.well-known/mqttd-webtransport-cert-hash`). For development;
    /// production uses a CA-signed `tls.cert`. Default false.
    pub webtransport_dev_cert: bool,
    /// qlog on demand: a directory where each selected connection writes its qlog trace
    /// (JSON-SEQ, `.sqlog`, which qvis opens). `null`: no qlog (quinn then records nothing).
    /// Default null.
    pub qlog_dir: Option<PathBuf>,
    /// Which connections are traced when `qlog_dir` is set: those whose CONNECT carries one of
    /// these client ids, or that come from one of `qlog_addresses`; both empty: every
    /// connection. Default empty.
    pub qlog_client_ids: Vec<String>,
    /// Addresses or networks (`"10.0.0.0/8"`) whose connections are traced. Default empty.
    pub qlog_addresses: Vec<IpNetwork>,
}

/// What MQTT packets that arrive as 0-RTT early data may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
    /// `server_id` as bytes (validated by [`Config::validate`](crate::config::Config::validate)).
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
            max_udp_payload_accepted: Some(1472),
            udp_receive_buffer: 4 * 1024 * 1024,
            udp_send_buffer: 4 * 1024 * 1024,
            address_validation: false,
            webtransport: false,
            webtransport_dev_cert: false,
            qlog_dir: None,
            qlog_client_ids: Vec::new(),
            qlog_addresses: Vec::new(),
        }
    }
}

/// Reads `quic.server_id` as text or null. The hex digits are checked by validation; this only
/// says, for an unquoted number such as `12`, that the id must be quoted.
fn optional_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct OptionalHex;
    impl<'de> Visitor<'de> for OptionalHex {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a quoted hex string such as \"0a01\", or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Some(text.to_owned()))
        }
    }
    d.deserialize_option(OptionalHex)
}
