//! `tls:` the certificate of the TLS-based listeners, and mutual TLS.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Certificate and key for the TLS-based listeners (QUIC today). Both or neither: with neither,
/// a self-signed certificate is generated in the data directory on first start and reused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM CA certificate(s) client certificates are verified against (mutual TLS on MQTTS
    /// and QUIC); null: client certificates are not asked for.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse TLS clients without a valid certificate (else a certificate
    /// is optional, and verified when presented).
    pub require_client_cert: bool,
}
