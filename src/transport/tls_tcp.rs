//! MQTT over TCP + TLS 1.3 (MQTTS, usually port 8883): tokio-rustls in front of the same
//! stream loops as plain TCP, with the QUIC listener's certificate. Resumption tickets are on
//! (`quic.session_tickets`, a cache of its own); early data is not offered over TCP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::broker::ConnId;
use crate::handoff::Event;

/// The acceptor for `tls` (see `quic_tls::server_config` with `Listener::Mqtts`).
pub fn acceptor(tls: rustls::ServerConfig) -> TlsAcceptor {
    TlsAcceptor::from(Arc::new(tls))
}

/// Accepts connections until `shutdown` turns true; each connection's TLS handshake runs on
/// its own task, bounded by `handshake_timeout`.
#[allow(clippy::too_many_arguments)]
pub async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    events: mpsc::Sender<Event>,
    ids: Arc<AtomicU64>,
    max_packet_size: u32,
    handshake_timeout: Duration,
    gate: Arc<super::login::LoginGate>,
    shutdown: watch::Receiver<bool>,
    flushing: TaskTracker,
) {
    super::tcp::accept_sockets(listener, "MQTTS", shutdown, |socket, peer| {
        let acceptor = acceptor.clone();
        let events = events.clone();
        let ids = ids.clone();
        let gate = gate.clone();
        let flushing = flushing.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(socket)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "MQTTS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "MQTTS handshake timed out");
                    return;
                }
            };
            let conn = ConnId(ids.fetch_add(1, Ordering::Relaxed));
            // Mutual TLS: rustls has verified the chain against tls.client_ca.
            let identity = super::login::peer_identity(tls.get_ref().1.peer_certificates());
            let login = super::login::LoginContext {
                gate,
                peer,
                identity,
                preauthorized: None,
            };
            let (reader, writer) = tokio::io::split(tls);
            let flushing = flushing.token();
            super::stream::serve(
                conn,
                peer_label(peer),
                reader,
                writer,
                events,
                max_packet_size,
                login,
                flushing,
            )
            .await;
        });
    })
    .await;
}

fn peer_label(peer: SocketAddr) -> String {
    format!("mqtts:{peer}")
}
