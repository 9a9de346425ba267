//! Connection migration on the server: a QUIC connection, not an address, is the MQTT
//! connection. quinn validates a client's new path by itself (`quic.migration`); this tells
//! the broker the new address (`Event::PeerAddressChanged`), which relabels the connection,
//! logs `client migrated` and counts it (`proto-ext/migration.md`).
//!
//! quinn 0.11 has no migration event: it switches the connection's remote address when a
//! packet arrives from the new path. So the connection's readers look at that address whenever
//! they receive something ([`PeerPath::on_receipt`]: a lock and a compare per read, not per
//! packet), and [`report_moves`] wakes only when one of them saw it change.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, watch};

use crate::broker::ConnId;
use crate::handoff::Event;

/// The label the broker shows for a QUIC peer.
pub fn peer_label(addr: SocketAddr) -> String {
    format!("quic:{addr}")
}

/// A connection's peer address as its readers last saw it; cloned into each reader.
#[derive(Clone)]
pub struct PeerPath(Arc<Seen>);

struct Seen {
    connection: quinn::Connection,
    address: watch::Sender<SocketAddr>,
}

/// Where [`report_moves`] learns of new addresses.
pub type Moves = watch::Receiver<SocketAddr>;

impl PeerPath {
    pub fn new(connection: quinn::Connection) -> (PeerPath, Moves) {
        let (address, moves) = watch::channel(connection.remote_address());
        (
            PeerPath(Arc::new(Seen {
                connection,
                address,
            })),
            moves,
        )
    }

    /// Something arrived on the connection: notes the peer address if it changed.
    pub fn on_receipt(&self) {
        let now = self.0.connection.remote_address();
        self.0.address.send_if_modified(|seen| {
            let moved = *seen != now;
            *seen = now;
            moved
        });
    }

    /// `reader`, calling [`PeerPath::on_receipt`] after each read that returns data.
    pub fn observe<R>(&self, reader: R) -> Observed<R> {
        Observed {
            reader,
            path: self.clone(),
        }
    }
}

/// A reader that reports receipts to its [`PeerPath`].
pub struct Observed<R> {
    reader: R,
    path: PeerPath,
}

impl<R> Observed<R> {
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.reader
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Observed<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.reader).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.path.on_receipt();
        }
        poll
    }
}

/// Reports the address changes the readers see until the broker is gone (then waits forever:
/// the connection task ends it). Moves with nothing received between them are one report.
pub async fn report_moves(conn: ConnId, mut moves: Moves, events: mpsc::Sender<Event>) {
    let mut current = *moves.borrow_and_update();
    while moves.changed().await.is_ok() {
        let now = *moves.borrow_and_update();
        tracing::debug!(conn = conn.0, old = %current, new = %now, "QUIC path changed");
        current = now;
        let event = Event::PeerAddressChanged {
            conn,
            peer: peer_label(now),
        };
        if events.send(event).await.is_err() {
            break;
        }
    }
    std::future::pending::<()>().await;
}
