//! MQTT over TCP (port 1883): the accept loop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use crate::broker::ConnId;
use crate::handoff::Event;

/// Accepts connections until `shutdown` turns true; each connection gets its own task, so a
/// slow client never blocks the accept loop.
pub async fn accept_loop(
    listener: TcpListener,
    events: mpsc::Sender<Event>,
    ids: Arc<AtomicU64>,
    max_packet_size: u32,
    gate: Arc<super::login::LoginGate>,
    shutdown: watch::Receiver<bool>,
    flushing: TaskTracker,
) {
    accept_sockets(listener, "MQTT", shutdown, |socket, peer| {
        let conn = ConnId(ids.fetch_add(1, Ordering::Relaxed));
        let events = events.clone();
        let login = super::login::LoginContext {
            gate: gate.clone(),
            peer,
            identity: None,
            preauthorized: None,
        };
        let flushing = flushing.token();
        tokio::spawn(async move {
            let (reader, writer) = socket.into_split();
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

/// The accept loop shared by the TCP-based listeners (MQTT, MQTTS): hands each socket, with
/// Nagle off, to `serve`, which must not block (it spawns); backs off on accept errors
/// (typically EMFILE) instead of spinning.
pub(crate) async fn accept_sockets(
    listener: TcpListener,
    name: &str,
    mut shutdown: watch::Receiver<bool>,
    mut serve: impl FnMut(tokio::net::TcpStream, SocketAddr),
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                serve(socket, peer);
            }
            Err(e) => {
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn peer_label(peer: SocketAddr) -> String {
    format!("tcp:{peer}")
}
