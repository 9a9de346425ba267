//! Command line of `mqttd bench` ([`BenchArgs`]) and the checked [`Plan`] it becomes.
//!
//! The flags follow `mqttd pub`/`sub` (and so mosquitto_pub/sub) where they overlap: `-h` is
//! the host, help is `--help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::ArgAction;
use serde::Serialize;

use crate::client::{
    ClientOptions, QuicOptions, StreamMapping, Transport, DEFAULT_QUIC_PORT, DEFAULT_TCP_PORT,
};
use crate::codec::{ProtocolVersion, QoS};

use super::payload::HEADER_LEN;

/// What to run.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Connection storm: open CLIENTS connections (optionally hold them idle), then close them.
    Conn,
    /// CLIENTS publishers, no subscriber (publish throughput and acknowledgement latency).
    Pub,
    /// CLIENTS subscribers on TOPIC/#, for publishers elsewhere (another `mqttd bench pub`).
    Sub,
    /// CLIENTS publishers, each on its own topic, to one subscriber on TOPIC/#.
    FanIn,
    /// One publisher to CLIENTS subscribers of its topic.
    FanOut,
    /// CLIENTS publisher/subscriber pairs, one topic per pair.
    Pairs,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Conn => "conn",
            Scenario::Pub => "pub",
            Scenario::Sub => "sub",
            Scenario::FanIn => "fan-in",
            Scenario::FanOut => "fan-out",
            Scenario::Pairs => "pairs",
        }
    }
}

/// The network under MQTT.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    Tcp,
    Quic,
    /// MQTT over WebSocket (`listeners.ws`, path /mqtt), binary frames over TCP.
    Ws,
    /// MQTT over TCP + TLS 1.3 (`listeners.mqtts`).
    Mqtts,
}

/// How a QUIC client carries its MQTT traffic.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuicMode {
    /// Everything on the connection's first (control) stream, as over TCP.
    Single,
    /// Each client publishes or subscribes on a data stream of its own (`open_stream`).
    Multi,
    /// Subscribers take deliveries on server-initiated streams, one per topic (CONNECT user
    /// property `quic-stream-mapping: topic`, MQTT 5); publishers use the control stream.
    Topics,
    /// QoS 0 in QUIC datagrams both ways (`quic-datagrams: on`, MQTT 5); what does not fit
    /// a datagram goes on the control stream.
    Datagram,
}

/// Examples shown by `mqttd bench --help`.
const EXAMPLES: &str = "\
Examples:
  mqttd bench fan-in -c 4 -q 1 -n 50000     4 publishers x 50,000 QoS 1 messages -> 1 subscriber
  mqttd bench fan-out -c 100 -r 10 -d 30    1 publisher at 10 msg/s -> 100 subscribers, 30 s
  mqttd bench conn -c 1000 --hold 5 --broker-pid $(pidof mqttd)    memory per idle connection
  mqttd bench pairs -c 10 --transport quic --quic-mode multi --insecure
  mqttd bench sub -t load & mqttd bench pub -t load -r 1000    two processes, one machine

Each payload starts with its send time and its publisher's sequence number, so subscribers
report delivery latency and loss, duplicates and reordering. Exit status: 0 when the run
completed (the report tells how well), 1 when no client could connect, 2 for bad arguments.";

