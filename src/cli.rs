//! Command line of the `mqttd` binary.
//!
//! It lives in the library rather than in `main.rs` so that argument parsing, the way flags
//! override the configuration file, and logging setup can be unit-tested without spawning the
//! binary. `main.rs` is meant to call only [`Cli::parse`](clap::Parser::parse),
//! [`Cli::load_config`] and [`init_logging`], then dispatch on [`Cli::command`].
//!
//! New flags that override the file (such as a future `--quic`) go in [`Cli`] and in
//! `Cli::apply_overrides`; new subcommands (`pub`, `sub`, `bench`) are new [`Command`] variants.

use std::net::SocketAddr;
use std::path::PathBuf;

use tracing_subscriber::EnvFilter;

use crate::config::{Config, ConfigError};

/// mqttd: a QUIC-native MQTT 3.1.1/5.0 broker.
#[derive(clap::Parser, Debug)]
#[command(name = "mqttd", version, about)]
pub struct Cli {
    /// YAML configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen for MQTT over TCP on ADDR, or `off` (overrides listeners.tcp), e.g. 127.0.0.1:1883.
    #[arg(long, value_name = "ADDR|off", value_parser = parse_listen)]
    pub tcp: Option<Listen>,
    /// Listen for MQTT over QUIC on UDP ADDR, or `off` (overrides listeners.quic), e.g. 0.0.0.0:1884.
    #[arg(long, value_name = "ADDR|off", value_parser = parse_listen)]
    pub quic: Option<Listen>,
    /// Listen for MQTT over TCP+TLS 1.3 (MQTTS) on ADDR, or `off` (overrides listeners.mqtts),
    /// e.g. 0.0.0.0:8883.
    #[arg(long, value_name = "ADDR|off", value_parser = parse_listen)]
    pub mqtts: Option<Listen>,
    /// Listen for MQTT over WebSocket on ADDR, or `off` (overrides listeners.ws), e.g.
    /// 0.0.0.0:8083.
    #[arg(long, value_name = "ADDR|off", value_parser = parse_listen)]
    pub ws: Option<Listen>,
    /// Listen for MQTT over WebSocket + TLS 1.3 on ADDR, or `off` (overrides listeners.wss),
    /// e.g. 0.0.0.0:8084.
    #[arg(long, value_name = "ADDR|off", value_parser = parse_listen)]
    pub wss: Option<Listen>,
    /// Serve the admin HTTP API (/metrics, /api/v1, the dashboard) on ADDR, or `off`
    /// (overrides admin.listen), e.g. 127.0.0.1:9884.
    #[arg(long, value_name = "ADDR|off", value_parser = parse_listen)]
    pub admin: Option<Listen>,
    /// What 0-RTT early data may do: off, safe or full (overrides quic.zero_rtt).
    #[arg(long = "zero-rtt", value_name = "off|safe|full", value_parser = parse_zero_rtt)]
    pub zero_rtt: Option<crate::config::ZeroRtt>,
    /// Server id (hex) carried in QUIC connection IDs (overrides quic.server_id).
    #[arg(long = "server-id", value_name = "HEX", value_parser = parse_server_id)]
    pub server_id: Option<String>,
    /// PEM certificate chain for QUIC (overrides tls.cert; needs --key).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key for QUIC (overrides tls.key; needs --cert).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Data directory, where the generated certificate is kept (overrides storage.data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Run purely in memory: nothing is stored, nothing survives a restart
    /// (storage.persistence: false).
    #[arg(long)]
    pub in_memory: bool,
    /// When acknowledgements wait for the disk: fsync, batched or off (overrides
    /// storage.durability).
    #[arg(long, value_name = "fsync|batched|off", value_parser = parse_durability)]
    pub durability: Option<crate::config::Durability>,
    /// Join a cluster over NATS JetStream: the NATS URLs, comma-separated (overrides
    /// cluster.urls), e.g. nats://127.0.0.1:4222.
    #[arg(long, value_name = "URL[,URL...]", value_parser = parse_cluster_urls)]
    pub cluster: Option<ClusterUrls>,
    /// This node's name in the cluster (overrides cluster.node).
    #[arg(long = "cluster-node", value_name = "NAME", value_parser = parse_cluster_node)]
    pub cluster_node: Option<String>,
    /// Once every listener is bound, write their addresses to FILE, one `KIND ADDR` a line
    /// (`tcp`, `quic`, `mqtts`, `ws`, `wss`): how a script learns the ports of listeners on
    /// port 0.
    #[arg(long = "listening-file", value_name = "FILE")]
    pub listening_file: Option<PathBuf>,
    /// Print an example configuration with every key and its default, then exit.
    #[arg(long)]
    pub print_config: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands; without one, `mqttd` runs the broker.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Check a configuration file and exit (0 if valid).
    CheckConfig { file: PathBuf },
    /// Publish a message, like mosquitto_pub (-h is the host; use --help for help).
    #[command(disable_help_flag = true)]
    Pub(crate::client::args::PubArgs),
    /// Subscribe and print messages, like mosquitto_sub (-h is the host; use --help for help).
    #[command(disable_help_flag = true)]
    Sub(crate::client::args::SubArgs),
    /// Load-test an MQTT broker: connection storms, fan-in, fan-out, pairs over TCP or QUIC
    /// (-h is the host; use --help for help).
    #[command(disable_help_flag = true)]
    Bench(crate::bench::BenchArgs),
    /// Create or edit a password file (Argon2id hashes), like mosquitto_passwd:
    /// `mqttd passwd [-c] FILE USER`, `-b FILE USER PASSWORD`, `--stdin`, `-D` to delete.
    Passwd(crate::auth::passwd::PasswdArgs),
    /// Talk to a running broker's admin API: `ctl clients`, `ctl kick ID`, `ctl publish
    /// TOPIC MESSAGE`, `ctl stats`... (table output, or `--json`).
    Ctl(crate::ctl::CtlArgs),
}

