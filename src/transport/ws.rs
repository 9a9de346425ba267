//! MQTT over WebSocket (`listeners.ws`, usually port 8083) and over WebSocket + TLS 1.3
//! (`listeners.wss`, 8084; the QUIC listener's certificate, our tokio-rustls acceptor).
//!
//! Per connection, in order and within `quic.handshake_timeout_secs`: a PROXY protocol header
//! from a trusted proxy (when the listener opts in), the TLS handshake (wss), the HTTP
//! upgrade request ([`super::ws_http`] judges it), then the WebSocket is read and written as a
//! byte stream ([`super::ws_io`]) by the same loops as TCP, so sessions, auth, ACL, limits
//! and metrics are those of every transport. The peer label is `ws:ADDR` / `wss:ADDR`, with
//! the client's address as the trusted proxy names it.
//!
//! This listener is separate from the admin HTTP listener: it speaks only the MQTT endpoint
//! and a few small resources ([`Resources`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use super::login::{LoginContext, LoginGate};
use super::ws_http::{self, Answer, Response};
use super::ws_io::WsIo;
use crate::broker::ConnId;
use crate::config::ProxyTrust;
use crate::handoff::Event;
use crate::ipnet::{any_contains, IpNetwork};

/// tungstenite's read buffer (its default, 128 KiB, is allocated per connection up front).
const READ_BUFFER: usize = 8 * 1024;

/// Small GET resources served beside the MQTT endpoint (path -> answer).
pub type Resources = Arc<dyn Fn(&str) -> Option<Response> + Send + Sync>;

/// One WebSocket listener's settings.
#[derive(Clone)]
pub struct WsListener {
    /// `ws` or `wss`: the peer label's scheme and the log's listener name.
    pub scheme: &'static str,
    /// TLS (wss) or none (ws).
    pub tls: Option<TlsAcceptor>,
    /// The MQTT endpoint's path (`websocket.path`).
    pub path: Arc<str>,
    pub proxy: ProxyTrust,
    pub trusted_proxies: Arc<[IpNetwork]>,
    /// Bound on the PROXY header, TLS handshake and upgrade request together.
    pub handshake_timeout: Duration,
    pub max_packet_size: u32,
    pub resources: Resources,
    /// Shutdown waits for each connection's last packets (see `stream::serve`).
    pub flushing: tokio_util::task::TaskTracker,
}

/// Accepts connections until `shutdown` turns true; each connection's handshakes run on its
/// own task.
pub async fn accept_loop(
    listener: TcpListener,
    settings: WsListener,
    events: mpsc::Sender<Event>,
    ids: Arc<AtomicU64>,
    gate: Arc<LoginGate>,
    shutdown: watch::Receiver<bool>,
) {
    let settings = Arc::new(settings);
    let name = if settings.tls.is_some() {
        "MQTT over WebSocket + TLS"
    } else {
        "MQTT over WebSocket"
    };
    super::tcp::accept_sockets(listener, name, shutdown, |socket, peer| {
        let settings = settings.clone();
        let events = events.clone();
        let ids = ids.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            let timeout = settings.handshake_timeout;
            let open = tokio::time::timeout(timeout, open(socket, peer, &settings)).await;
            let Ok(Some(opened)) = open else {
                if open.is_err() {
                    tracing::debug!(%peer, scheme = settings.scheme, "WebSocket handshake timed out");
                }
                return;
            };
            let conn = ConnId(ids.fetch_add(1, Ordering::Relaxed));
            let login = LoginContext {
                gate,
                peer: opened.client,
                identity: opened.identity,
                preauthorized: None,
            };
            let (reader, writer) = tokio::io::split(opened.io);
            super::stream::serve(
                conn,
                format!("{}:{}", settings.scheme, opened.client),
                reader,
                writer,
                events,
                settings.max_packet_size,
                login,
                settings.flushing.token(),
            )
            .await;
        });
    })
    .await;
}

/// A byte stream under the WebSocket: TCP, or TLS over TCP.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// An upgraded connection.
struct Opened {
    io: WsIo<Box<dyn Transport>>,
    /// The client's address (the socket peer, or what a trusted proxy named).
    client: SocketAddr,
    /// The verified client certificate's identity (wss with mutual TLS).
    identity: Option<String>,
}

/// PROXY header, TLS, upgrade. `None`: refused or failed (answered and logged here).
async fn open(mut socket: TcpStream, peer: SocketAddr, settings: &WsListener) -> Option<Opened> {
    let trusted = any_contains(&settings.trusted_proxies, peer.ip());
    let mut client = peer;
    if settings.proxy.proxy_protocol() && trusted {
        match super::proxy_protocol::read_header(&mut socket).await {
            Ok(super::proxy_protocol::ProxyHeader::Client(addr)) => client = addr,
            Ok(super::proxy_protocol::ProxyHeader::Local) => {}
            Err(e) => {
                tracing::debug!(%peer, error = %e, "PROXY protocol header refused");
                return None;
            }
        }
    }
    let (stream, identity): (Box<dyn Transport>, _) = match &settings.tls {
        None => (Box::new(socket), None),
        Some(acceptor) => match acceptor.accept(socket).await {
            Ok(tls) => {
                let identity = super::login::peer_identity(tls.get_ref().1.peer_certificates());
                (Box::new(tls), identity)
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "WebSocket TLS handshake failed");
                return None;
            }
        },
    };
    let (ws, forwarded_for) = upgrade(stream, peer, settings).await?;
    if settings.proxy.forwarded_for() && !forwarded_for.is_empty() {
        let ip = ws_http::forwarded_client(client.ip(), &forwarded_for, &settings.trusted_proxies);
        if ip != client.ip() {
            // X-Forwarded-For carries no port.
            client = SocketAddr::new(ip, 0);
        }
    }
    Some(Opened {
        io: WsIo::new(ws),
        client,
        identity,
    })
}

/// Reads the request head and answers it; on an upgrade, the WebSocket and the
/// `X-Forwarded-For` entries.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    settings: &WsListener,
) -> Option<(WebSocketStream<S>, Vec<String>)> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (answer, len) = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(judged) = ws_http::judge(&head, &settings.path, &*settings.resources) {
            break judged;
        }
    };
    match answer {
        Answer::Respond(response) => {
            tracing::debug!(%peer, status = response.status, body = %response.body, "WebSocket request refused");
            let _ = stream.write_all(&response.to_bytes()).await;
            let _ = stream.shutdown().await;
            None
        }
        Answer::Upgrade(upgrade) => {
            stream.write_all(&upgrade.response()).await.ok()?;
            stream.flush().await.ok()?;
            let limit = settings.max_packet_size as usize;
            let config = WebSocketConfig::default()
                .read_buffer_size(READ_BUFFER)
                .write_buffer_size(0)
                .max_frame_size(Some(limit))
                .max_message_size(Some(limit));
            // Bytes after the head are the client's first frames.
            let early = head.split_off(len.min(head.len()));
            let ws =
                WebSocketStream::from_partially_read(stream, early, Role::Server, Some(config))
                    .await;
            Some((ws, upgrade.forwarded_for))
        }
    }
}

/// No resources: every path but the MQTT endpoint's is 404.
pub fn no_resources() -> Resources {
    Arc::new(|_: &str| None)
}
