//! TLS for the QUIC and MQTTS listeners: one certificate, TLS 1.3 only, resumption tickets,
//! and (QUIC only) 0-RTT early data.
//!
//! rustls accepts early data only with stateful resumption: a ticket is an index into the
//! server's own session cache, and the cache hands each entry out once (`take`). A stateless
//! ticketer silently turns 0-RTT off, and rustls' default cache of 256 entries would make most
//! clients of a busy broker fall back to a full handshake, so the cache is sized from
//! `quic.session_cache_size` (and grows with use: `session_cache.rs`). The single use is the anti-replay guarantee
//! (`proto-ext/zero-rtt.md`).

use std::sync::Arc;

use rustls::server::NoServerSessionStorage;

use super::cert::Identity;
use super::session_cache::SessionCache;
use crate::config::{Config, ZeroRtt};

/// Tickets sent per handshake: a client uses one per reconnection and gets a new one each
/// time, so one is enough, and the cache then holds one entry per resumable client.
const TICKETS_PER_HANDSHAKE: usize = 1;

/// The TLS 1.3 cipher suites in the order the broker picks them, whatever order the client
/// offers them in. rustls (and most clients) list AES-256-GCM with SHA-384 first; AES-128-GCM
/// with SHA-256 is the suite every TLS 1.3 implementation must have (RFC 8446 9.1), its key
/// schedule runs on the CPU's SHA-256 instructions where SHA-384 has none, and it encrypts
/// every QUIC packet and TLS record with 10 AES rounds instead of 14.
const CIPHER_SUITES: [rustls::SupportedCipherSuite; 3] = [
    rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
    rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
    rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
];

/// Which listener a TLS configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// QUIC: ALPN required, early data as `quic.zero_rtt` says.
    Quic,
    /// MQTTS (TCP): no ALPN required, no early data (TCP gives it no round trip to save
    /// before the TLS handshake anyway, and it would need its own replay rules).
    Mqtts,
}

/// The rustls server configuration of `listener`.
pub fn server_config(
    config: &Config,
    identity: &Identity,
    listener: Listener,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        ..rustls::crypto::ring::default_provider()
    });
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?;
    let builder = match &config.tls.client_ca {
        Some(ca) => builder.with_client_cert_verifier(client_verifier(
            ca,
            config.tls.require_client_cert,
            provider,
        )?),
        None => builder.with_no_client_auth(),
    };
    let mut tls = builder
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| format!("{}: {e}", identity.cert_path.display()))?;
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tls.ignore_client_order = true;
    let q = &config.quic;
    if q.session_tickets {
        tls.session_storage = Arc::new(SessionCache::new(q.session_cache_size));
        tls.send_tls13_tickets = TICKETS_PER_HANDSHAKE;
    } else {
        tls.session_storage = Arc::new(NoServerSessionStorage {});
        tls.send_tls13_tickets = 0;
    }
    // QUIC allows only 0 or u32::MAX here (RFC 9001 4.6.1); the ticket carries it.
    tls.max_early_data_size = if early_data_enabled(config, listener) {
        u32::MAX
    } else {
        0
    };
    Ok(tls)
}

/// Whether `listener` accepts 0-RTT early data under `config`. Never with mutual TLS: the
/// login is decided from the verified client certificate, and early data would come before
/// the handshake that proves it.
pub fn early_data_enabled(config: &Config, listener: Listener) -> bool {
    listener == Listener::Quic
        && config.quic.session_tickets
        && config.quic.zero_rtt != ZeroRtt::Off
        && config.tls.client_ca.is_none()
}

/// What `mqttd check-config` verifies of the TLS files without starting a listener: the
/// certificate and key when both are set (they must load and match), and the client CA file
/// of mutual TLS. The messages name the key and the file, as at start-up.
pub fn check_files(config: &Config) -> Result<(), String> {
    if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) {
        let identity = super::cert::load_pem(cert, key).map_err(|e| e.to_string())?;
        let provider = rustls::crypto::ring::default_provider();
        rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(identity.chain, identity.key)
            .map_err(|e| format!("tls.cert / tls.key: {}: {e}", cert.display()))?;
    }
    if let Some(ca) = &config.tls.client_ca {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        client_verifier(ca, config.tls.require_client_cert, provider)?;
    }
    Ok(())
}

