//! The WebTransport development certificate (`quic.webtransport_dev_cert`).
//!
//! Chromium accepts a server without a CA-signed certificate only through
//! `serverCertificateHashes`, and only for an ECDSA P-256 certificate valid for at most 14
//! days. So the broker can generate one in memory, present it to connections that offer ALPN
//! `h3` (MQTT clients keep the main certificate), rotate it before it expires, log its SHA-256
//! hash and serve the hash on the WebSocket listener at [`HASH_PATH`] for pages to fetch.
//! Production uses a CA-signed certificate (`tls.cert`) and leaves this off.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Where the WebSocket listeners serve the current hash (JSON).
pub const HASH_PATH: &str = "/.well-known/mqttd-webtransport-cert-hash";
/// Validity of each certificate: under Chromium's 14-day limit.
pub const VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);
/// A new certificate replaces the current one this often, well before it expires.
pub const ROTATE_EVERY: Duration = Duration::from_secs(6 * 24 * 3600);

/// The current development certificate and its hash.
#[derive(Debug)]
pub struct DevCert {
    current: RwLock<Current>,
}

#[derive(Debug, Clone)]
struct Current {
    key: Arc<CertifiedKey>,
    /// SHA-256 of the DER certificate, lowercase hex.
    hash: String,
}

impl DevCert {
    /// Generates the first certificate.
    pub fn generate() -> Result<Arc<DevCert>, String> {
        Ok(Arc::new(DevCert {
            current: RwLock::new(new_certificate(SystemTime::now())?),
        }))
    }

    /// Replaces the certificate with a new one (connections already made keep theirs).
    pub fn rotate(&self) -> Result<(), String> {
        let next = new_certificate(SystemTime::now())?;
        match self.current.write() {
            Ok(mut c) => *c = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        Ok(())
    }

    fn current(&self) -> Current {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The SHA-256 hash of the current certificate, hex.
    pub fn hash(&self) -> String {
        self.current().hash
    }

    /// What [`HASH_PATH`] answers: `{"algorithm": "sha-256", "value": HEX}`, the shape of a
    /// `serverCertificateHashes` entry (with the value in hex).
    pub fn hash_json(&self) -> String {
        serde_json::json!({ "algorithm": "sha-256", "value": self.hash() }).to_string()
    }
}

fn new_certificate(now: SystemTime) -> Result<Current, String> {
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let names: Vec<String> = super::cert::GENERATED_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    // A minute of slack for clocks behind ours; the whole span stays within VALIDITY.
    let start = since_epoch.saturating_sub(Duration::from_secs(60));
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + start;
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + start + VALIDITY;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = CertificateDer::from(cert.der().to_vec());
    let hash = ring::digest::digest(&ring::digest::SHA256, der.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&private).map_err(|e| e.to_string())?;
    Ok(Current {
        key: Arc::new(CertifiedKey::new(vec![der], signing)),
        hash,
    })
}

/// Presents the development certificate to clients offering ALPN `h3` and defers to the
/// broker's usual certificate for everyone else.
#[derive(Debug)]
pub struct ByAlpn {
    pub usual: Arc<dyn ResolvesServerCert>,
    pub dev: Arc<DevCert>,
}

impl ResolvesServerCert for ByAlpn {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let h3 = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == super::webtransport::ALPN_H3));
        if h3 {
            Some(self.dev.current().key)
        } else {
            self.usual.resolve(hello)
        }
    }
}

/// Rotates `dev` every [`ROTATE_EVERY`] for as long as the broker runs, logging each hash.
pub async fn rotate_forever(dev: Arc<DevCert>) {
    let mut every = tokio::time::interval(ROTATE_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        match dev.rotate() {
            Ok(()) => {
                tracing::info!(sha256 = %dev.hash(), path = HASH_PATH, "WebTransport development certificate rotated")
            }
            Err(e) => {
                tracing::error!(error = %e, "WebTransport development certificate not rotated")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chromium_accepts_it_by_hash_ecdsa_p256_under_14_days() {
        let dev = DevCert::generate().unwrap();
        let current = dev.current();
        let der = &current.key.cert[0];
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let validity = cert.validity();
        let span = validity.not_after.timestamp() - validity.not_before.timestamp();
        assert!(span <= 14 * 24 * 3600, "valid for {span} s");
        assert!(validity.is_valid(), "valid now");
        // id-ecPublicKey with the P-256 curve.
        let spki = &cert.tbs_certificate.subject_pki.algorithm;
        assert_eq!(spki.algorithm.to_id_string(), "1.2.840.10045.2.1");
        assert_eq!(current.hash.len(), 64);
        let before = dev.hash();
        dev.rotate().unwrap();
        assert_ne!(dev.hash(), before, "a rotation makes a new certificate");
        assert!(dev.hash_json().contains("\"sha-256\""));
    }
}
