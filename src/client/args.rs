//! Command-line arguments of `mqttd pub` and `mqttd sub`, in the spirit of mosquitto_pub and
//! mosquitto_sub (same short flags, `-h` included), and how they become [`ClientOptions`].
//!
//! They live here rather than in `crate::cli` so the broker's command line stays about the
//! broker; `crate::cli::Command` only names them.

use std::path::PathBuf;
use std::time::Duration;

use clap::ArgAction;

use super::options::{ClientOptions, QuicOptions, Transport, DEFAULT_QUIC_PORT, DEFAULT_TCP_PORT};
use crate::codec::{ProtocolVersion, QoS};

/// How to reach the broker: shared by `pub` and `sub`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[command(group(clap::ArgGroup::new("tls").args(["quic", "mqtts"])))]
pub struct ConnectionArgs {
    /// Broker host name or IP address.
    #[arg(short = 'h', long, value_name = "HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port [default: 1883, 1884 with --quic, 8883 with --mqtts].
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<u16>,
    /// MQTT version: 5 or 311 (also accepted: 31, 3.1.1, mqttv311, mqttv5).
    #[arg(short = 'V', long = "protocol-version", value_name = "VERSION", default_value = "5", value_parser = parse_version)]
    pub version: ProtocolVersion,
    /// Client identifier [default: mqttd-pub-PID / mqttd-sub-PID].
    #[arg(short = 'i', long = "id", value_name = "ID")]
    pub id: Option<String>,
    /// Keep alive in seconds (0: off).
    #[arg(
        short = 'k',
        long = "keepalive",
        value_name = "SECS",
        default_value_t = 60
    )]
    pub keep_alive: u16,
    /// User name.
    #[arg(short = 'u', long, value_name = "USER")]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long = "pw", value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Connect with MQTT over QUIC (UDP, TLS 1.3) instead of TCP.
    #[arg(long)]
    pub quic: bool,
    /// Connect with MQTT over TCP + TLS 1.3 (MQTTS) instead of plain TCP.
    #[arg(long, conflicts_with = "quic")]
    pub mqtts: bool,
    /// With --quic or --mqtts: PEM file of the certificate(s) to trust, e.g.
    /// `<data-dir>/cert.pem` of the broker.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub cafile: Option<PathBuf>,
    /// With --quic or --mqtts: accept any server certificate (no authentication of the broker).
    #[arg(long, requires = "tls", conflicts_with = "cafile")]
    pub insecure: bool,
    /// With --quic: never send 0-RTT early data (by default a reconnection to a server this
    /// process already has a ticket from sends CONNECT as early data).
    #[arg(long = "no-0rtt", requires = "quic")]
    pub no_zero_rtt: bool,
    /// With --quic or --mqtts: PEM client certificate to present (mutual TLS; needs --key).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    pub cert: Option<PathBuf>,
    /// With --quic: PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

/// Publish a message (like mosquitto_pub).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[command(disable_help_flag = true)]
pub struct PubArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Topic to publish to.
    #[arg(short = 't', long, value_name = "TOPIC")]
    pub topic: String,
    /// The message to send.
    #[arg(short = 'm', long, value_name = "MESSAGE", required_unless_present_any = ["null_message", "file"], conflicts_with_all = ["null_message", "file"])]
    pub message: Option<String>,
    /// Send an empty (zero-length) message.
    #[arg(short = 'n', long = "null-message", conflicts_with = "file")]
    pub null_message: bool,
    /// Send the contents of FILE as the message.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Quality of service: 0, 1 or 2.
    #[arg(short = 'q', long, value_name = "QOS", default_value = "0", value_parser = parse_qos)]
    pub qos: QoS,
    /// Ask the broker to retain the message.
    #[arg(short = 'r', long)]
    pub retain: bool,
    /// Publish the message COUNT times.
    #[arg(short = 'C', long = "count", value_name = "COUNT", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Print the outcome of each publish, and how each connection was made (0-RTT or not).
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// With --quic: send QoS 0 messages in QUIC DATAGRAM frames (after the CONNACK; a message
    /// too large for one goes on the stream). -v reports how many went as datagrams.
    #[arg(long, requires = "quic")]
    pub datagram: bool,
    /// Publish each of the COUNT messages on a new connection (over QUIC, the second and later
    /// ones resume with 0-RTT: CONNECT and a QoS 0 message go out as early data).
    #[arg(long)]
    pub reconnect: bool,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// Subscribe and print messages (like mosquitto_sub).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[command(disable_help_flag = true)]