/// Load generator and benchmark for any MQTT broker (in the spirit of emqtt-bench).
#[derive(clap::Args, Debug, Clone, PartialEq)]
#[command(disable_help_flag = true, after_long_help = EXAMPLES)]
pub struct BenchArgs {
    /// conn, pub, sub, fan-in, fan-out or pairs.
    #[arg(value_enum, value_name = "SCENARIO")]
    pub scenario: Scenario,
    /// Broker host name or IP address; a comma-separated list spreads the clients over several
    /// brokers (the nodes of a cluster): subscriber j on server j mod n, publisher i on server
    /// (i + 1) mod n, so a one-publisher run over two servers crosses nodes.
    #[arg(
        short = 'h',
        long,
        value_name = "HOST[,HOST...]",
        default_value = "127.0.0.1",
        value_delimiter = ','
    )]
    pub host: Vec<String>,
    /// Broker port [default: 1883, 1884 with --transport quic, 8083 with --transport ws, 8883
    /// with --transport mqtts]; a
    /// comma-separated list gives one server per port (with one host), or a port per host.
    #[arg(
        short = 'p',
        long,
        value_name = "PORT[,PORT...]",
        value_delimiter = ','
    )]
    pub port: Vec<u16>,
    /// tcp, quic, ws (MQTT over WebSocket at /mqtt) or mqtts (TCP + TLS 1.3).
    #[arg(long, value_enum, value_name = "TRANSPORT", default_value = "tcp")]
    pub transport: TransportKind,
    /// With --transport quic: single (the control stream) or multi (a data stream per client).
    #[arg(long, value_enum, value_name = "MODE")]
    pub quic_mode: Option<QuicMode>,
    /// With --transport quic or mqtts: PEM file of the certificate(s) to trust.
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// With --transport quic or mqtts: accept any server certificate.
    #[arg(long, conflicts_with = "cafile")]
    pub insecure: bool,
    /// MQTT version: 5 or 311.
    #[arg(short = 'V', long = "protocol-version", value_name = "VERSION", default_value = "5", value_parser = crate::client::args::parse_version)]
    pub version: ProtocolVersion,
    /// User name.
    #[arg(short = 'u', long, value_name = "USER")]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long = "pw", value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Keep alive in seconds (0: off).
    #[arg(
        short = 'k',
        long = "keepalive",
        value_name = "SECS",
        default_value_t = 60
    )]
    pub keep_alive: u16,
    /// The scenario's N: connections (conn), publishers (pub, fan-in), subscribers (sub,
    /// fan-out), pairs (pairs) [default: 100 for conn, 1 for pub and sub, else 4].
    #[arg(short = 'c', long = "clients", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub clients: Option<u32>,
    /// QoS of publishes and subscriptions: 0, 1 or 2.
    #[arg(short = 'q', long, value_name = "QOS", default_value = "0", value_parser = crate::client::args::parse_qos)]
    pub qos: QoS,
    /// Payload size in bytes (at least 16: the timestamp header).
    #[arg(
        short = 's',
        long = "size",
        value_name = "BYTES",
        default_value_t = 100
    )]
    pub size: usize,
    /// Messages per publisher (sub: per subscriber) [default: run for --duration].
    #[arg(short = 'n', long = "count", value_name = "N", value_parser = clap::value_parser!(u64).range(1..=u64::from(u32::MAX)))]
    pub count: Option<u64>,
    /// Seconds to publish (sub: to listen) [default: 10 unless --count is given].
    #[arg(short = 'd', long = "duration", value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Messages per second per publisher (conn: connections per second) [default: as fast as
    /// possible].
    #[arg(short = 'r', long, value_name = "PER_SEC", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Publishes each publisher keeps in flight (QoS 1/2 waiting for their acknowledgement).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub inflight: u16,
    /// Connection attempts in progress at once.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// conn over QUIC: each client gets a UDP socket of its own, as separate devices have
    /// [default: the generator's clients share one, so that its own per-socket set-up does
    /// not limit the storm; the broker tells connections apart by their connection IDs].
    #[arg(long)]
    pub socket_per_client: bool,
    /// conn: keep the connections idle SECS seconds, then read the broker's memory
    /// (with --broker-pid: RSS per connection).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub hold: Option<Duration>,
    /// Topic prefix: publisher i publishes to TOPIC/i [default: mqttd-bench/RUNID;
    /// give the same one to `pub` and `sub` runs that work together].
    #[arg(short = 't', long, value_name = "TOPIC")]
    pub topic: Option<String>,
    /// After the publishers finish, how long subscribers may take to receive the rest.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub drain: Duration,
    /// Receive Maximum of the subscribers (MQTT 5): QoS 1/2 deliveries in flight to each.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u16).range(1..))]
    pub receive_maximum: u16,
    /// Clients connect with Clean Start 0 and this Session Expiry Interval (persistent
    /// sessions: a broker that persists stores what is queued for them) [default: clean
    /// sessions].
    #[arg(long, value_name = "SECS")]
    pub session_expiry: Option<u32>,
    /// Process id of the broker (same machine): report its CPU time and memory.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// Also report delivery latency per topic (per publisher): sub, and fan-in and pairs with
    /// up to 64 publishers.
    #[arg(long)]
    pub per_topic: bool,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// Everything a run needs, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub scenario: Scenario,
    /// `host:port` of each broker the clients are spread over (at least one).
    pub servers: Vec<String>,
    pub transport: TransportKind,
    /// Set with the QUIC transport.
    pub quic_mode: Option<QuicMode>,
    tls: Option<QuicOptions>,
    pub version: ProtocolVersion,
    username: Option<String>,
    password: Option<String>,
    pub keep_alive: Duration,
    /// conn: connections to open.
    pub connections: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub qos: QoS,
    pub size: usize,
    /// Messages per publisher (sub: per subscriber).
    pub count: Option<u64>,
    /// How long publishers publish (sub: subscribers listen).
    pub duration: Option<Duration>,
    /// Per publisher (conn: connections per second).
    pub rate: Option<f64>,
    pub inflight: usize,
    pub concurrency: usize,
    pub hold: Option<Duration>,
    pub topic: String,
    pub drain: Duration,
    pub receive_maximum: u16,
    /// Persistent sessions (Clean Start 0) with this expiry.
    pub session_expiry: Option<u32>,
    pub broker_pid: Option<u32>,
    /// Latency per publisher's topic.
    pub per_topic: bool,
    pub json: bool,
    pub progress: bool,
    /// Distinguishes this run's client ids, topics and publisher ids from another's.
    pub run_id: u16,
    /// conn over QUIC without --socket-per-client: the clients share one UDP socket, bound
    /// when the run starts (`super::execute`).
    pub shared_socket: bool,
    pub quic_endpoint: Option<crate::client::QuicEndpoint>,
}

