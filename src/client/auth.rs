//! Enhanced authentication (MQTT 5.0, 4.12) on the client side: a challenge/response
//! exchange (SASL-style: SCRAM, Kerberos, a signed nonce...) carried by the CONNECT's
//! Authentication Method and Data, AUTH packets with reason 0x18 (Continue authentication),
//! and the CONNACK. The method's logic is the application's ([`AuthMethod`]); the session
//! state machine ([`super::state::ClientState`]) carries its data and enforces the protocol's
//! rules around it.
//!
//! A new exchange starts at every connection attempt (reconnections included), since the
//! server authenticates each connection anew. Re-authentication on a live connection (AUTH
//! 0x19 from the client) is not offered.

use std::sync::Arc;

use bytes::Bytes;

/// An authentication method: its name and a fresh exchange per connection attempt.
pub trait AuthMethod: Send + Sync {
    /// The Authentication Method of the CONNECT (e.g. `SCRAM-SHA-256`).
    fn name(&self) -> &str;
    /// A new exchange, for one connection attempt.
    fn start(&self) -> Box<dyn AuthExchange>;
}

/// One exchange: the client's steps of the method.
pub trait AuthExchange: Send {
    /// The Authentication Data of the CONNECT (the client's first message), if any.
    fn initial_data(&mut self) -> Option<Bytes>;
    /// Answers the server's challenge (the Authentication Data of its AUTH 0x18) with the data
    /// of the client's AUTH 0x18; `Err(reason)` abandons the connection attempt (DISCONNECT
    /// 0x87 Not authorized).
    fn challenge(&mut self, data: Option<&Bytes>) -> Result<Option<Bytes>, String>;
    /// The server accepted (CONNACK 0x00) with this final Authentication Data (e.g. SCRAM's
    /// server signature); `Err(reason)` means the server did not prove itself: the client
    /// disconnects (0x87). Default: accept.
    fn success(&mut self, data: Option<&Bytes>) -> Result<(), String> {
        let _ = data;
        Ok(())
    }
}

/// [`ClientOptions::auth`](super::ClientOptions::auth): a shared [`AuthMethod`]. Two are
/// equal when they are the same method object.
#[derive(Clone)]
pub struct EnhancedAuth(pub Arc<dyn AuthMethod>);

impl EnhancedAuth {
    pub fn new(method: impl AuthMethod + 'static) -> EnhancedAuth {
        EnhancedAuth(Arc::new(method))
    }
}

impl std::fmt::Debug for EnhancedAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EnhancedAuth").field(&self.0.name()).finish()
    }
}

impl PartialEq for EnhancedAuth {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for EnhancedAuth {}
