//! The broker's TLS identity: a configured PEM certificate and key, or a self-signed
//! certificate generated on first start and kept in the data directory.
//!
//! Generating one means `mqttd` runs over QUIC with no setup at all; keeping it means clients
//! that pinned it (`--cafile <data-dir>/cert.pem`) keep working across restarts. PEM is parsed
//! with `rustls-pki-types` (rustls-pemfile is unmaintained).

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Names the generated certificate is valid for.
pub const GENERATED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate chain and its key.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Where the certificate came from (for logs and error messages).
    pub cert_path: PathBuf,
    /// True when mqttd generated it in this run.
    pub generated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: cannot read the certificate: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("{path}: cannot read the private key: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("{path}: no certificate found in the file (expected PEM \"BEGIN CERTIFICATE\")")]
    NoCert { path: PathBuf },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}

/// Loads a PEM chain and key.
pub fn load_pem(cert: &Path, key: &Path) -> Result<Identity, CertError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| CertError::Cert {
            path: cert.into(),
            reason: e.to_string(),
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Cert {
            path: cert.into(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCert { path: cert.into() });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| CertError::Key {
        path: key.into(),
        reason: e.to_string(),
    })?;
    Ok(Identity {
        chain,
        key,
        cert_path: cert.into(),
        generated: false,
    })
}

/// The certificate in `data_dir` (`cert.pem`, `key.pem`), generated there if missing.
///
/// Several brokers may start at once on a fresh data directory: an exclusive file lock on
/// `cert.lock` lets exactly one generate, the others wait for it and then load its files,
/// and every file is written under a temporary name and renamed, so nobody ever reads half a
/// file or a key that belongs to another certificate.
pub fn load_or_generate(data_dir: &Path) -> Result<Identity, CertError> {
    let cert_path = data_dir.join("cert.pem");
    let key_path = data_dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return load_pem(&cert_path, &key_path);
    }
    std::fs::create_dir_all(data_dir).map_err(|source| CertError::DataDir {
        path: data_dir.into(),
        source,
    })?;
    // An advisory lock on `cert.lock` (flock): the others block until the first has written
    // its files and closed the lock file; the kernel releases it if that broker dies meanwhile,
    // so no lock is ever left stale. The file stays: removing it would let a late comer lock
    // a new file while another still holds the old one.
    let lock_path = data_dir.join("cert.lock");
    let lock_error = |source| CertError::Write {
        path: lock_path.clone(),
        source,
    };
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(lock_error)?;
    lock.lock().map_err(lock_error)?;
    generate_unless_present(&cert_path, &key_path)
}

/// Runs under the lock: another broker may have finished just before we took it.
fn generate_unless_present(cert_path: &Path, key_path: &Path) -> Result<Identity, CertError> {
    if cert_path.exists() && key_path.exists() {
        return load_pem(cert_path, key_path);
    }
    let names: Vec<String> = GENERATED_NAMES.iter().map(|s| s.to_string()).collect();
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| CertError::Generate(e.to_string()))?;
    write_private(key_path, generated.signing_key.serialize_pem().as_bytes())?;
    write_file(cert_path, generated.cert.pem().as_bytes())?;
    let mut identity = load_pem(cert_path, key_path)?;
    identity.generated = true;
    Ok(identity)
}

/// SHA-256 fingerprint of a certificate, as colon-separated hex (what browsers and
/// `openssl x509 -fingerprint -sha256` print).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    write_atomically(path, bytes, 0o644)
}

/// Writes a file only its owner can read (the private key).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    write_atomically(path, bytes, 0o600)
}

/// Writes `path.tmp` with `mode` and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    use std::io::Write;
    let tmp = path.with_extension("pem.tmp");
    let err = |source| CertError::Write {
        path: path.into(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(dir.path()).unwrap();
        assert!(first.generated);
        let second = load_or_generate(dir.path()).unwrap();
        assert!(!second.generated);
        assert_eq!(fingerprint(&first.chain[0]), fingerprint(&second.chain[0]));
        assert_eq!(fingerprint(&first.chain[0]).len(), 32 * 3 - 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn concurrent_first_starts_agree_on_one_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = dir.path().to_path_buf();
                std::thread::spawn(move || load_or_generate(&path).unwrap())
            })
            .collect();
        let identities: Vec<Identity> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(identities.iter().filter(|i| i.generated).count(), 1);
        let first = fingerprint(&identities[0].chain[0]);
        assert!(identities.iter().all(|i| fingerprint(&i.chain[0]) == first));
        // And every key matches its certificate (rustls checks the pair).
        for identity in identities {
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(identity.chain, identity.key)
                .unwrap();
        }
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = load_pem(&missing, &missing).unwrap_err().to_string();
        assert!(err.contains("nope.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem").unwrap();
        let err = load_pem(&empty, &empty).unwrap_err().to_string();
        assert!(
            err.contains("empty.pem") && err.contains("no certificate"),
            "{err}"
        );
    }
}