/// Without --count or --duration, a run lasts this long.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

impl Plan {
    /// Checks `args`; `run_id` names this run (random in the binary, fixed in tests).
    pub fn new(args: &BenchArgs, run_id: u16) -> Result<Plan, String> {
        let quic = args.transport == TransportKind::Quic;
        let tls = quic || args.transport == TransportKind::Mqtts;
        if !quic && args.quic_mode.is_some() {
            return Err("--quic-mode needs --transport quic".into());
        }
        if !tls && (args.cafile.is_some() || args.insecure) {
            return Err("--cafile and --insecure need --transport quic or mqtts".into());
        }
        let mode = args.quic_mode.unwrap_or(QuicMode::Single);
        if quic && matches!(mode, QuicMode::Topics | QuicMode::Datagram) && !args.version.is_v5() {
            return Err(format!(
                "--quic-mode {} is negotiated with MQTT 5 user properties: use -V 5",
                if mode == QuicMode::Topics {
                    "topics"
                } else {
                    "datagram"
                }
            ));
        }
        if quic && mode == QuicMode::Datagram && args.qos != QoS::AtMostOnce {
            return Err("--quic-mode datagram carries QoS 0 only: use -q 0".into());
        }
        let per_topic_ok = match args.scenario {
            Scenario::FanIn | Scenario::Pairs => args.clients.unwrap_or(4) <= 64,
            Scenario::Sub => true,
            _ => false,
        };
        if args.per_topic && !per_topic_ok {
            return Err(
                "--per-topic is for sub, and fan-in and pairs with at most 64 publishers".into(),
            );
        }
        if args.size < HEADER_LEN {
            return Err(format!(
                "--size {} is too small: payloads carry a {HEADER_LEN}-byte timestamp header",
                args.size
            ));
        }
        let conn = args.scenario == Scenario::Conn;
        if args.hold.is_some() && !conn {
            return Err("--hold is for the conn scenario".into());
        }
        if conn && (args.count.is_some() || args.duration.is_some()) {
            return Err(
                "conn opens --clients connections: --count and --duration do not apply (--hold keeps them open)".into(),
            );
        }
        let n = args
            .clients
            .map(|c| c as usize)
            .unwrap_or(match args.scenario {
                Scenario::Conn => 100,
                Scenario::Pub | Scenario::Sub => 1,
                _ => 4,
            });
        let (connections, publishers, subscribers) = match args.scenario {
            Scenario::Conn => (n, 0, 0),
            Scenario::Pub => (0, n, 0),
            Scenario::Sub => (0, 0, n),
            Scenario::FanIn => (0, n, 1),
            Scenario::FanOut => (0, 1, n),
            Scenario::Pairs => (0, n, n),
        };
        let duration = match (args.count, args.duration) {
            (None, None) if !conn => Some(DEFAULT_DURATION),
            (_, duration) => duration,
        };
        let default_port = match args.transport {
            TransportKind::Quic => DEFAULT_QUIC_PORT,
            TransportKind::Ws => 8083,
            TransportKind::Mqtts => crate::client::DEFAULT_MQTTS_PORT,
            TransportKind::Tcp => DEFAULT_TCP_PORT,
        };
        let servers = super::servers::servers(&args.host, &args.port, default_port)?;
        let topic = match &args.topic {
            Some(t) => {
                let t = t.trim_end_matches('/');
                if t.is_empty() || t.contains(['#', '+']) {
                    return Err(format!(
                        "--topic {t:?}: give a topic prefix without wildcards"
                    ));
                }
                t.to_owned()
            }
            None => format!("mqttd-bench/{run_id:04x}"),
        };
        Ok(Plan {
            scenario: args.scenario,
            servers,
            transport: args.transport,
            quic_mode: quic.then(|| args.quic_mode.unwrap_or(QuicMode::Single)),
            tls: tls.then(|| QuicOptions {
                ca_file: args.cafile.clone(),
                insecure: args.insecure,
                server_name: None,
            }),
            version: args.version,
            username: args.username.clone(),
            password: args.password.clone(),
            keep_alive: Duration::from_secs(u64::from(args.keep_alive)),
            connections,
            publishers,
            subscribers,
            qos: args.qos,
            size: args.size,
            count: args.count,
            duration,
            rate: args.rate,
            inflight: usize::from(args.inflight),
            concurrency: args.concurrency as usize,
            hold: args.hold,
            topic,
            drain: args.drain,
            receive_maximum: args.receive_maximum,
            session_expiry: args.session_expiry,
            broker_pid: args.broker_pid,
            per_topic: args.per_topic,
            json: args.json,
            progress: !args.quiet,
            run_id,
            shared_socket: conn && quic && !args.socket_per_client,
            quic_endpoint: None,
        })
    }