/// Mutual TLS: client certificates must chain to a CA of `ca` (a PEM file); `required`
/// refuses clients without one.
fn client_verifier(
    ca: &std::path::Path,
    required: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let name = |e: &dyn std::fmt::Display| format!("tls.client_ca: {}: {e}", ca.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| name(&e))? {
        let cert = cert.map_err(|e| name(&e))?;
        roots.add(cert).map_err(|e| name(&e))?;
    }
    if roots.is_empty() {
        return Err(name(&"no CA certificate in the file"));
    }
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|e| name(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> (tempfile::TempDir, Identity) {
        let dir = tempfile::tempdir().unwrap();
        let identity = super::super::cert::load_or_generate(dir.path()).unwrap();
        (dir, identity)
    }

    #[test]
    fn tickets_are_stateful_and_early_data_follows_the_policy() {
        let (_dir, identity) = identity();
        let mut config = Config::default();
        let tls = server_config(&config, &identity, Listener::Quic, &[b"mqtt"]).unwrap();
        assert_eq!(tls.max_early_data_size, u32::MAX);
        assert!(!tls.ticketer.enabled(), "a ticketer would disable 0-RTT");
        assert_eq!(tls.send_tls13_tickets, 1);
        assert!(tls.session_storage.can_cache());

        let tls = server_config(&config, &identity, Listener::Mqtts, &[]).unwrap();
        assert_eq!(tls.max_early_data_size, 0);
        assert_eq!(tls.send_tls13_tickets, 1);

        config.quic.zero_rtt = ZeroRtt::Off;
        let tls = server_config(&config, &identity, Listener::Quic, &[b"mqtt"]).unwrap();
        assert_eq!(tls.max_early_data_size, 0);
        assert_eq!(
            tls.send_tls13_tickets, 1,
            "tickets still shorten the handshake"
        );

        config.quic.zero_rtt = ZeroRtt::Full;
        config.quic.session_tickets = false;
        let tls = server_config(&config, &identity, Listener::Quic, &[b"mqtt"]).unwrap();
        assert_eq!((tls.max_early_data_size, tls.send_tls13_tickets), (0, 0));
        assert!(!tls.session_storage.can_cache());
    }

    #[test]
    fn a_ticket_is_handed_out_once() {
        // The store the QUIC listener is configured with.
        let (_dir, identity) = identity();
        let tls = server_config(&Config::default(), &identity, Listener::Quic, &[b"mqtt"]).unwrap();
        let cache = tls.session_storage;
        assert!(cache.put(b"id".to_vec(), b"session".to_vec()));
        assert_eq!(cache.take(b"id"), Some(b"session".to_vec()));
        assert_eq!(cache.take(b"id"), None, "a replayed ticket finds nothing");
    }

    /// The broker picks AES-128-GCM with SHA-256 even from a client that lists AES-256 first
    /// (rustls' own order): an in-memory TLS handshake against the MQTTS configuration.
    #[test]
    fn the_server_picks_aes_128_whatever_the_client_prefers() {
        let (_dir, identity) = identity();
        let server = server_config(&Config::default(), &identity, Listener::Mqtts, &[]).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(identity.chain[0].clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        assert_eq!(
            client.crypto_provider().cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            "the client prefers AES-256"
        );
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..10 {
            let mut bytes = Vec::new();
            client.write_tls(&mut bytes).unwrap();
            server.read_tls(&mut &bytes[..]).unwrap();
            server.process_new_packets().unwrap();
            let mut bytes = Vec::new();
            server.write_tls(&mut bytes).unwrap();
            client.read_tls(&mut &bytes[..]).unwrap();
            client.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        assert!(!server.is_handshaking(), "the handshake completes");
        assert_eq!(
            server.negotiated_cipher_suite().map(|s| s.suite()),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
    }
}
