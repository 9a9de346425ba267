//! MQTT over QUIC, client side: TLS 1.3 with ALPN `mqtt` (quinn on rustls/ring).
//!
//! The first bidirectional stream carries the MQTT connection exactly as a TCP socket would
//! (single-stream mode); `Client::open_stream` opens more. Trust comes from `--cafile` (mqttd
//! writes a self-signed certificate whose SANs are localhost, 127.0.0.1 and ::1, so `-h
//! 127.0.0.1` verifies against its IP SAN) or is skipped with `--insecure`. Handshake failures
//! are translated into what to do about them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::error::ClientError;
use super::options::{QuicOptions, MQTT_ALPN};

/// QUIC keeps the path alive on its own at this interval, so the connection does not hit
/// the idle timeout when MQTT keep alive is long or off.
const QUIC_KEEP_ALIVE: Duration = Duration::from_secs(10);
/// QUIC idle timeout: the connection is dead after this long without any packet.
const QUIC_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Received datagrams buffered before quinn drops the oldest.
const DATAGRAM_RECEIVE_BUFFER: usize = 1024 * 1024;

/// TLS alert no_application_protocol (RFC 8446 6.2), as a QUIC CRYPTO_ERROR.
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// Builds QUIC connections to one server.
#[derive(Clone)]
pub(crate) struct QuicDialer {
    config: quinn::ClientConfig,
    /// `config` for a server on this host: packets start at the largest size, no MTU search.
    loopback_config: quinn::ClientConfig,
    server_name: Option<String>,
    /// Send CONNECT as 0-RTT early data when a ticket is at hand.
    zero_rtt: bool,
    /// `ClientOptions::quic_endpoint`.
    shared: Option<super::QuicEndpoint>,
}

/// A QUIC connection with its first bidirectional stream.
pub(crate) struct QuicConnection {
    /// Kept alive as long as the connection.
    pub endpoint: quinn::Endpoint,
    pub connection: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    /// The stream was opened in 0-RTT: resolves when the handshake completes, to whether the
    /// server took the early data.
    pub early: Option<quinn::ZeroRttAccepted>,
}

impl QuicDialer {
    /// A dialer for `server` (`host:port`, which names its ticket store); `zero_rtt` sends
    /// CONNECT as early data on resumption.
    pub fn new(
        options: &QuicOptions,
        server: &str,
        zero_rtt: bool,
        client_cert: Option<&super::options::ClientCert>,
        shared: Option<super::QuicEndpoint>,
    ) -> Result<QuicDialer, ClientError> {
        // Shared per server and settings: a ticket only resumes with the verifier that
        // issued it (tickets.rs).
        let key = format!("{server}|{options:?}|{zero_rtt}|{client_cert:?}");
        let config =
            super::tickets::shared_config(key, || build_config(options, zero_rtt, client_cert))?;
        // The same TLS configuration (and so the same tickets), another transport.
        let mut loopback_config = config.clone();
        loopback_config.transport_config(Arc::new(transport_config(true)?));
        Ok(QuicDialer {
            config,
            loopback_config,
            server_name: options.server_name.clone(),
            zero_rtt,
            shared,
        })
    }

    /// Connects to the first of `addrs` that answers: IPv4 first (mqttd listens on 0.0.0.0 by
    /// default), all at once, since UDP gives no quick "refused" to move on with. A TLS or
    /// ALPN failure proves the server is there and is reported at once.
    pub async fn connect_any(
        &self,
        server: &str,
        mut addrs: Vec<SocketAddr>,
    ) -> Result<QuicConnection, ClientError> {
        addrs.sort_by_key(|a| a.is_ipv6());
        addrs.dedup();
        if let [addr] = addrs.as_slice() {
            return self.connect(server, *addr).await;
        }
        let mut attempts = tokio::task::JoinSet::new();
        for addr in addrs {
            let (dialer, server) = (self.clone(), server.to_owned());
            attempts.spawn(async move { dialer.connect(&server, addr).await });
        }
        let mut first_error = None;
        while let Some(joined) = attempts.join_next().await {
            match joined {
                Ok(Ok(connection)) => return Ok(connection),
                Ok(Err(
                    e @ (ClientError::UntrustedCertificate { .. }
                    | ClientError::AlpnMismatch { .. }),
                )) => return Err(e),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {}
            }
        }
        Err(first_error.unwrap_or_else(|| quic_error(server, "no address to connect to".into())))
    }

