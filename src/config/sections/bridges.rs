//! The `bridges:` list of the configuration file: one entry per remote broker (run by
//! `crate::bridge`).
//!
//! Plain serde types with `deny_unknown_fields` and defaults, plus [`check`], which refuses
//! what serde cannot see (an empty address list, a bad topic filter, a duplicate name) with a
//! message that names the bridge and the key.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One bridge: a remote broker and the topics forwarded to and from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Names the bridge in logs, in `$SYS/broker/connection/<name>/state` and in the default
    /// client ids. Letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// `host:port` of the remote broker; more than one: tried in order (failover).
    pub addresses: Vec<String>,
    #[serde(default)]
    pub transport: BridgeTransport,
    /// `5` (default) or `3.1.1`.
    #[serde(default, deserialize_with = "version")]
    pub version: BridgeVersion,
    /// The client id at the remote broker. Default `mqttd-bridge-<name>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The client id of the bridge's session in this broker. Default `$bridge/<name>`.
    #[serde(default)]
    pub local_client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// TLS of `mqtts` and `quic`.
    #[serde(default)]
    pub tls: BridgeTls,
    /// Start a new session at the remote broker on the bridge's first connection. Default
    /// false: resume it, so messages the remote kept for the bridge while it was away arrive.
    #[serde(default)]
    pub clean_start: bool,
    /// Session Expiry Interval asked of the remote broker (5.0). Default one day.
    #[serde(default = "default_session_expiry")]
    pub session_expiry_secs: u32,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u16,
    pub topics: Vec<BridgeTopic>,
    #[serde(default)]
    pub backoff: Backoff,
    /// QoS 1/2 messages forwarded but not yet acknowledged by the other side, per direction
    /// (the Receive Maximum of the bridge's two clients). Default 128.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: u16,
    /// `transport: quic` only: where each connection attempt goes when QUIC gets no answer
    /// (UDP blocked). Default none.
    #[serde(default)]
    pub fallback: Option<BridgeFallback>,
}

/// MQTTS (or TCP) when UDP is blocked: every attempt tries QUIC first and, after `after_ms`
/// without an answer, connects to `address` (default: the QUIC address's host, port `port`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeFallback {
    /// `mqtts` (default) or `tcp`.
    #[serde(default = "default_fallback_transport")]
    pub transport: BridgeTransport,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default = "default_fallback_port")]
    pub port: u16,
    #[serde(default = "default_fallback_after")]
    pub after_ms: u64,
    /// While on the fallback, try QUIC again this often and move back when it answers (a
    /// normal DISCONNECT, then a reconnection that resumes the session); 0: never.
    #[serde(default = "default_retry_quic")]
    pub retry_quic_ms: u64,
}

fn default_fallback_transport() -> BridgeTransport {
    BridgeTransport::Mqtts
}

fn default_fallback_port() -> u16 {
    8883
}

fn default_fallback_after() -> u64 {
    3000
}

fn default_retry_quic() -> u64 {
    60_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BridgeTransport {
    #[default]
    Tcp,
    Mqtts,
    Quic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BridgeVersion {
    #[default]
    V5,
    V3_1_1,
}

impl Serialize for BridgeVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            BridgeVersion::V5 => "5",
            BridgeVersion::V3_1_1 => "3.1.1",
        })
    }
}

/// Certificates for `mqtts` and `quic`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeTls {
    /// PEM file of the certificate authorities to trust for the remote's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name to verify the remote's certificate against; default: the address's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Accept any certificate (encryption without authentication): tests only.
    #[serde(default)]
    pub insecure: bool,
}

/// One forwarded topic pattern, in mosquitto's terms (`topic <pattern> <direction> <qos>
/// <local_prefix> <remote_prefix>`): locally the topics are `local_prefix + pattern`,
/// remotely `remote_prefix + pattern`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeTopic {
    pub pattern: String,
    #[serde(default)]
    pub direction: Direction,
    /// Highest QoS forwarded; a message above it is downgraded, with a warning. Default 2.
    #[serde(default = "default_qos")]
    pub qos: u8,
    #[serde(default)]
    pub local_prefix: String,
    #[serde(default)]
    pub remote_prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Remote to local.
    In,
    /// Local to remote (default, as in mosquitto).
    #[default]
    Out,
    Both,
}

impl Direction {
    pub fn inbound(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }

    pub fn outbound(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }
}

/// Wait between reconnection attempts: exponential from `base_ms` to `cap_ms`, with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    pub base_ms: u64,
    pub cap_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 500,
            cap_ms: 30_000,
        }
    }
}

fn default_session_expiry() -> u32 {
    86_400
}

fn default_keep_alive() -> u16 {
    60
}

fn default_max_inflight() -> u16 {
    128
}

fn default_qos() -> u8 {
    2
}