pub struct SubArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Topic filter to subscribe to; repeat for several.
    #[arg(short = 't', long = "topic", value_name = "FILTER", required = true)]
    pub topics: Vec<String>,
    /// Maximum quality of service of the subscriptions: 0, 1 or 2.
    #[arg(short = 'q', long, value_name = "QOS", default_value = "0", value_parser = parse_qos)]
    pub qos: QoS,
    /// Exit after COUNT messages.
    #[arg(short = 'C', long = "count", value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Exit after SECS seconds; an error if COUNT messages have not arrived by then.
    #[arg(short = 'W', long = "timeout", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Print the topic before each message, and how the connection was made on stderr.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Keep the session: clean start 0, so messages published while away are delivered next
    /// time (needs -i).
    #[arg(short = 'c', long = "disable-clean-session")]
    pub keep_session: bool,
    /// Session expiry interval in seconds (MQTT 5) [default: never with -c, else 0].
    #[arg(short = 'x', long = "session-expiry", value_name = "SECS")]
    pub session_expiry: Option<u32>,
    /// With --quic (MQTT 5): ask for QoS 0 messages in QUIC DATAGRAM frames; -v says whether
    /// the broker granted it.
    #[arg(long, requires = "quic")]
    pub datagram: bool,
    /// With --quic (MQTT 5): ask for deliveries on server-initiated streams, one per
    /// subscription or per topic (subscription, topic or off).
    #[arg(long = "stream-mapping", value_name = "MAPPING", requires = "quic")]
    pub stream_mapping: Option<crate::client::StreamMapping>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

impl ConnectionArgs {
    /// The options for this connection; `role` names the default client id.
    pub fn client_options(&self, role: &str) -> ClientOptions {
        let port = self.port.unwrap_or(if self.quic {
            DEFAULT_QUIC_PORT
        } else if self.mqtts {
            super::options::DEFAULT_MQTTS_PORT
        } else {
            DEFAULT_TCP_PORT
        });
        let server = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        };
        let client_id = self
            .id
            .clone()
            .unwrap_or_else(|| format!("mqttd-{role}-{}", std::process::id()));
        let mut options = ClientOptions::new(server)
            .version(self.version)
            .client_id(client_id)
            .keep_alive(Duration::from_secs(u64::from(self.keep_alive)));
        options.username = self.username.clone();
        options.password = self.password.clone().map(Into::into);
        options.zero_rtt = !self.no_zero_rtt;
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            options.client_cert = Some(super::options::ClientCert {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        let tls = QuicOptions {
            ca_file: self.cafile.clone(),
            insecure: self.insecure,
            server_name: None,
        };
        if self.quic {
            options.transport = Transport::Quic(tls);
        } else if self.mqtts {
            options.transport = Transport::Mqtts(tls);
        }
        options
    }
}

/// `-q` of every CLI subcommand (pub, sub, bench).
pub(crate) fn parse_qos(s: &str) -> Result<QoS, String> {
    s.parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| format!("{s:?} is not a QoS: use 0, 1 or 2"))
}

