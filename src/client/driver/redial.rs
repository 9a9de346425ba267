//! Automatic reconnection (`ClientOptions::reconnect`): which server to dial next (the
//! configured one, then the alternates in order), when (backoff with jitter), and what to
//! subscribe again when the server lost the session.

use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;

use super::Driver;
use crate::client::dial::Dialer;
use crate::client::error::ClientError;
use crate::client::options::{ClientOptions, Reconnect};
use crate::client::state::StreamKey;
use crate::client::types::Subscription;

/// Automatic reconnection: where to dial, and when next.
pub(crate) struct Redial {
    reconnect: Reconnect,
    /// `options.server` first, then the alternates: the options to dial with and their dialer.
    pub(super) servers: Vec<(ClientOptions, Arc<Dialer>)>,
    /// Index in `servers` of the current (or last) connection's server.
    pub(super) connected_to: usize,
    /// Failed attempts since the last connection.
    pub(super) attempt: u32,
    /// When to dial next; `None` while connected (or closed).
    pub(super) at: Option<Instant>,
    /// What was subscribed on the control stream, to subscribe again on a new session.
    pub(super) subscriptions: Vec<Subscription>,
}

impl Redial {
    /// Dialers for `options.server` (the client's own, `first`) and every alternate.
    pub fn new(options: &ClientOptions, first: Arc<Dialer>) -> Result<Option<Redial>, ClientError> {
        let Some(reconnect) = options.reconnect.clone() else {
            return Ok(None);
        };
        if matches!(*first, Dialer::Given) {
            return Ok(None);
        }
        let mut servers = vec![(options.clone(), first)];
        for alternate in &reconnect.alternates {
            let mut alt = options.clone();
            alt.server = alternate.clone();
            let dialer = Arc::new(Dialer::new(&alt)?);
            servers.push((alt, dialer));
        }
        Ok(Some(Redial {
            reconnect,
            servers,
            connected_to: 0,
            attempt: 0,
            at: None,
            subscriptions: Vec::new(),
        }))
    }

    pub(super) fn schedule(&mut self, now: Instant) {
        let delay = self
            .reconnect
            .delay(self.attempt, crate::client::options::jitter());
        self.at = Some(now + delay);
    }

    /// Forgets `filters` from the subscriptions to restore.
    pub(super) fn unsubscribed(&mut self, filters: &[ByteString]) {
        for s in &mut self.subscriptions {
            s.filters.retain(|(f, _)| !filters.contains(f));
        }
        self.subscriptions.retain(|s| !s.filters.is_empty());
    }
}

impl Driver {
    /// Dials the next server of the automatic reconnection and resumes the session; on failure
    /// schedules the next attempt.
    pub(super) async fn redial(&mut self) {
        let Some(redial) = &mut self.redial else {
            return;
        };
        redial.at = None;
        let index = redial.attempt as usize % redial.servers.len().max(1);
        let Some((options, dialer)) = redial.servers.get(index).cloned() else {
            return;
        };
        redial.attempt = redial.attempt.saturating_add(1);
        tracing::debug!(server = %options.server, attempt = redial.attempt, "reconnecting");
        let result = match dialer.dial(&options).await {
            Ok(parts) => self.establish(parts, false, Vec::new()).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(connected) => {
                tracing::info!(server = %options.server, session_present = connected.session_present, "reconnected");
                if let Some(redial) = &mut self.redial {
                    redial.attempt = 0;
                    redial.connected_to = index;
                    if !connected.session_present {
                        let now = Instant::now();
                        for subscription in redial.subscriptions.clone() {
                            let _ = self.state.subscribe(StreamKey::CONTROL, subscription, now);
                        }
                    }
                }
            }
            Err(error) => {
                tracing::debug!(server = %options.server, %error, "reconnection failed");
                self.loss = error.to_string();
                if let Some(redial) = &mut self.redial {
                    redial.schedule(Instant::now());
                }
            }
        }
    }
}
