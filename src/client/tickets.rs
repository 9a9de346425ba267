//! TLS session tickets of the QUIC transport, kept per server for the life of the process, so
//! that every connection to a server after the first (a reconnection, another `Client`) can
//! resume and send its CONNECT as 0-RTT early data.
//!
//! rustls only resumes a ticket with the very certificate verifier that accepted the server
//! the first time, so the whole TLS client configuration (verifier and ticket store) is built
//! once per server and trust setting and then shared. One per `host:port`: rustls keys tickets
//! by server name only, and two brokers on one host would otherwise be offered each other's
//! tickets (which only costs a refused 0-RTT, but costs it every time).
//!
//! Tickets live in memory: rustls 0.23 has no public way to serialize a client ticket (its
//! resumption secret is crate-private), so they cannot be kept on disk; a new process starts
//! with a full handshake. The broker's ticket cache does not outlive its process either
//! (`proto-ext/zero-rtt.md`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use super::error::ClientError;

/// Server names one ticket store holds tickets for (one server; a few names for it at most).
pub(crate) const NAMES_PER_STORE: usize = 4;

type Configs = Mutex<HashMap<String, quinn::ClientConfig>>;

fn configs() -> &'static Configs {
    static CONFIGS: OnceLock<Configs> = OnceLock::new();
    CONFIGS.get_or_init(Default::default)
}

/// The configuration for `key` (server, trust settings, 0-RTT), built by `build` the first
/// time.
pub(crate) fn shared_config(
    key: String,
    build: impl FnOnce() -> Result<quinn::ClientConfig, ClientError>,
) -> Result<quinn::ClientConfig, ClientError> {
    if let Some(config) = configs()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
    {
        return Ok(config.clone());
    }
    let config = build()?;
    let mut configs = configs().lock().unwrap_or_else(|p| p.into_inner());
    Ok(configs.entry(key).or_insert(config).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_configuration_per_key() {
        let mut built = 0;
        let make = |built: &mut i32| {
            *built += 1;
            let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
            let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
            Ok(quinn::ClientConfig::new(std::sync::Arc::new(crypto)))
        };
        shared_config("tickets-test-a".into(), || make(&mut built)).unwrap();
        shared_config("tickets-test-a".into(), || make(&mut built)).unwrap();
        shared_config("tickets-test-b".into(), || make(&mut built)).unwrap();
        assert_eq!(built, 2);
    }
}