/// `-V` of every CLI subcommand (pub, sub, bench).
pub(crate) fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s.to_ascii_lowercase().as_str() {
        "5" | "5.0" | "mqttv5" => Ok(ProtocolVersion::V5),
        "311" | "3.1.1" | "mqttv311" => Ok(ProtocolVersion::V3_1_1),
        "31" | "3.1" | "mqttv31" => Ok(ProtocolVersion::V3_1),
        _ => Err(format!("{s:?} is not an MQTT version: use 5 or 311")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Harness {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        Pub(PubArgs),
        Sub(SubArgs),
    }

    fn parse(args: &[&str]) -> Result<Sub, clap::Error> {
        Harness::try_parse_from(std::iter::once("mqttd").chain(args.iter().copied()))
            .map(|h| h.command)
    }

    #[test]
    fn pub_flags_parse_like_mosquitto_pub() {
        let Sub::Pub(args) = parse(&[
            "pub",
            "-h",
            "broker.local",
            "-p",
            "2883",
            "-t",
            "a/b",
            "-m",
            "hi",
            "-q",
            "2",
            "-r",
            "-V",
            "311",
            "-i",
            "me",
            "-C",
            "3",
            "-v",
        ])
        .unwrap() else {
            panic!("pub expected")
        };
        assert_eq!(args.connection.host, "broker.local");
        assert_eq!(args.qos, QoS::ExactlyOnce);
        assert!(args.retain && args.verbose);
        assert_eq!(args.count, 3);
        let options = args.connection.client_options("pub");
        assert_eq!(options.server, "broker.local:2883");
        assert_eq!(options.version, ProtocolVersion::V3_1_1);
        assert_eq!(options.client_id, "me");
        assert_eq!(options.transport, Transport::Tcp);
    }

    #[test]
    fn defaults_and_quic() {
        let Sub::Sub(args) = parse(&[
            "sub",
            "-t",
            "a",
            "-t",
            "b/#",
            "--quic",
            "--insecure",
            "-h",
            "::1",
        ])
        .unwrap() else {
            panic!("sub expected")
        };
        assert_eq!(args.topics, vec!["a", "b/#"]);
        let options = args.connection.client_options("sub");
        assert_eq!(options.server, "[::1]:1884");
        assert!(options.client_id.starts_with("mqttd-sub-"));
        assert!(matches!(options.transport, Transport::Quic(q) if q.insecure));
        let Sub::Sub(args) = parse(&["sub", "-t", "a"]).unwrap() else {
            panic!("sub expected")
        };
        assert_eq!(
            args.connection.client_options("sub").server,
            "127.0.0.1:1883"
        );
        assert_eq!(args.connection.version, ProtocolVersion::V5);
    }

    #[test]
    fn mqtts_and_client_certificates() {
        let Sub::Pub(args) = parse(&[
            "pub", "-t", "a", "-m", "x", "--mqtts", "--cafile", "ca.pem", "--cert", "c.pem",
            "--key", "k.pem",
        ])
        .unwrap() else {
            panic!("pub expected")
        };
        let options = args.connection.client_options("pub");
        assert_eq!(options.server, "127.0.0.1:8883");
        assert!(
            matches!(&options.transport, Transport::Mqtts(t) if t.ca_file.as_deref() == Some(std::path::Path::new("ca.pem")))
        );
        let cert = options.client_cert.unwrap();
        assert_eq!(
            (cert.cert.to_str(), cert.key.to_str()),
            (Some("c.pem"), Some("k.pem"))
        );
        let Sub::Sub(args) =
            parse(&["sub", "-t", "a", "--quic", "--cert", "c", "--key", "k"]).unwrap()
        else {
            panic!("sub expected")
        };
        assert!(args.connection.client_options("sub").client_cert.is_some());
        for bad in [
            &["pub", "-t", "a", "-m", "x", "--cert", "c", "--key", "k"][..],
            &["pub", "-t", "a", "-m", "x", "--quic", "--cert", "c"],
            &["pub", "-t", "a", "-m", "x", "--quic", "--key", "k"],
            &["pub", "-t", "a", "-m", "x", "--quic", "--mqtts"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(parse(&["pub", "-t", "a"]).is_err(), "a message is required");
        assert!(parse(&["pub", "-t", "a", "-m", "x", "-n"]).is_err());
        assert!(parse(&["pub", "-t", "a", "-m", "x", "-q", "3"]).is_err());
        assert!(parse(&["pub", "-t", "a", "-m", "x", "-V", "4"]).is_err());
        assert!(
            parse(&["pub", "-t", "a", "-m", "x", "--cafile", "c.pem"]).is_err(),
            "--cafile needs --quic"
        );
        assert!(
            parse(&["pub", "-t", "a", "-m", "x", "--datagram"]).is_err(),
            "--datagram needs --quic"
        );
        assert!(
            parse(&["sub", "-t", "a", "--quic", "--stream-mapping", "diagonal"]).is_err(),
            "unknown mapping"
        );
        assert!(parse(&["sub"]).is_err(), "a topic is required");
        assert!(parse(&["sub", "-t", "a", "-C", "0"]).is_err());
        let help = parse(&["sub", "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    }
}