    /// Whether a QUIC handshake with `server` completes now (with our ALPN), within
    /// `timeout`: the check of a client on its fallback ([`super::Fallback::retry_quic`]). No
    /// early data, no stream; the connection is closed at once with the normal code.
    pub async fn handshake_completes(&self, server: &str, timeout: std::time::Duration) -> bool {
        let attempt = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(server).await.ok()?.collect();
            let addr = *addrs.iter().find(|a| a.is_ipv4()).or(addrs.first())?;
            let (_endpoint, connecting) = self.start(server, addr).ok()?;
            let connection = connecting.await.ok()?;
            let ours = speaks_mqtt(&connection);
            connection.close(0u32.into(), b"");
            Some(ours)
        };
        matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
    }

    /// The endpoint (shared or a new one) and the handshake toward `addr`.
    fn start(
        &self,
        server: &str,
        addr: SocketAddr,
    ) -> Result<(quinn::Endpoint, quinn::Connecting), ClientError> {
        let bind: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = match &self.shared {
            Some(shared) if shared.serves(addr) => shared.endpoint().clone(),
            _ => client_endpoint(bind).map_err(|source| ClientError::Connect {
                server: server.to_owned(),
                source,
            })?,
        };
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| host_of(server).to_owned());
        let config = if addr.ip().to_canonical().is_loopback() {
            self.loopback_config.clone()
        } else {
            self.config.clone()
        };
        let connecting = endpoint.connect_with(config, addr, &name).map_err(|e| {
            quic_error(
                server,
                format!("cannot start the QUIC handshake with {name:?}: {e}"),
            )
        })?;
        Ok((endpoint, connecting))
    }

    /// Connects to `addr` (named `server` in messages) and opens the first stream.
    pub async fn connect(
        &self,
        server: &str,
        addr: SocketAddr,
    ) -> Result<QuicConnection, ClientError> {
        let (endpoint, connecting) = self.start(server, addr)?;
        let connecting = if self.zero_rtt {
            match connecting.into_0rtt() {
                // A ticket for this server: CONNECT goes out with the first flight. The ALPN
                // is the ticket's (a server only takes early data for the same ALPN).
                Ok((connection, accepted)) => {
                    let (send, recv) = connection
                        .open_bi()
                        .await
                        .map_err(|e| connection_error(server, e))?;
                    return Ok(QuicConnection {
                        endpoint,
                        connection,
                        send,
                        recv,
                        early: Some(accepted),
                    });
                }
                Err(connecting) => connecting,
            }
        } else {
            connecting
        };
        let connection = connecting.await.map_err(|e| connection_error(server, e))?;
        if !speaks_mqtt(&connection) {
            // The server finished the handshake without choosing our protocol.
            connection.close(0u32.into(), b"ALPN mqtt required");
            return Err(alpn_mismatch(server));
        }
        let (send, recv) = connection
            .open_bi()
            .await
            .map_err(|e| connection_error(server, e))?;
        Ok(QuicConnection {
            endpoint,
            connection,
            send,
            recv,
            early: None,
        })
    }
}

/// The rustls client configuration for `options` (QUIC and MQTTS): TLS 1.3 on ring, the
/// trusted certificates (or none checked with `insecure`), and the client certificate for
/// mutual TLS.
pub(crate) fn tls_config(
    options: &QuicOptions,
    client_cert: Option<&super::options::ClientCert>,
) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Unsupported(format!("TLS 1.3 setup failed: {e}")))?;
    let builder = if options.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DangerousAcceptAnyCert(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        if let Some(path) = &options.ca_file {
            for cert in read_certificates(path)? {
                roots.add(cert).map_err(|e| ClientError::CaFile {
                    path: path.clone(),
                    message: format!("not a usable CA certificate: {e}"),
                })?;
            }
        }
        builder.with_root_certificates(roots)
    };
    Ok(match client_cert {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let chain = read_certificates(&c.cert)?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&c.key).map_err(|e| {
                ClientError::CaFile {
                    path: c.key.clone(),
                    message: format!("not a usable PEM private key: {e}"),
                }
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::CaFile {
                    path: c.cert.clone(),
                    message: format!("client certificate and key do not go together: {e}"),
                })?
        }
    })
}

/// The QUIC client configuration for `options`: [`tls_config`] plus ALPN `mqtt`, a ticket
/// store of its own, early data when `zero_rtt`.
fn build_config(
    options: &QuicOptions,
    zero_rtt: bool,
    client_cert: Option<&super::options::ClientCert>,
) -> Result<quinn::ClientConfig, ClientError> {
    let mut tls = tls_config(options, client_cert)?;
    tls.alpn_protocols = vec![MQTT_ALPN.to_vec()];
    tls.resumption = rustls::client::Resumption::store(Arc::new(
        rustls::client::ClientSessionMemoryCache::new(super::tickets::NAMES_PER_STORE),
    ));
    tls.enable_early_data = zero_rtt;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| ClientError::Unsupported(format!("QUIC TLS setup failed: {e}")))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(false)?));
    Ok(config)
}

/// The client's transport parameters; `loopback`: the server is on this host, whose loopback
/// carries far more than [`MAX_UDP_PAYLOAD`], so packets start there (up to what the server
/// accepts) instead of searching up from 1,200 bytes with ~10 padded probes.
fn transport_config(loopback: bool) -> Result<quinn::TransportConfig, ClientError> {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(QUIC_KEEP_ALIVE));
    let idle = quinn::IdleTimeout::try_from(QUIC_IDLE_TIMEOUT)
        .map_err(|e| ClientError::Unsupported(format!("QUIC idle timeout: {e}")))?;
    transport.max_idle_timeout(Some(idle));
    // Advertise max_datagram_frame_size: the server may send QoS 0 in datagrams when asked
    // (proto-ext/datagrams.md section 1).
    transport.datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER));
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    transport.mtu_discovery_config(Some(mtu));
    if loopback {
        transport.initial_mtu(MAX_UDP_PAYLOAD);
    }
    Ok(transport)
}