impl Cli {
    /// The configuration to run with: the `--config` file if given (else the defaults), with
    /// the command-line overrides applied on top.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(file) => Config::from_file(file)?,
            None => Config::default(),
        };
        self.apply_overrides(&mut config);
        Ok(config)
    }

    /// Applies the flags that override configuration keys. clap has already parsed them into
    /// their final types, so they need no further validation.
    fn apply_overrides(&self, config: &mut Config) {
        if let Some(Listen(addr)) = self.tcp {
            config.listeners.tcp = addr;
        }
        if let Some(Listen(addr)) = self.quic {
            config.listeners.quic = addr;
        }
        if let Some(Listen(addr)) = self.mqtts {
            config.listeners.mqtts = addr;
        }
        if let Some(Listen(addr)) = self.ws {
            config.listeners.ws = addr;
        }
        if let Some(Listen(addr)) = self.wss {
            config.listeners.wss = addr;
        }
        if let Some(Listen(addr)) = self.admin {
            config.admin.listen = addr;
        }
        if let Some(mode) = self.zero_rtt {
            config.quic.zero_rtt = mode;
        }
        if let Some(id) = &self.server_id {
            config.quic.server_id = Some(id.clone());
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            config.tls.cert = Some(cert.clone());
            config.tls.key = Some(key.clone());
        }
        if let Some(dir) = &self.data_dir {
            config.storage.data_dir = Some(dir.clone());
        }
        if self.in_memory {
            config.storage.persistence = false;
        }
        if let Some(mode) = self.durability {
            config.storage.durability = mode;
        }
        if let Some(ClusterUrls(urls)) = &self.cluster {
            config.cluster.urls = urls.clone();
        }
        if let Some(node) = &self.cluster_node {
            config.cluster.node = Some(node.clone());
        }
    }
}

/// `--cluster`: NATS URLs.
#[derive(Debug, Clone)]
pub struct ClusterUrls(pub Vec<String>);

fn parse_cluster_urls(s: &str) -> Result<ClusterUrls, String> {
    let urls: Vec<String> = s.split(',').map(|u| u.trim().to_string()).collect();
    for url in &urls {
        let ok = ["nats://", "tls://"]
            .iter()
            .any(|p| url.starts_with(p) && url.len() > p.len());
        if !ok {
            return Err(format!(
                "{url:?}: expected nats://HOST:PORT or tls://HOST:PORT"
            ));
        }
    }
    Ok(ClusterUrls(urls))
}

fn parse_cluster_node(s: &str) -> Result<String, String> {
    if crate::config::is_cluster_name(s) {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?}: expected 1 to 64 letters, digits, - or _"))
    }
}

