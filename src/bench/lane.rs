//! A bench client's way to the broker: the MQTT connection itself (TCP, QUIC single-stream) or a
//! QUIC data stream of its own (multi-stream). Publishers and subscribers only see a [`Lane`].
//!
//! A transport mode is a [`QuicMode`] variant, client options (`Plan::client_options`) and an
//! arm in [`open`]; per-topic server streams and datagrams need no lane of their own.

use std::time::{Duration, Instant};

use bytestring::ByteString;

use crate::client::{Client, ClientError, ClientStream, Message, PublishOutcome, ReceivedMessage};
use crate::codec::{QoS, ReasonCode};

use super::args::{Plan, QuicMode, TransportKind};

/// Received messages a subscriber's client queues before QoS 0 ones are dropped on our side
/// (twice this, see `Client::recv`): generous, so that a subscriber that falls behind for a
/// moment shows up as latency, not as loss blamed on the broker.
const SUBSCRIBER_INBOX: usize = 65_536;

pub enum Lane {
    /// The connection's control stream.
    Control(Client),
    /// A data stream; the client is kept to close the connection afterwards.
    Stream {
        stream: ClientStream,
        client: Client,
    },
}

/// Connects `client_id` as `plan` says; returns the lane and the connection setup time
/// (transport handshake to CONNACK).
pub async fn open(
    plan: &Plan,
    server: &str,
    client_id: String,
    subscriber: bool,
) -> Result<(Lane, Duration), ClientError> {
    let mut options = plan.client_options(server, client_id);
    if subscriber {
        options.inbox_capacity = SUBSCRIBER_INBOX;
    }
    let started = Instant::now();
    let (client, _connack) = if plan.transport == TransportKind::Ws {
        Client::connect_over(websocket(server).await?, options).await?
    } else {
        Client::connect(options).await?
    };
    let setup = started.elapsed();
    let lane = match plan.quic_mode {
        // Per-topic streams are the server's to open, datagrams are no stream: both use the
        // control stream for everything else.
        None | Some(QuicMode::Single | QuicMode::Topics | QuicMode::Datagram) => {
            Lane::Control(client)
        }
        Some(QuicMode::Multi) => match client.open_stream().await {
            Ok(stream) => Lane::Stream { stream, client },
            Err(e) => {
                client.abort().await;
                return Err(e);
            }
        },
    };
    Ok((lane, setup))
}

/// MQTT over WebSocket to `server` (`ws://server/mqtt`, subprotocol mqtt), as bytes.
async fn websocket(
    server: &str,
) -> Result<crate::transport::ws_io::WsIo<tokio::net::TcpStream>, ClientError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let failed = |e: std::io::Error| ClientError::Connect {
        server: server.to_owned(),
        source: e,
    };
    let tcp = tokio::net::TcpStream::connect(server)
        .await
        .map_err(failed)?;
    let _ = tcp.set_nodelay(true);
    let mut request = format!("ws://{server}/mqtt")
        .into_client_request()
        .map_err(|e| failed(std::io::Error::other(e)))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static("mqtt"),
    );
    let (ws, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .map_err(|e| failed(std::io::Error::other(e)))?;
    Ok(crate::transport::ws_io::WsIo::new(ws))
}

impl Lane {
    pub async fn publish(&self, message: Message) -> Result<PublishOutcome, ClientError> {
        match self {
            Lane::Control(client) => client.publish_with(message).await,
            Lane::Stream { stream, .. } => stream.publish_with(message).await,
        }
    }

    pub async fn subscribe(&self, filter: String, qos: QoS) -> Result<ReasonCode, ClientError> {
        let filter = ByteString::from(filter);
        match self {
            Lane::Control(client) => client.subscribe(filter, qos).await,
            Lane::Stream { stream, .. } => stream.subscribe(filter, qos).await,
        }
    }

    pub async fn recv(&self) -> Result<ReceivedMessage, ClientError> {
        match self {
            Lane::Control(client) => client.recv().await,
            Lane::Stream { stream, .. } => stream.recv().await,
        }
    }

    pub async fn recv_many(
        &self,
        out: &mut Vec<Result<ReceivedMessage, ClientError>>,
        limit: usize,
    ) -> usize {
        match self {
            Lane::Control(client) => client.recv_many(out, limit).await,
            Lane::Stream { stream, .. } => stream.recv_many(out, limit).await,
        }
    }

    /// Closes the connection cleanly (DISCONNECT).
    pub async fn close(self) -> Result<(), ClientError> {
        let client = match self {
            Lane::Control(client) => client,
            Lane::Stream { stream, client } => {
                drop(stream);
                client
            }
        };
        client.disconnect().await
    }
}

/// The client's QUIC extension counters, for the report (datagrams sent and fallen back).
pub fn quic_stats(lane: &Lane) -> crate::client::QuicStats {
    match lane {
        Lane::Control(client) | Lane::Stream { client, .. } => client.quic_stats(),
    }
}
