//! Back to QUIC after a fallback (`Fallback::retry_quic`): a client that connected over MQTTS
//! (or TCP) because QUIC got no answer checks, every `retry_quic`, whether a QUIC handshake
//! completes now. The check runs in a task of its own beside the live connection (the driver
//! keeps serving it meanwhile); once QUIC answers, the driver ends the fallback connection
//! with a normal DISCONNECT (no will; the session stays, as its expiry says) and reconnects
//! to the same server, QUIC first. Only with automatic reconnection: it is what resumes the
//! session, and subscribes again if the server lost it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Driver;
use crate::client::dial::Dialer;
use crate::client::options::ClientOptions;
use crate::client::quic_ext::Counters;

/// The schedule of the checks while connected over the fallback.
#[derive(Default)]
pub(super) struct QuicReturn {
    /// When to check next; `None`: not on the fallback (or no checks configured).
    pub(super) at: Option<Instant>,
    /// The check in progress: true once a QUIC handshake completed.
    pub(super) check: Option<oneshot::Receiver<bool>>,
}

impl QuicReturn {
    /// A new connection: checks start `every` from now if it is on the fallback.
    pub(super) fn connected(&mut self, fallback: bool, every: Option<Duration>, now: Instant) {
        self.check = None;
        self.at = every.filter(|_| fallback).map(|every| now + every);
    }

    /// The connection ended: no checks until the next one is made.
    pub(super) fn stop(&mut self) {
        self.at = None;
        self.check = None;
    }
}

/// Resolves with the outcome of the check in progress; never without one.
pub(super) async fn checked(check: &mut Option<oneshot::Receiver<bool>>) -> bool {
    match check {
        Some(rx) => rx.await.unwrap_or(false),
        None => std::future::pending().await,
    }
}

impl Driver {
    /// The server this connection was dialled to, and its dialer (automatic reconnection only).
    fn current_server(&self) -> Option<(ClientOptions, Arc<Dialer>)> {
        let redial = self.redial.as_ref()?;
        redial.servers.get(redial.connected_to).cloned()
    }

    /// Starts a check: a QUIC handshake with the current server, in a task of its own.
    pub(super) fn check_quic(&mut self) {
        self.quic_return.at = None;
        let Some((options, dialer)) = self.current_server() else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(dialer.quic_answers(&options).await);
        });
        self.quic_return.check = Some(rx);
    }

    /// A check ended: back to QUIC if it answered, else the next check in `retry_quic`.
    pub(super) async fn quic_checked(&mut self, answered: bool) {
        self.quic_return.check = None;
        let Some((options, dialer)) = self.current_server() else {
            return;
        };
        if !answered {
            self.quic_return
                .connected(true, dialer.retry_quic(), Instant::now());
            return;
        }
        tracing::info!(server = %options.server, "QUIC answers again: leaving the fallback connection for QUIC");
        Counters::add(&self.shared.counters.quic_returns, 1);
        self.disconnect().await;
        // As after a loss: what waited unacknowledged comes again on the next connection.
        self.inboxes.forget_backlog();
        if let Some(redial) = &mut self.redial {
            // The same server again, at once.
            redial.attempt = u32::try_from(redial.connected_to).unwrap_or(0);
        }
        self.redial().await;
    }
}