/// Opens another bidirectional stream on `connection`.
/// Whether the server chose our ALPN (`mqtt`) in the handshake.
fn speaks_mqtt(connection: &quinn::Connection) -> bool {
    connection
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|alpn| alpn == MQTT_ALPN)
}

pub(crate) async fn open_stream(
    connection: &quinn::Connection,
) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
    connection
        .open_bi()
        .await
        .map_err(|e| ClientError::ConnectionLost(format!("cannot open a QUIC stream: {e}")))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let fail = |message: String| ClientError::CaFile {
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(pem_error(e)))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => super::error::io_reason(&io),
        other => format!("not a PEM certificate file: {other}"),
    }
}

/// The host part of `host:port` / `[v6]:port`, for the TLS server name.
pub(crate) fn host_of(server: &str) -> &str {
    let host = match server.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => server,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

fn quic_error(server: &str, message: String) -> ClientError {
    ClientError::Quic {
        server: server.to_owned(),
        message,
    }
}

fn alpn_mismatch(server: &str) -> ClientError {
    ClientError::AlpnMismatch {
        server: server.to_owned(),
        alpn: String::from_utf8_lossy(MQTT_ALPN).into_owned(),
    }
}

/// Words a failed handshake: untrusted certificate, ALPN refused, nobody answering.
fn connection_error(server: &str, e: quinn::ConnectionError) -> ClientError {
    use quinn::ConnectionError::*;
    let no_alpn = quinn::TransportErrorCode::crypto(ALERT_NO_APPLICATION_PROTOCOL);
    match e {
        // Our own TLS stack refused the server's certificate.
        TransportError(t) if t.reason.contains("certificate") => {
            ClientError::UntrustedCertificate {
                server: server.to_owned(),
                detail: t.reason.clone(),
            }
        }
        TransportError(t) if t.code == no_alpn => alpn_mismatch(server),
        // The server refused our ALPN (alert no_application_protocol).
        ConnectionClosed(c) if c.error_code == no_alpn => alpn_mismatch(server),
        TimedOut => quic_error(
            server,
            "no answer to the QUIC handshake (is the broker listening for MQTT over QUIC on this UDP port?)"
                .into(),
        ),
        other => quic_error(server, format!("QUIC handshake failed: {other}")),
    }
}

/// Accepts any server certificate (`--insecure`): the connection is encrypted but the server
/// is not authenticated. The handshake signature is still checked, so the server does hold
/// the key of the certificate it presents.
#[derive(Debug)]
pub(crate) struct DangerousAcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for DangerousAcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client endpoint on `bind` that accepts UDP payloads up to [`MAX_UDP_PAYLOAD`] (quinn's
/// default accepts 1472), so that MTU discovery can use what the path carries.
pub(crate) fn client_endpoint(bind: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    client_endpoint_on(std::net::UdpSocket::bind(bind)?)
}

/// A client endpoint on `socket`.
pub(crate) fn client_endpoint_on(socket: std::net::UdpSocket) -> std::io::Result<quinn::Endpoint> {
    let runtime =
        quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime found"))?;
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    quinn::Endpoint::new(config, None, socket, runtime)
}

/// The largest UDP payload MTU discovery may try (and this endpoint accepts): jumbo frames
/// (9000-byte MTU) less IPv6 and UDP headers. Paths with a smaller MTU stay where DPLPMTUD
/// finds them (1200 at worst); loopback and jumbo-frame networks send ~6x fewer packets.
pub(crate) const MAX_UDP_PAYLOAD: u16 = 8952;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("localhost:1884"), "localhost");
        assert_eq!(host_of("127.0.0.1:1884"), "127.0.0.1");
        assert_eq!(host_of("[::1]:1884"), "::1");
        assert_eq!(host_of("broker"), "broker");
    }

    #[test]
    fn a_missing_ca_file_is_reported_with_its_path() {
        let options = QuicOptions {
            ca_file: Some("/nonexistent/cert.pem".into()),
            ..QuicOptions::default()
        };
        let error = QuicDialer::new(&options, "localhost:1884", true, None, None)
            .err()
            .expect("an error");
        assert_eq!(
            error.to_string(),
            "cannot use CA file /nonexistent/cert.pem: not found"
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "nothing here\n").unwrap();
        let options = QuicOptions {
            ca_file: Some(path),
            ..QuicOptions::default()
        };
        let error = QuicDialer::new(&options, "localhost:1884", true, None, None)
            .err()
            .expect("an error");
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
    }
}