    /// The topic publisher `i` publishes to.
    pub fn publisher_topic(&self, i: usize) -> String {
        match self.scenario {
            Scenario::FanOut => format!("{}/0", self.topic),
            _ => format!("{}/{i}", self.topic),
        }
    }

    /// The filter subscriber `j` subscribes to.
    pub fn subscriber_filter(&self, j: usize) -> String {
        match self.scenario {
            Scenario::FanOut => format!("{}/0", self.topic),
            Scenario::Pairs => format!("{}/{j}", self.topic),
            _ => format!("{}/#", self.topic),
        }
    }

    /// Whether subscriber `j` receives what publisher `i` publishes.
    pub fn delivers(&self, i: usize, j: usize) -> bool {
        match self.scenario {
            Scenario::Pairs => i == j,
            Scenario::FanIn | Scenario::FanOut => true,
            Scenario::Conn | Scenario::Pub | Scenario::Sub => false,
        }
    }

    /// The id publisher `i` writes in its payloads: the run id, then the index.
    pub fn publisher_id(&self, i: usize) -> u32 {
        (u32::from(self.run_id) << 16) | (i as u32 & 0xFFFF)
    }

    /// The client id of the `i`th client of `role` (`c`onnection, `p`ublisher, `s`ubscriber):
    /// short enough for any broker (MQTT 3.1.1 servers must accept 23 bytes).
    pub fn client_id(&self, role: char, i: usize) -> String {
        format!("bench-{:04x}-{role}{i}", self.run_id)
    }