/// `version: 5`, `5.0`, `"5"` or `3.1.1`.
fn version<'de, D: Deserializer<'de>>(d: D) -> Result<BridgeVersion, D::Error> {
    let value = serde_yaml::Value::deserialize(d)?;
    let text = match &value {
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::String(s) => s.clone(),
        _ => String::new(),
    };
    match text.as_str() {
        "5" | "5.0" => Ok(BridgeVersion::V5),
        "3.1.1" | "4" => Ok(BridgeVersion::V3_1_1),
        _ => Err(serde::de::Error::custom(format!(
            "invalid MQTT version {text:?}: expected 5 or 3.1.1"
        ))),
    }
}

impl BridgeConfig {
    /// An entry with one topic and every key (error messages list its keys).
    pub fn example() -> BridgeConfig {
        BridgeConfig {
            name: "example".into(),
            addresses: vec!["localhost:1883".into()],
            transport: BridgeTransport::Tcp,
            version: BridgeVersion::V5,
            client_id: None,
            local_client_id: None,
            username: None,
            password: None,
            tls: BridgeTls::default(),
            clean_start: false,
            session_expiry_secs: default_session_expiry(),
            keep_alive_secs: default_keep_alive(),
            topics: vec![BridgeTopic {
                pattern: "#".into(),
                direction: Direction::Out,
                qos: default_qos(),
                local_prefix: String::new(),
                remote_prefix: String::new(),
            }],
            backoff: Backoff::default(),
            max_inflight: default_max_inflight(),
            fallback: None,
        }
    }

    /// The client id at the remote broker.
    pub fn remote_client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("mqttd-bridge-{}", self.name))
    }

    /// The client id of the bridge's session in this broker.
    pub fn local_client_id(&self) -> String {
        self.local_client_id
            .clone()
            .unwrap_or_else(|| format!("$bridge/{}", self.name))
    }
}

/// Checks what serde does not: every problem names the bridge (by position and name) and the
/// key, e.g. `bridges[0] (cloud).topics[1].pattern: ...`.
pub fn check(bridges: &[BridgeConfig]) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for (i, b) in bridges.iter().enumerate() {
        let at = |key: &str| format!("bridges[{i}] ({}).{key}", b.name);
        let valid_name = !b.name.is_empty()
            && b.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err(format!(
                "bridges[{i}].name: {:?} is not a valid name: use letters, digits, '-', '_' and '.'",
                b.name
            ));
        }
        if !names.insert(b.name.as_str()) {
            return Err(format!("{}: another bridge has this name", at("name")));
        }
        if b.addresses.is_empty() {
            return Err(format!(
                "{}: at least one host:port is needed",
                at("addresses")
            ));
        }
        for (j, a) in b.addresses.iter().enumerate() {
            if !is_host_port(a) {
                return Err(format!(
                    "{}: {a:?} is not host:port",
                    at(&format!("addresses[{j}]"))
                ));
            }
        }
        if let Some(f) = &b.fallback {
            if b.transport != BridgeTransport::Quic {
                return Err(format!(
                    "{}: a fallback is for transport: quic (UDP blocked)",
                    at("fallback")
                ));
            }
            if f.transport == BridgeTransport::Quic {
                return Err(format!(
                    "{}: the fallback goes over mqtts or tcp",
                    at("fallback.transport")
                ));
            }
            if let Some(a) = f.address.as_ref().filter(|a| !is_host_port(a)) {
                return Err(format!(
                    "{}: {a:?} is not host:port",
                    at("fallback.address")
                ));
            }
            if f.after_ms == 0 {
                return Err(format!("{}: must be 1 or more", at("fallback.after_ms")));
            }
        }
        if b.topics.is_empty() {
            return Err(format!("{}: at least one topic is needed", at("topics")));
        }
        for (j, t) in b.topics.iter().enumerate() {
            let key = |k: &str| at(&format!("topics[{j}].{k}"));
            if t.qos > 2 {
                return Err(format!(
                    "{}: invalid QoS {}: expected 0, 1 or 2",
                    key("qos"),
                    t.qos
                ));
            }
            if !valid_filter(&t.pattern) {
                return Err(format!(
                    "{}: {:?} is not a valid topic filter",
                    key("pattern"),
                    t.pattern
                ));
            }
            for (name, prefix) in [
                ("local_prefix", &t.local_prefix),
                ("remote_prefix", &t.remote_prefix),
            ] {
                if prefix.contains(['+', '#', '\0']) {
                    return Err(format!(
                        "{}: {prefix:?} may not contain wildcards",
                        key(name)
                    ));
                }
            }
        }
        if b.max_inflight == 0 {
            return Err(format!("{}: must be 1 or more", at("max_inflight")));
        }
        if b.backoff.base_ms == 0 || b.backoff.cap_ms < b.backoff.base_ms {
            return Err(format!(
                "{}: base_ms must be 1 or more and cap_ms at least base_ms",
                at("backoff")
            ));
        }
        if b.tls.cert.is_some() != b.tls.key.is_some() {
            return Err(format!("{}: cert and key go together", at("tls")));
        }
    }
    Ok(())
}

fn is_host_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .is_some()
}

