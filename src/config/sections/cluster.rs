//! `cluster:` several mqttd nodes as one broker over NATS JetStream (`crate::cluster`, README
//! "Cluster", proto-ext/cluster.md). Without NATS URLs nothing changes: a single node needs no
//! NATS.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The NATS cluster this node joins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// NATS server URLs (`nats://host:4222`, `tls://host:4222`); empty (the default): this
    /// node runs alone. `--cluster URL[,URL...]` sets them.
    pub urls: Vec<String>,
    /// This node's name, unique in the cluster: letters, digits, `-` and `_`. Default null:
    /// the host name and the process id (set it in production, so a restarted node is the
    /// same node). `--cluster-node NAME` sets it.
    pub node: Option<String>,
    /// First token of every subject, and the start of the stream's and buckets' names, so
    /// several mqttd clusters can share one NATS. Default `mqttd`.
    pub prefix: String,
    /// A NATS credentials file (JWT and NKey seed). Default null.
    pub credentials_file: Option<PathBuf>,
    /// NATS user name and password. Default null.
    pub user: Option<String>,
    pub password: Option<String>,
    /// NATS token. Default null.
    pub token: Option<String>,
    /// PEM file of the CA certificates that sign the NATS servers' certificates (TLS).
    /// Default null: the system roots when a URL asks for TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for NATS servers that require one. Default null.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Milliseconds to connect to NATS at startup (the node does not start without it).
    /// Default 5000.
    pub connect_timeout_ms: u64,
    /// Milliseconds JetStream has to acknowledge a QoS 1/2 message before the publisher is
    /// told it failed (5.0: PUBACK/PUBREC 0x80; 3.1.1: the connection is closed, so the
    /// client sends it again). Default 5000.
    pub ack_timeout_ms: u64,
    /// How long the QoS 1/2 stream keeps a message, in seconds. Default 86400 (one day).
    pub stream_max_age_secs: u64,
    /// JetStream's ack wait for shared subscriptions, in milliseconds: how long a QoS 1/2
    /// message waits after its member's node died before JetStream gives it to the group
    /// again, maybe to another member (a live node keeps it for its member, telling JetStream
    /// the work is in progress, up to 6 times as long). Default 5000.
    pub shared_ack_wait_ms: u64,
    /// Replicas of the stream and the buckets (1, 3 or 5; at most the NATS cluster's size).
    /// Default 1.
    pub replicas: usize,
    /// Milliseconds between two heartbeats of this node (a put of its key in the nodes
    /// bucket). Default 1000.
    pub heartbeat_ms: u64,
    /// Milliseconds without a heartbeat after which the other nodes declare a node dead and
    /// publish the wills of its clients: the detection delay of a node's death. At least
    /// `nats_grace_ms` plus two heartbeats. Default 8000.
    pub node_timeout_ms: u64,
    /// Milliseconds a node cut off from NATS (no heartbeat stored) keeps its clients; then it
    /// disconnects them (DISCONNECT 0x9C Use another server) so that other nodes may take
    /// them. At least two heartbeats, and shorter than `node_timeout_ms`. New connections are
    /// refused (CONNACK 0x88 Server unavailable) as soon as NATS is lost. Default 4000.
    pub nats_grace_ms: u64,
}

impl Default for Cluster {
    fn default() -> Cluster {
        Cluster {
            urls: Vec::new(),
            node: None,
            prefix: "mqttd".into(),
            credentials_file: None,
            user: None,
            password: None,
            token: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            connect_timeout_ms: 5000,
            ack_timeout_ms: 5000,
            stream_max_age_secs: 86_400,
            shared_ack_wait_ms: 5000,
            replicas: 1,
            heartbeat_ms: 1000,
            node_timeout_ms: 8000,
            nats_grace_ms: 4000,
        }
    }
}

/// Whether `s` is a non-empty run of `[A-Za-z0-9_-]` (a node name, a prefix: one subject
/// token, and part of stream and bucket names).
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Cluster {
    /// Whether this node joins a cluster.
    pub fn enabled(&self) -> bool {
        !self.urls.is_empty()
    }

    /// The node name in force: the configured one, or the host name and process id.
    pub fn node_name(&self) -> String {
        if let Some(node) = &self.node {
            return node.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| {
                h.trim()
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect::<String>()
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".into());
        format!("{host}-{}", std::process::id())
    }

    /// Checks what the file alone can tell; `Err` is (key, value, expected).
    pub(in crate::config) fn check(&self) -> Result<(), (&'static str, String, &'static str)> {
        for url in &self.urls {
            let scheme_ok = ["nats://", "tls://"].iter().any(|s| url.starts_with(s));
            if !scheme_ok || url.len() <= "nats://".len() {
                return Err((
                    "cluster.urls",
                    format!("{url:?}"),
                    "nats://HOST:PORT or tls://HOST:PORT",
                ));
            }
        }
        if let Some(node) = &self.node {
            if !is_name(node) {
                return Err((
                    "cluster.node",
                    format!("{node:?}"),
                    "1 to 64 letters, digits, - or _",
                ));
            }
        }
        if !is_name(&self.prefix) {
            return Err((
                "cluster.prefix",
                format!("{:?}", self.prefix),
                "1 to 64 letters, digits, - or _",
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err((
                "cluster.tls_cert_file",
                "set without the other".into(),
                "tls_cert_file and tls_key_file together",
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err((
                "cluster.user",
                "set without the other".into(),
                "user and password together",
            ));
        }
        if !matches!(self.replicas, 1 | 3 | 5) {
            return Err(("cluster.replicas", self.replicas.to_string(), "1, 3 or 5"));
        }
        for (key, value) in [
            ("cluster.connect_timeout_ms", self.connect_timeout_ms),
            ("cluster.ack_timeout_ms", self.ack_timeout_ms),
            ("cluster.stream_max_age_secs", self.stream_max_age_secs),
            ("cluster.heartbeat_ms", self.heartbeat_ms),
            ("cluster.shared_ack_wait_ms", self.shared_ack_wait_ms),
        ] {
            if value == 0 {
                return Err((key, "0".into(), "1 or more"));
            }
        }
        // A node cut off from NATS drops its clients before the others call it dead, so no
        // will is published for a client still connected (cluster/liveness.rs).
        if self.nats_grace_ms < self.heartbeat_ms.saturating_mul(2) {
            return Err((
                "cluster.nats_grace_ms",
                self.nats_grace_ms.to_string(),
                "at least two heartbeats (2 * cluster.heartbeat_ms)",
            ));
        }
        let floor = self
            .nats_grace_ms
            .saturating_add(self.heartbeat_ms.saturating_mul(2));
        if self.node_timeout_ms < floor {
            return Err((
                "cluster.node_timeout_ms",
                self.node_timeout_ms.to_string(),
                "at least cluster.nats_grace_ms + 2 * cluster.heartbeat_ms",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_name("node-1_a"));
        assert!(!is_name(""));
        assert!(!is_name("a.b"));
        assert!(!is_name("a b"));
        assert!(!is_name(&"x".repeat(65)));
    }

    #[test]
    fn default_node_name_is_a_name() {
        assert!(is_name(&Cluster::default().node_name()));
    }
}