    /// The server the `i`th client of `role` connects to: subscribers from the first server,
    /// publishers (and connections) from the second, round robin.
    pub fn server_for(&self, role: char, i: usize) -> &str {
        let n = self.servers.len().max(1);
        let k = if role == 's' { i % n } else { (i + 1) % n };
        self.servers.get(k).map_or("", String::as_str)
    }

    /// All servers, comma-separated (for reports).
    pub fn servers_text(&self) -> String {
        self.servers.join(",")
    }

    /// Connection options for a client of `server`.
    pub fn client_options(&self, server: &str, client_id: String) -> ClientOptions {
        let mut options = ClientOptions::new(server.to_owned())
            .version(self.version)
            .client_id(client_id)
            .keep_alive(self.keep_alive);
        options.username = self.username.clone();
        options.password = self.password.clone().map(Into::into);
        options.receive_maximum = self.receive_maximum;
        if let Some(secs) = self.session_expiry {
            options = options.clean_start(false).session_expiry(secs);
        }
        if let Some(tls) = &self.tls {
            options.transport = match self.transport {
                TransportKind::Mqtts => Transport::Mqtts(tls.clone()),
                _ => Transport::Quic(tls.clone()),
            };
        }
        if let Some(endpoint) = &self.quic_endpoint {
            options = options.quic_endpoint(endpoint.clone());
        }
        match self.quic_mode {
            Some(QuicMode::Datagram) => options = options.datagrams(true),
            Some(QuicMode::Topics) => options = options.stream_mapping(StreamMapping::Topic),
            _ => {}
        }
        options
    }

    /// One line saying what runs, for the summary.
    pub fn describe(&self) -> String {
        let transport = match self.quic_mode {
            Some(QuicMode::Single) => "QUIC single-stream".to_owned(),
            Some(QuicMode::Multi) => "QUIC multi-stream".to_owned(),
            Some(QuicMode::Topics) => "QUIC per-topic server streams".to_owned(),
            Some(QuicMode::Datagram) => "QUIC datagrams".to_owned(),
            None if self.transport == TransportKind::Ws => "WebSocket".to_owned(),
            None if self.transport == TransportKind::Mqtts => "MQTTS".to_owned(),
            None => "TCP".to_owned(),
        };
        let version = match self.version {
            ProtocolVersion::V5 => "MQTT 5",
            ProtocolVersion::V3_1_1 => "MQTT 3.1.1",
            ProtocolVersion::V3_1 => "MQTT 3.1",
        };
        let who = match self.scenario {
            Scenario::Conn => format!("{} connections", self.connections),
            Scenario::Pub => format!("{} publisher(s)", self.publishers),
            Scenario::Sub => format!("{} subscriber(s)", self.subscribers),
            Scenario::FanIn => format!("{} publishers -> 1 subscriber", self.publishers),
            Scenario::FanOut => format!("1 publisher -> {} subscribers", self.subscribers),
            Scenario::Pairs => format!("{} publisher/subscriber pairs", self.publishers),
        };
        let mut line = format!(
            "{} to {}: {who}, {transport}, {version}",
            self.scenario.name(),
            self.servers_text()
        );
        if self.shared_socket {
            line += ", one shared UDP socket";
        }
        if self.scenario != Scenario::Conn {
            line += &format!(", QoS {}, {}-byte payloads", self.qos as u8, self.size);
            if let Some(n) = self.count {
                let per = if self.scenario == Scenario::Sub {
                    "subscriber"
                } else {
                    "publisher"
                };
                line += &format!(", {n} msgs/{per}");
            }
            if let Some(d) = self.duration {
                line += &format!(", {} s", d.as_secs_f64());
            }
            match self.rate {
                Some(r) => line += &format!(", {r} msg/s per publisher"),
                None if self.publishers > 0 => line += ", max speed",
                None => {}
            }
        } else if let Some(r) = self.rate {
            line += &format!(", {r} conn/s");
        }
        line
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs < 1e9) {
        return Err(format!("{s:?}: give a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("{s:?} is not a positive rate")),
    }
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