fn parse_durability(s: &str) -> Result<crate::config::Durability, String> {
    crate::config::Durability::parse(&s.to_ascii_lowercase())
        .ok_or_else(|| format!("{s:?}: expected fsync, batched or off"))
}

/// A listener address from the command line: `IP:PORT`, or `off` to disable the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Listen(None));
    }
    s.parse::<SocketAddr>()
        .map(|a| Listen(Some(a)))
        .map_err(|_| format!("{s:?} is not IP:PORT (e.g. 127.0.0.1:1883, \"[::1]:1883\") or off"))
}

fn parse_zero_rtt(s: &str) -> Result<crate::config::ZeroRtt, String> {
    use crate::config::ZeroRtt;
    match s.to_ascii_lowercase().as_str() {
        "off" => Ok(ZeroRtt::Off),
        "safe" => Ok(ZeroRtt::Safe),
        "full" => Ok(ZeroRtt::Full),
        _ => Err(format!("{s:?}: expected off, safe or full")),
    }
}

fn parse_server_id(s: &str) -> Result<String, String> {
    let max = crate::config::MAX_SERVER_ID_LEN;
    match crate::config::parse_hex(s) {
        Ok(bytes) if (1..=max).contains(&bytes.len()) => Ok(s.to_owned()),
        Ok(bytes) => Err(format!("{} bytes: expected 1 to {max}", bytes.len())),
        Err(why) => Err(format!("{s:?}: {why}")),
    }
}

