//! Checks that serde cannot express: ranges, and relations between keys (`tls.cert` needs
//! `tls.key`). Each failure names the key, the value and what is expected.

use std::path::Path;

use super::explain::closest;
use super::sections;
use super::{parse_hex, Config, ConfigError, MAX_SERVER_ID_LEN, MAX_WORKER_THREADS};

impl Config {
    /// Checks ranges that serde cannot (e.g. receive_maximum > 0, max_qos <= 2).
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let fail = |key: &str, value: &dyn std::fmt::Display, expected: &str| {
            Err(ConfigError::Invalid {
                file: file.to_path_buf(),
                message: format!("{key}: invalid value {value}: expected {expected}"),
            })
        };
        sections::bridges::check(&self.bridges).map_err(|message| ConfigError::Invalid {
            file: file.to_path_buf(),
            message,
        })?;
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
        if let Some(accepted) = quic.max_udp_payload_accepted {
            if !(1200..=65527).contains(&accepted) {
                return fail(
                    "quic.max_udp_payload_accepted",
                    &accepted,
                    "1200..=65527 or null",
                );
            }
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
        for (key, path) in [
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("tls.client_ca", &self.tls.client_ca),
            ("storage.data_dir", &self.storage.data_dir),
            ("auth.password_file", &self.auth.password_file),
            ("auth.acl_file", &self.auth.acl_file),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return fail(key, &"\"\"", "a file path or null");
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
        if let Err((key, value, expected)) = self.admin.check() {
            return fail(key, &value, expected);
        }
        if let Err((key, value, expected)) = self.cluster.check() {
            return fail(key, &value, expected);
        }
        if let Err(why) = check_log_level(&self.log.level) {
            return fail(
                "log.level",
                &format!("{:?}", self.log.level),
                &format!("a tracing filter such as info, debug or \"mqttd=debug,warn\" ({why})"),
            );
        }
        let path = &self.websocket.path;
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return fail(
                "websocket.path",
                &format!("{path:?}"),
                "an HTTP path starting with / such as /mqtt",
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::tests::{assert_error, load};
    use super::super::*;

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
            "quic:\n  max_udp_payload_accepted: 1000\n",
            &["quic.max_udp_payload_accepted: invalid value 1000: expected 1200..=65527 or null"],
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
