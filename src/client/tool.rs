//! Running `mqttd pub` and `mqttd sub`: connect, do the one job, disconnect cleanly.
//!
//! Exit codes: 0 on success; 1 with one line on stderr (`mqttd pub: cannot connect to ...`)
//! when anything fails; clap's 2 for usage errors. `sub` prints each payload as raw bytes and a
//! newline (`-v`: topic, space, payload), flushing after each so pipes see messages at once.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use tracing_subscriber::EnvFilter;

use super::args::{PubArgs, SubArgs};
use super::error::{reason_name, ClientError};
use super::handle::Client;
use super::types::{Connected, Message, Pipelined, PublishOutcome, Subscription};
use crate::codec::QoS;

/// `mqttd pub`.
pub fn run_pub(args: &PubArgs) -> ExitCode {
    finish("pub", block_on(publish(args)))
}

/// `mqttd sub`.
pub fn run_sub(args: &SubArgs) -> ExitCode {
    finish("sub", block_on(subscribe(args)))
}

fn finish(command: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mqttd {command}: {message}");
            ExitCode::FAILURE
        }
    }
}

fn block_on<F: std::future::Future<Output = Result<(), String>>>(future: F) -> Result<(), String> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(future)
}

/// Warnings only, unless `RUST_LOG` says otherwise: the output is the messages.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

async fn publish(args: &PubArgs) -> Result<(), String> {
    let payload = match (&args.message, &args.file) {
        (Some(message), _) => Bytes::from(message.clone()),
        (None, Some(file)) => std::fs::read(file).map(Bytes::from).map_err(|e| {
            format!(
                "cannot read {}: {}",
                file.display(),
                super::error::io_reason(&e)
            )
        })?,
        (None, None) => Bytes::new(),
    };
    let mut options = args.connection.client_options("pub");
    if args.datagram {
        options.send_datagrams = true;
        // MQTT 5.0: the CONNACK then reports the broker's datagram limit for -v.
        options.receive_datagrams = options.version.is_v5();
    }
    let message = Message::new(args.topic.clone(), payload)
        .qos(args.qos)
        .retain(args.retain);
    let mut stdout = std::io::stdout().lock();
    let (connections, per_connection) = if args.reconnect {
        (args.count, 1)
    } else {
        (1, args.count)
    };
    for _ in 0..connections {
        // A QoS 0 message rides right behind the CONNECT (as 0-RTT early data when resuming),
        // unless it is to go in a datagram: the broker takes those only after its CONNACK.
        let pipelined = Pipelined {
            subscription: None,
            messages: if message.qos == QoS::AtMostOnce && !args.datagram {
                vec![message.clone()]
            } else {
                Vec::new()
            },
        };
        let (client, connected, early) = Client::connect_pipelined(options.clone(), pipelined)
            .await
            .map_err(text)?;
        if args.verbose {
            // On stderr, like the broker's own diagnostics: stdout keeps one line per publish.
            eprintln!("{}", describe_connection(&options, &connected));
        }
        let mut outcomes = Vec::new();
        for outcome in early.published {
            outcomes.push(outcome.map_err(text)?);
        }
        for _ in outcomes.len() as u64..per_connection {
            outcomes.push(client.publish_with(message.clone()).await.map_err(text)?);
        }
        if args.verbose {
            for outcome in &outcomes {
                print_outcome(&mut stdout, &message, outcome);
            }
            if args.datagram {
                let stats = client.quic_stats();
                eprintln!(
                    "{} message(s) sent as QUIC datagrams, {} on the stream instead",
                    stats.datagrams_sent, stats.datagrams_fallback
                );
            }
        }
        let _ = stdout.flush();
        client.disconnect().await.map_err(text)?;
    }
    Ok(())
}

/// How a connection was made, for `-v`.
fn describe_connection(options: &super::options::ClientOptions, connected: &Connected) -> String {
    let transport = match options.transport {
        super::options::Transport::Tcp => "TCP",
        super::options::Transport::Quic(_) => "QUIC",
        super::options::Transport::Mqtts(_) => "TLS (MQTTS)",
    };
    let mut line = format!(
        "connected to {} over {transport} (session present: {}, 0-RTT: {})",
        options.server,
        u8::from(connected.session_present),
        connected.zero_rtt.describe()
    );
    if options.receive_datagrams || options.stream_mapping.is_some() {
        line.push_str("; ");
        line.push_str(&connected.quic.describe());
    }
    line
}