/// Writes the addresses `server` listens on to `path` (`--listening-file`): one `KIND ADDR`
/// a line. The file appears whole (written beside it, then renamed), so a reader that sees it
/// sees every line.
pub fn write_listening_file(
    path: &std::path::Path,
    server: &crate::server::ServerHandle,
) -> std::io::Result<()> {
    let mut text = String::new();
    for (kind, addr) in [
        ("tcp", server.tcp_addr()),
        ("quic", server.quic_addr()),
        ("mqtts", server.mqtts_addr()),
        ("ws", server.ws_addr()),
        ("wss", server.wss_addr()),
    ] {
        if let Some(addr) = addr {
            text.push_str(&format!("{kind} {addr}\n"));
        }
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}

/// Installs the global `tracing` subscriber, writing to stderr.
///
/// The filter comes from `RUST_LOG` when it is set and valid, else from `config.log.level`
/// (else `info`, should that be invalid too). Calling it again is harmless: the first
/// subscriber stays.
pub fn init_logging(config: &Config) {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let (filter, bad_rust_log) = log_filter(&config.log.level, rust_log.as_deref());
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .is_ok();
    if let (true, Some((value, error))) = (installed, bad_rust_log) {
        tracing::warn!(
            "ignoring {}={value:?} ({error}); using log.level {:?}",
            EnvFilter::DEFAULT_ENV,
            config.log.level
        );
    }
}

/// The log filter: `rust_log` when it is set and valid, else `level`, else `info`; with a
/// rejected `rust_log` and why, to warn about once logging is up.
fn log_filter(level: &str, rust_log: Option<&str>) -> (EnvFilter, Option<(String, String)>) {
    let from_config = || EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    match rust_log {
        Some(value) if !value.trim().is_empty() => match EnvFilter::try_new(value) {
            Ok(filter) => (filter, None),
            Err(error) => (from_config(), Some((value.to_owned(), error.to_string()))),
        },
        _ => (from_config(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::{CommandFactory, Parser};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mqttd").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_arguments_runs_the_broker_with_the_defaults() {
        let cli = parse(&[]).unwrap();
        assert!(cli.config.is_none() && cli.tcp.is_none() && !cli.print_config);
        assert!(cli.command.is_none());
        assert_eq!(cli.load_config().unwrap(), Config::default());
    }

    #[test]
    fn flags_parse() {
        let cli = parse(&[
            "-c",
            "broker.yaml",
            "--tcp",
            "127.0.0.1:1884",
            "--print-config",
        ])
        .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("broker.yaml")));
        assert_eq!(
            cli.tcp,
            Some(Listen(Some("127.0.0.1:1884".parse().unwrap())))
        );
        assert!(cli.print_config);
        let cli = parse(&["--config=other.yaml", "--tcp=[::1]:1883"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("other.yaml")));
        assert_eq!(cli.tcp, Some(Listen(Some("[::1]:1883".parse().unwrap()))));
    }

    #[test]
    fn bad_arguments_are_clap_errors() {
        let error = parse(&["--tcp", "localhost"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ValueValidation);
        assert!(error.to_string().contains("--tcp"), "{error}");
        assert_eq!(
            parse(&["--bogus"]).unwrap_err().kind(),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            parse(&["--version"]).unwrap_err().kind(),
            ErrorKind::DisplayVersion
        );
    }

    #[test]
    fn check_config_subcommand_parses() {
        let cli = parse(&["check-config", "/etc/mqttd.yaml"]).unwrap();
        match cli.command {
            Some(Command::CheckConfig { file }) => {
                assert_eq!(file, PathBuf::from("/etc/mqttd.yaml"))
            }
            other => panic!("expected check-config, got {other:?}"),
        }
        let error = parse(&["check-config"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn bench_subcommand_parses() {
        let cli = parse(&["bench", "fan-in", "-h", "broker", "-c", "4", "-q", "1"]).unwrap();
        match cli.command {
            Some(Command::Bench(args)) => {
                assert_eq!(args.scenario, crate::bench::Scenario::FanIn);
                assert_eq!(
                    (args.host.as_slice(), args.clients),
                    (&["broker".to_owned()][..], Some(4))
                );
            }
            other => panic!("expected bench, got {other:?}"),
        }
        let error = parse(&["bench"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn passwd_subcommand_parses() {
        let cli = parse(&["passwd", "-c", "-b", "pw", "alice", "secret"]).unwrap();
        match cli.command {
            Some(Command::Passwd(args)) => {
                assert!(args.create && args.batch);
                assert_eq!(
                    (args.user.as_str(), args.batch_password.as_deref()),
                    ("alice", Some("secret"))
                );
            }
            other => panic!("expected passwd, got {other:?}"),
        }
        assert!(parse(&["passwd", "pw"]).is_err(), "USER is required");
    }

    #[test]
    fn tcp_flag_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mqttd.yaml");
        std::fs::write(
            &file,
            "listeners:\n  tcp: 0.0.0.0:2883\nlimits:\n  max_inflight: 5\n",
        )
        .unwrap();
        let file_arg = file.to_str().unwrap();

        let config = parse(&["-c", file_arg]).unwrap().load_config().unwrap();
        assert_eq!(config.listeners.tcp, Some("0.0.0.0:2883".parse().unwrap()));

        let config = parse(&["-c", file_arg, "--tcp", "127.0.0.1:1884"])
            .unwrap()
            .load_config()
            .unwrap();
        assert_eq!(
            config.listeners.tcp,
            Some("127.0.0.1:1884".parse().unwrap())
        );
        assert_eq!(
            config.limits.max_inflight, 5,
            "the rest of the file still applies"
        );

        // --tcp re-enables a listener the file disabled.
        std::fs::write(&file, "listeners:\n  tcp: null\n").unwrap();
        let config = parse(&["-c", file_arg, "--tcp", "127.0.0.1:1885"])
            .unwrap()
            .load_config()
            .unwrap();
        assert_eq!(
            config.listeners.tcp,
            Some("127.0.0.1:1885".parse().unwrap())
        );
    }

    #[test]
    fn tcp_flag_without_a_file_overrides_the_default() {
        let config = parse(&["--tcp", "127.0.0.1:1886"])
            .unwrap()
            .load_config()
            .unwrap();
        let mut expected = Config::default();
        expected.listeners.tcp = Some("127.0.0.1:1886".parse().unwrap());
        assert_eq!(config, expected);
    }

    #[test]
    fn load_config_reports_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.yaml");
        let cli = parse(&["-c", missing.to_str().unwrap()]).unwrap();
        assert!(matches!(cli.load_config(), Err(ConfigError::Read { .. })));

        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "session:\n  max_qos: 3\n").unwrap();
        let error = parse(&["-c", bad.to_str().unwrap()])
            .unwrap()
            .load_config()
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("bad.yaml: session.max_qos: invalid value 3"),
            "{error}"
        );
    }

    #[test]
    fn rust_log_wins_when_valid_else_the_configured_level_else_info() {
        let shown = |level: &str, rust_log: Option<&str>| {
            let (filter, rejected) = log_filter(level, rust_log);
            (filter.to_string(), rejected.map(|(value, _)| value))
        };
        assert_eq!(shown("debug", None), ("debug".into(), None));
        assert_eq!(shown("debug", Some("  ")), ("debug".into(), None));
        assert_eq!(
            shown("debug", Some("mqttd=trace")),
            ("mqttd=trace".into(), None)
        );
        assert_eq!(
            shown("debug", Some("[{")),
            ("debug".into(), Some("[{".into())),
            "a bad RUST_LOG is reported and the configured level used"
        );
        assert_eq!(shown("[{", None), ("info".into(), None));
    }

    #[test]
    fn init_logging_installs_a_subscriber_and_a_second_call_keeps_it() {
        let config = Config::default();
        init_logging(&config);
        assert!(tracing::dispatcher::has_been_set());
        let mut odd = Config::default();
        odd.log.level = "[{".into();
        init_logging(&odd);
        assert!(tracing::dispatcher::has_been_set());
    }

    #[test]
    fn listeners_can_be_turned_off_and_tls_flags_go_together() {
        let cli = Cli::try_parse_from(["mqttd", "--quic", "off", "--tcp", "127.0.0.1:1"]).unwrap();
        let config = cli.load_config().unwrap();
        assert_eq!(config.listeners.quic, None);
        assert_eq!(config.listeners.tcp, Some("127.0.0.1:1".parse().unwrap()));
        assert!(Cli::try_parse_from(["mqttd", "--cert", "c.pem"]).is_err());
        let cli = Cli::try_parse_from([
            "mqttd",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--data-dir",
            "/d",
        ])
        .unwrap();
        let config = cli.load_config().unwrap();
        assert_eq!(
            config.tls.key.as_deref(),
            Some(std::path::Path::new("k.pem"))
        );
        assert_eq!(
            config.storage.data_dir.as_deref(),
            Some(std::path::Path::new("/d"))
        );
        assert!(Cli::try_parse_from(["mqttd", "--quic", "1884"]).is_err());
    }

    #[test]
    fn persistence_flags() {
        let config = Cli::try_parse_from(["mqttd"])
            .unwrap()
            .load_config()
            .unwrap();
        assert!(config.storage.persistence, "on by default");
        assert_eq!(
            config.storage.durability,
            crate::config::Durability::Batched
        );
        let config = Cli::try_parse_from(["mqttd", "--in-memory", "--durability", "fsync"])
            .unwrap()
            .load_config()
            .unwrap();
        assert!(!config.storage.persistence);
        assert_eq!(config.storage.durability, crate::config::Durability::Fsync);
        assert!(Cli::try_parse_from(["mqttd", "--durability", "sometimes"]).is_err());
    }

    #[test]
    fn mqtts_zero_rtt_and_server_id_flags() {
        let cli = Cli::try_parse_from([
            "mqttd",
            "--mqtts",
            "127.0.0.1:8883",
            "--zero-rtt",
            "full",
            "--server-id",
            "0a01",
        ])
        .unwrap();
        let config = cli.load_config().unwrap();
        assert_eq!(
            config.listeners.mqtts,
            Some("127.0.0.1:8883".parse().unwrap())
        );
        assert_eq!(config.quic.zero_rtt, crate::config::ZeroRtt::Full);
        assert_eq!(config.quic.server_id_bytes(), Some(vec![0x0a, 0x01]));
        let config = Cli::try_parse_from(["mqttd", "--mqtts", "off"])
            .unwrap()
            .load_config()
            .unwrap();
        assert_eq!(config.listeners.mqtts, None);
        assert!(Cli::try_parse_from(["mqttd", "--zero-rtt", "maybe"]).is_err());
        assert!(Cli::try_parse_from(["mqttd", "--server-id", "xyz"]).is_err());
    }

    #[test]
    fn websocket_flags() {
        let config = Cli::try_parse_from(["mqttd", "--ws", "127.0.0.1:8083", "--wss", "off"])
            .unwrap()
            .load_config()
            .unwrap();
        assert_eq!(config.listeners.ws, Some("127.0.0.1:8083".parse().unwrap()));
        assert_eq!(config.listeners.wss, None);
    }
}
