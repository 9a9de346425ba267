//! Connection migration on the server: a QUIC connection, not an address, is the MQTT
//! connection. quinn validates a client's new path by itself (`quic.migration`); this watcher
//! only tells the broker the new address (`Event::PeerAddressChanged`), which relabels the
//! connection, logs `client migrated` and counts it (`proto-ext/migration.md`).
//!
//! quinn 0.11 has no migration event, so the address is polled: cheap (a lock and a compare)
//! and bounded to one check per connection per [`POLL`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::broker::ConnId;
use crate::handoff::Event;

/// How often a connection's peer address is checked.
pub const POLL: Duration = Duration::from_millis(500);

/// The label the broker shows for a QUIC peer.
pub fn peer_label(addr: SocketAddr) -> String {
    format!("quic:{addr}")
}

/// Reports address changes of `connection` until the broker is gone (then waits forever: the
/// connection task ends it).
pub async fn watch_peer(conn: ConnId, connection: quinn::Connection, events: mpsc::Sender<Event>) {
    let mut current = connection.remote_address();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = connection.remote_address();
        if now == current {
            continue;
        }
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
