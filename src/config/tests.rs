//! Loading and its error messages, end to end through [`Config::from_yaml`]. Range checks are
//! tested beside them in `validate.rs`.

use std::path::Path;

use serde_yaml::Value;

use super::*;

const FILE: &str = "mqttd.yaml";

pub(super) fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, Path::new(FILE))
}

/// The full error text, as `mqttd` prints it.
pub(super) fn error(text: &str) -> String {
    match load(text) {
        Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
        Err(error) => error.to_string(),
    }
}

pub(super) fn assert_error(text: &str, expected: &[&str]) {
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
           websocket, bridges, admin, cluster, found a sequence",
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

/// Every key of every section in `value`, as `section.key`.
fn keys_of(value: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    for (section, body) in value.as_mapping().into_iter().flatten() {
        for key in body.as_mapping().into_iter().flatten().map(|(k, _)| k) {
            keys.push(format!(
                "{}.{}",
                section.as_str().unwrap(),
                key.as_str().unwrap()
            ));
        }
    }
    keys
}

#[test]
fn example_yaml_lists_every_key() {
    let example: Value = serde_yaml::from_str(example_yaml()).unwrap();
    let every = serde_yaml::to_value(Config::default()).unwrap();
    let (mut listed, mut expected) = (keys_of(&example), keys_of(&every));
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
}

/// What the module doc asks of a new section: an empty one loads as its defaults, and an
/// unknown key in it is refused with the section's valid keys.
#[test]
fn every_section_is_optional_and_closed() {
    let every = serde_yaml::to_value(Config::default()).unwrap();
    // `bridges:` is a list, not a section of keys (src/bridge/config.rs has its tests).
    let sections: Vec<&str> = every
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.is_mapping())
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(sections.len(), 12, "{sections:?}");
    for section in sections {
        for empty in ["", " ~", " null", " {}"] {
            let text = format!("{section}:{empty}\n");
            assert_eq!(load(&text).unwrap(), Config::default(), "{text:?}");
        }
        let first_key = every[section].as_mapping().unwrap().keys().next().unwrap();
        assert_error(
            &format!("{section}:\n  no_such_key: 1\n"),
            &[
                &format!("{section}.no_such_key: unknown key; expected one of "),
                first_key.as_str().unwrap(),
                "at line 2 column 3",
            ],
        );
    }
}

#[test]
fn suggestions_are_close_names_only() {
    assert_eq!(
        explain::closest("recieve_maximum", ["receive_maximum", "max_inflight"]),
        Some("receive_maximum")
    );
    assert_eq!(explain::closest("colour", ["listeners", "limits"]), None);
}

#[test]
fn websocket_keys() {
    let config = load(
        "listeners:\n  ws: 127.0.0.1:8083\n  wss: \"[::]:8084\"\nwebsocket:\n  path: /broker\n  \
         trusted_proxies: [\"10.0.0.0/8\", \"::1\"]\n  ws_proxy: x_forwarded_for\n  \
         wss_proxy: both\n",
    )
    .unwrap();
    assert_eq!(config.listeners.ws, Some("127.0.0.1:8083".parse().unwrap()));
    assert_eq!(config.listeners.wss, Some("[::]:8084".parse().unwrap()));
    let ws = &config.websocket;
    assert_eq!(ws.path, "/broker");
    assert_eq!(ws.trusted_proxies.len(), 2);
    assert!(ws.ws_proxy.forwarded_for() && !ws.ws_proxy.proxy_protocol());
    assert!(ws.wss_proxy.forwarded_for() && ws.wss_proxy.proxy_protocol());
    assert_eq!(Config::default().listeners.ws, None, "WebSocket is opt-in");
    assert_error(
        "websocket:\n  trusted_proxies: [\"10.0.0.0/40\"]\n",
        &["websocket.trusted_proxies", "0..=32"],
    );
    assert_error(
        "websocket:\n  ws_proxy: nginx\n",
        &["websocket.ws_proxy", "x_forwarded_for"],
    );
    assert_error(
        "websocket:\n  path: mqtt\n",
        &["websocket.path", "starting with /"],
    );
}

#[test]
fn bridges_load_and_their_errors_name_the_bridge_and_key() {
    let config = load(
        "bridges:\n  - name: cloud\n    addresses: [\"h:1883\"]\n    topics: [{pattern: \"a/#\"}]\n",
    )
    .unwrap();
    assert_eq!(config.bridges[0].name, "cloud");
    assert_eq!(load("bridges:\n").unwrap(), Config::default());
    assert_error(
        "bridges:\n  - name: cloud\n    addresses: [\"h:1883\"]\n    topics: [{pattern: \"a/#\", qos: 3}]\n",
        &["bridges[0] (cloud).topics[0].qos: invalid QoS 3"],
    );
    assert_error(
        "bridges:\n  - name: cloud\n    adresses: [\"h:1883\"]\n    topics: []\n",
        &["bridges.0.adresses: unknown key (did you mean addresses?); expected one of name, addresses"],
    );
}

#[test]
fn cluster_section_loads_and_its_errors_name_the_key() {
    let c = load("cluster:\n  urls: [nats://127.0.0.1:4222]\n  node: a-1\n").unwrap();
    assert!(c.cluster.enabled());
    assert_eq!(c.cluster.node_name(), "a-1");
    assert!(!Config::default().cluster.enabled());
    assert_error(
        "cluster:\n  urls: [http://x]\n",
        &["cluster.urls", "nats://HOST:PORT"],
    );
    assert_error(
        "cluster:\n  urls: [nats://x:1]\n  node: a.b\n",
        &["cluster.node"],
    );
    assert_error("cluster:\n  prefix: \"\"\n", &["cluster.prefix"]);
    assert_error(
        "cluster:\n  replicas: 2\n",
        &["cluster.replicas", "1, 3 or 5"],
    );
    assert_error("cluster:\n  user: u\n", &["cluster.user"]);
    assert_error(
        "cluster:\n  heartbeat_ms: 1000\n  nats_grace_ms: 1500\n",
        &["cluster.nats_grace_ms", "2 * cluster.heartbeat_ms"],
    );
    assert_error(
        "cluster:\n  nats_grace_ms: 4000\n  node_timeout_ms: 5000\n",
        &[
            "cluster.node_timeout_ms",
            "nats_grace_ms + 2 * cluster.heartbeat_ms",
        ],
    );
    assert_error("cluster:\n  heartbeat_ms: 0\n", &["cluster.heartbeat_ms"]);
}
