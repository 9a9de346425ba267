//! `mqttd ctl`: the admin REST API from the command line (`mqttd ctl clients`, `ctl kick ID`,
//! `ctl publish TOPIC MESSAGE`...), a table by default and the API's JSON with `--json`.
//!
//! It only speaks HTTP to a running broker's admin listener (`--url`, default
//! `http://127.0.0.1:9884`; token from `--token`, `--token-file` or `MQTTD_ADMIN_TOKEN`), so
//! it works against any mqttd the operator can reach, and errors are the API's own messages.

mod http;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};

/// Arguments of `mqttd ctl`.
#[derive(clap::Args, Debug)]
pub struct CtlArgs {
    /// The admin listener.
    #[arg(long, default_value = "http://127.0.0.1:9884", global = true)]
    pub url: String,
    /// Bearer token (else `--token-file`, else the MQTTD_ADMIN_TOKEN environment variable).
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// A file whose first line is the token.
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum CtlCommand {
    /// List clients (sessions), connected or not.
    Clients {
        /// Only this transport: tcp, mqtts or quic.
        #[arg(long)]
        transport: Option<String>,
        /// Only connected clients.
        #[arg(long)]
        connected: bool,
        /// Client ids containing this text.
        #[arg(long = "like")]
        like: Option<String>,
    },
    /// One client, with its QUIC path figures over QUIC.
    Client { id: String },
    /// Disconnect a client (5.0: DISCONNECT 0x98) and discard its session.
    Kick { id: String },
    /// Subscriptions of one client, or of every client.
    Subscriptions { id: Option<String> },
    /// Subscribe a client to a topic filter.
    Subscribe {
        id: String,
        topic: String,
        #[arg(short, long, default_value_t = 0)]
        qos: u8,
    },
    /// Remove a client's subscription.
    Unsubscribe { id: String, topic: String },
    /// Subscribed topic filters.
    Topics,
    /// Publish a message as the broker.
    Publish {
        topic: String,
        message: String,
        #[arg(short, long, default_value_t = 0)]
        qos: u8,
        #[arg(short, long)]
        retain: bool,
        /// MESSAGE is base64.
        #[arg(long)]
        base64: bool,
    },
    /// Retained messages matching a filter (default #).
    Retained { filter: Option<String> },
    /// Delete a retained message.
    DeleteRetained { topic: String },
    /// Broker counts.
    Stats,
    /// MQTT listeners.
    Listeners,
}

/// Percent-encodes a path segment or query value (everything but unreserved characters).
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn token(args: &CtlArgs) -> Result<Option<String>, String> {
    if let Some(token) = &args.token {
        return Ok(Some(token.clone()));
    }
    if let Some(file) = &args.token_file {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        return Ok(text.lines().next().map(|l| l.trim().to_string()));
    }
    Ok(std::env::var("MQTTD_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty()))
}

/// What one command asks of the API, and how its answer is shown.
struct Call {
    method: &'static str,
    path: String,
    body: Option<Value>,
    show: fn(&Value) -> String,
}

fn call(command: &CtlCommand) -> Call {
    use CtlCommand::*;
    let get = |path: String, show: fn(&Value) -> String| Call {
        method: "GET",
        path,
        body: None,
        show,
    };
    match command {
        Clients {
            transport,
            connected,
            like,
        } => {
            let mut query = vec!["limit=10000".to_string()];
            if let Some(t) = transport {
                query.push(format!("transport={}", encode(t)));
            }
            if *connected {
                query.push("conn_state=connected".into());
            }
            if let Some(l) = like {
                query.push(format!("like_clientid={}", encode(l)));
            }
            get(
                format!("/api/v1/clients?{}", query.join("&")),
                table::clients,
            )
        }
        Client { id } => get(format!("/api/v1/clients/{}", encode(id)), table::object),
        Kick { id } => Call {
            method: "DELETE",
            path: format!("/api/v1/clients/{}", encode(id)),
            body: None,
            show: |_| "kicked".into(),
        },
        Subscriptions { id: Some(id) } => get(
            format!("/api/v1/clients/{}/subscriptions", encode(id)),
            table::subscriptions,
        ),
        Subscriptions { id: None } => get(
            "/api/v1/subscriptions?limit=10000".into(),
            table::subscriptions,
        ),
        Subscribe { id, topic, qos } => Call {
            method: "POST",
            path: format!("/api/v1/clients/{}/subscribe", encode(id)),
            body: Some(json!({ "topic": topic, "qos": qos })),
            show: table::object,
        },
        Unsubscribe { id, topic } => Call {
            method: "POST",
            path: format!("/api/v1/clients/{}/unsubscribe", encode(id)),
            body: Some(json!({ "topic": topic })),
            show: |_| "unsubscribed".into(),
        },
        Topics => get("/api/v1/topics?limit=10000".into(), table::topics),
        Publish {
            topic,
            message,
            qos,
            retain,
            base64,
        } => Call {
            method: "POST",
            path: "/api/v1/publish".into(),
            body: Some(json!({
                "topic": topic, "payload": message, "qos": qos, "retain": retain,
                "payload_encoding": if *base64 { "base64" } else { "plain" },
            })),
            show: |v| format!("published; reached {} subscriber(s)", v["reached"]),
        },
        Retained { filter } => get(
            format!(
                "/api/v1/mqtt/retainer/messages?limit=10000&topic={}",
                encode(filter.as_deref().unwrap_or("#"))
            ),
            table::retained,
        ),
        DeleteRetained { topic } => Call {
            method: "DELETE",
            path: format!("/api/v1/mqtt/retainer/message/{}", encode(topic)),
            body: None,
            show: |_| "deleted".into(),
        },
        Stats => get("/api/v1/stats".into(), table::object),
        Listeners => get("/api/v1/listeners".into(), table::listeners),
    }
}

fn execute(args: &CtlArgs) -> Result<String, String> {
    let authority = http::authority(&args.url)?;
    let token = token(args)?;
    let call = call(&args.command);
    let body = call.body.as_ref().map(Value::to_string);
    let reply = http::request(
        &authority,
        call.method,
        &call.path,
        token.as_deref(),
        body.as_deref(),
    )?;
    let value: Value = if reply.body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&reply.body)
            .map_err(|e| format!("HTTP {}: not JSON ({e}): {}", reply.status, reply.body))?
    };
    if !(200..300).contains(&reply.status) {
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or(reply.body.as_str());
        return Err(format!("HTTP {}: {message}", reply.status));
    }
    if args.json {
        return Ok(serde_json::to_string_pretty(&value).unwrap_or_default());
    }
    Ok((call.show)(&value))
}

/// Runs `mqttd ctl`; exit status 1 on any error (the API's message on stderr).
pub fn run(args: &CtlArgs) -> ExitCode {
    match execute(args) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mqttd ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn encode_keeps_unreserved_characters_only() {
        assert_eq!(super::encode("a/b+#c d"), "a%2Fb%2B%23c%20d");
        assert_eq!(super::encode("Az09-._~"), "Az09-._~");
    }
}
