//! Login verdicts in the connection glue: the CONNECT's credentials, the verified client
//! certificate and the peer address go through [`crate::auth::Authenticator`] before the
//! CONNECT reaches the broker, which gets the verdict as an event just ahead of it.
//!
//! A password check is an Argon2 computation (tens of milliseconds, 19 MiB): it runs on
//! tokio's blocking pool, on all cores but one at most (a CONNECT flood queues here instead
//! of exhausting memory or starving the runtime), and never on the broker task. The reader of
//! the connection waits meanwhile, so packets sent after CONNECT keep their order behind it.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::sync::Semaphore;

use crate::auth::Login;
use crate::auth::{Authenticator, Credentials};
use crate::codec::{Connect, ReasonCode};

/// The authenticator in force (replaced on reload) and the bound on concurrent checks.
pub struct LoginGate {
    auth: RwLock<Arc<Authenticator>>,
    permits: Semaphore,
}

impl LoginGate {
    pub fn new(auth: Authenticator) -> Arc<LoginGate> {
        // One core stays free for the broker and the connections even under a CONNECT flood.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(LoginGate {
            auth: RwLock::new(Arc::new(auth)),
            permits: Semaphore::new(cores.saturating_sub(1).max(1)),
        })
    }

    /// The authenticator in force.
    pub fn current(&self) -> Arc<Authenticator> {
        match self.auth.read() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the authenticator (a reloaded password file); connections already logged in
    /// keep their login.
    pub fn replace(&self, auth: Authenticator) {
        match self.auth.write() {
            Ok(mut a) => *a = Arc::new(auth),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(auth),
        }
    }
}

/// What one connection's control stream reader needs to judge its CONNECT.
#[derive(Clone)]
pub struct LoginContext {
    pub gate: Arc<LoginGate>,
    pub peer: SocketAddr,
    /// The verified client certificate's identity (mutual TLS), if any.
    pub identity: Option<String>,
    /// A verdict given beforehand, without looking at the credentials: connections the
    /// broker opens to itself in-process (a bridge's local side) are its own.
    pub preauthorized: Option<Login>,
}

impl LoginContext {
    /// The verdict on `connect`.
    pub async fn verdict(&self, connect: &Connect) -> Login {
        if let Some(login) = &self.preauthorized {
            return login.clone();
        }
        let auth = self.gate.current();
        let username = connect.username.as_deref();
        let creds = Credentials {
            username,
            password: connect.password.as_deref(),
            identity: self.identity.as_deref(),
            peer: Some(self.peer.ip()),
        };
        if !auth.needs_password_check(&creds) {
            return auth.login(&creds);
        }
        let Ok(_permit) = self.gate.permits.acquire().await else {
            return Login::Refused(ReasonCode::SERVER_UNAVAILABLE);
        };
        let username = connect.username.clone();
        let password = connect.password.clone();
        let identity = self.identity.clone();
        let peer = self.peer.ip();
        let check = tokio::task::spawn_blocking(move || {
            auth.login(&Credentials {
                username: username.as_deref(),
                password: password.as_deref(),
                identity: identity.as_deref(),
                peer: Some(peer),
            })
        });
        check
            .await
            .unwrap_or(Login::Refused(ReasonCode::SERVER_UNAVAILABLE))
    }
}

/// The identity of the first (leaf) certificate of a verified client chain.
pub fn peer_identity(chain: Option<&[rustls_pki_types::CertificateDer<'_>]>) -> Option<String> {
    chain
        .and_then(|c| c.first())
        .and_then(|leaf| crate::auth::identity::certificate_identity(leaf))
}