fn print_outcome(stdout: &mut impl Write, message: &Message, outcome: &PublishOutcome) {
    let id = outcome
        .packet_id
        .map(|id| format!(", packet id {id}"))
        .unwrap_or_default();
    let _ = writeln!(
        stdout,
        "published {} bytes to {} (QoS {}{id}): {} {}",
        message.payload.len(),
        message.topic,
        message.qos as u8,
        outcome.code,
        reason_name(outcome.code)
    );
}

async fn subscribe(args: &SubArgs) -> Result<(), String> {
    let mut options = args.connection.client_options("sub");
    if args.keep_session {
        if args.connection.id.is_none() {
            return Err("-c keeps the session of a client id: give one with -i ID".into());
        }
        options.clean_start = false;
        options.session_expiry = args.session_expiry.unwrap_or(u32::MAX);
    } else {
        options.session_expiry = args.session_expiry.unwrap_or(0);
    }
    if args.datagram || args.stream_mapping.is_some() {
        if !options.version.is_v5() {
            return Err("--datagram and --stream-mapping are asked for with MQTT 5 user properties: use -V 5".into());
        }
        options.receive_datagrams = args.datagram;
        options.stream_mapping = args.stream_mapping;
    }
    let deadline = args
        .timeout
        .map(|secs| tokio::time::Instant::now() + Duration::from_secs(secs));
    let subscription = args.topics.iter().fold(Subscription::new(), |s, topic| {
        s.filter(topic.as_str(), args.qos)
    });
    // The SUBSCRIBE rides right behind the CONNECT (as 0-RTT early data when resuming).
    let pipelined = Pipelined {
        subscription: Some(subscription),
        messages: Vec::new(),
    };
    let (client, connected, early) = Client::connect_pipelined(options.clone(), pipelined)
        .await
        .map_err(text)?;
    if args.verbose {
        eprintln!("{}", describe_connection(&options, &connected));
    }
    let acknowledged = early
        .subscribed
        .unwrap_or(Err(ClientError::Closed))
        .map_err(text)?;
    for (topic, code) in args.topics.iter().zip(&acknowledged.codes) {
        if code.is_error() {
            return Err(format!(
                "subscription to {topic} refused: {code} {}",
                reason_name(*code)
            ));
        }
    }
    let mut received = 0;
    let print = async {
        let mut stdout = std::io::stdout().lock();
        while args.count.is_none_or(|count| received < count) {
            let message = client.recv().await.map_err(text)?;
            let mut line = Vec::with_capacity(message.topic.len() + message.payload.len() + 2);
            if args.verbose {
                line.extend_from_slice(message.topic.as_bytes());
                line.push(b' ');
            }
            line.extend_from_slice(&message.payload);
            line.push(b'\n');
            stdout
                .write_all(&line)
                .and_then(|()| stdout.flush())
                .map_err(|e| format!("cannot write to stdout: {e}"))?;
            received += 1;
        }
        Ok::<(), String>(())
    };
    let outcome = match deadline {
        None => print.await,
        Some(deadline) => match tokio::time::timeout_at(deadline, print).await {
            Ok(result) => result,
            // -W without -C only bounds how long to listen.
            Err(_) if args.count.is_none() => Ok(()),
            Err(_) => Err(format!(
                "timed out after {}s with {received} of {} message(s)",
                args.timeout.unwrap_or(0),
                args.count.unwrap_or(0)
            )),
        },
    };
    if args.verbose && (args.datagram || args.stream_mapping.is_some()) {
        let stats = client.quic_stats();
        eprintln!(
            "{} message(s) received in QUIC datagrams, {} server stream(s)",
            stats.datagrams_received, stats.server_streams
        );
    }
    // Leave cleanly in every case: the broker must not take this for a lost client.
    let disconnected = client.disconnect().await.map_err(text);
    outcome.and(disconnected)
}

fn text(error: ClientError) -> String {
    error.to_string()
}