/// A topic filter by the MQTT rules (4.7): `#` last and alone in its level, `+` alone in its
/// level, not empty. (The rules of `crate::topic::is_valid_filter`, restated: the
/// configuration sits in the topic module's layer and imports neither.)
fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Vec<BridgeConfig>, String> {
        let bridges: Vec<BridgeConfig> = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        check(&bridges)?;
        Ok(bridges)
    }

    #[test]
    fn a_full_entry_parses() {
        let b = parse(
            "- name: cloud\n  addresses: [\"a:1883\", \"b:1883\"]\n  transport: quic\n  version: 3.1.1\n  \
             topics:\n    - pattern: sensors/#\n      direction: both\n      qos: 1\n      local_prefix: edge/\n      remote_prefix: site1/\n  \
             backoff: {base_ms: 100, cap_ms: 1000}\n",
        )
        .unwrap();
        let b = &b[0];
        assert_eq!(b.transport, BridgeTransport::Quic);
        assert_eq!(b.version, BridgeVersion::V3_1_1);
        assert_eq!(b.topics[0].direction, Direction::Both);
        assert_eq!(b.backoff.cap_ms, 1000);
        assert_eq!(b.remote_client_id(), "mqttd-bridge-cloud");
        assert_eq!(b.local_client_id(), "$bridge/cloud");
        assert_eq!(b.session_expiry_secs, 86_400);
        let v5 =
            parse("- name: x\n  addresses: [\"h:1\"]\n  version: 5\n  topics: [{pattern: a}]\n")
                .unwrap();
        assert_eq!(v5[0].version, BridgeVersion::V5);
        assert_eq!(v5[0].topics[0].direction, Direction::Out);
        assert_eq!(v5[0].topics[0].qos, 2);
        let fallback = parse(
            "- name: x\n  addresses: [\"h:1884\"]\n  transport: quic\n  fallback: {after_ms: 500}\n  topics: [{pattern: a}]\n",
        )
        .unwrap();
        let f = fallback[0].fallback.as_ref().unwrap();
        assert_eq!(
            (f.transport, f.port, f.after_ms, f.retry_quic_ms),
            (BridgeTransport::Mqtts, 8883, 500, 60_000)
        );
        let never = parse(
            "- name: x\n  addresses: [\"h:1884\"]\n  transport: quic\n  fallback: {retry_quic_ms: 0}\n  topics: [{pattern: a}]\n",
        )
        .unwrap();
        assert_eq!(never[0].fallback.as_ref().unwrap().retry_quic_ms, 0);
    }

    #[test]
    fn errors_name_the_bridge_and_the_key() {
        let cases = [
            ("- name: c\n  addresses: []\n  topics: [{pattern: a}]\n", "bridges[0] (c).addresses: at least one"),
            ("- name: c\n  addresses: [\"h\"]\n  topics: [{pattern: a}]\n", "bridges[0] (c).addresses[0]: \"h\" is not host:port"),
            ("- name: c\n  addresses: [\"h:1\"]\n  topics: [{pattern: a/#/b}]\n", "bridges[0] (c).topics[0].pattern"),
            ("- name: c\n  addresses: [\"h:1\"]\n  topics: [{pattern: a, qos: 3}]\n", "bridges[0] (c).topics[0].qos: invalid QoS 3"),
            ("- name: c\n  addresses: [\"h:1\"]\n  topics: [{pattern: a, local_prefix: \"x/+/\"}]\n", "topics[0].local_prefix"),
            ("- name: c d\n  addresses: [\"h:1\"]\n  topics: [{pattern: a}]\n", "bridges[0].name"),
            ("- name: c\n  addresses: [\"h:1\"]\n  topics: [{pattern: a}]\n- name: c\n  addresses: [\"h:1\"]\n  topics: [{pattern: a}]\n", "bridges[1] (c).name: another bridge"),
            ("- name: c\n  addresses: [\"h:1\"]\n  topics: [{pattern: a}]\n  try_private: true\n", "unknown field `try_private`"),
            ("- name: c\n  addresses: [\"h:1\"]\n  topics: [{pattern: a}]\n  backoff: {base_ms: 10, cap_ms: 5}\n", "(c).backoff"),
            ("- name: c\n  addresses: [\"h:1\"]\n  topics: [{pattern: a}]\n  adresses: []\n", "unknown field `adresses`"),
            ("- name: c\n  addresses: [\"h:1\"]\n  version: 4.5\n  topics: [{pattern: a}]\n", "invalid MQTT version"),
            ("- name: c\n  addresses: [\"h:1\"]\n  fallback: {}\n  topics: [{pattern: a}]\n", "(c).fallback: a fallback is for transport: quic"),
            ("- name: c\n  addresses: [\"h:1\"]\n  transport: quic\n  fallback: {transport: quic}\n  topics: [{pattern: a}]\n", "(c).fallback.transport"),
            ("- name: c\n  addresses: [\"h:1\"]\n  transport: quic\n  fallback: {address: h}\n  topics: [{pattern: a}]\n", "(c).fallback.address"),
        ];
        for (yaml, expected) in cases {
            let error = parse(yaml).unwrap_err();
            assert!(error.contains(expected), "{yaml:?}: {error}");
        }
    }
}
