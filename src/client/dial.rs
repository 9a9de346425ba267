//! Reaching the server: name resolution, then a TCP socket or a QUIC connection, each turned
//! into the boxed reader/writer pair the rest of the glue works with.
//!
//! A client built over a caller's own stream (`Client::connect_over`) has no way to dial again:
//! it reconnects over a stream the caller provides.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::error::ClientError;
use super::link::LinkParts;
use super::options::{ClientOptions, Fallback, Transport};
use super::quic::QuicDialer;

pub(crate) enum Dialer {
    Tcp,
    Quic(Box<QuicDialer>),
    Tls(Box<super::tls::TlsDialer>),
    /// QUIC first, then another transport when QUIC gets no answer (`ClientOptions::fallback`).
    WithFallback {
        quic: Box<Dialer>,
        fallback: Box<Dialer>,
        settings: Fallback,
    },
    /// The caller supplies each stream.
    Given,
}

impl Dialer {
    pub fn new(options: &ClientOptions) -> Result<Dialer, ClientError> {
        let dialer = Dialer::for_transport(options, &options.transport)?;
        Ok(match (&options.fallback, &options.transport) {
            (Some(settings), Transport::Quic(_)) => Dialer::WithFallback {
                quic: Box::new(dialer),
                fallback: Box::new(Dialer::for_transport(options, &settings.transport)?),
                settings: settings.clone(),
            },
            _ => dialer,
        })
    }

    fn for_transport(
        options: &ClientOptions,
        transport: &Transport,
    ) -> Result<Dialer, ClientError> {
        Ok(match transport {
            Transport::Tcp => Dialer::Tcp,
            Transport::Quic(quic) => Dialer::Quic(Box::new(QuicDialer::new(
                quic,
                &options.server,
                options.zero_rtt,
                options.client_cert.as_ref(),
                options.quic_endpoint.clone(),
            )?)),
            Transport::Mqtts(tls) => Dialer::Tls(Box::new(super::tls::TlsDialer::new(
                tls,
                options.client_cert.as_ref(),
            )?)),
        })
    }

    /// Connects to `options.server` within `options.connect_timeout`; with a fallback, QUIC
    /// within the fallback's `after`, then the fallback server.
    pub async fn dial(&self, options: &ClientOptions) -> Result<LinkParts, ClientError> {
        let Dialer::WithFallback {
            quic,
            fallback,
            settings,
        } = self
        else {
            return self.dial_once(options).await;
        };
        let mut quic_options = options.clone();
        quic_options.connect_timeout = settings.after.min(options.connect_timeout);
        match quic.dial_once(&quic_options).await {
            Ok(parts) => Ok(parts),
            // The server answered: UDP gets through.
            Err(
                e @ (ClientError::UntrustedCertificate { .. } | ClientError::AlpnMismatch { .. }),
            ) => Err(e),
            Err(e) => {
                let mut fallback_options = options.clone();
                fallback_options.server = settings.server_for(&options.server);
                fallback_options.transport = settings.transport.clone();
                tracing::info!(server = %options.server, fallback = %fallback_options.server, error = %e, "QUIC got no answer; falling back");
                let mut parts = fallback.dial_once(&fallback_options).await?;
                parts.fallback = true;
                Ok(parts)
            }
        }
    }

    /// With a fallback: how often to check whether QUIC answers again while connected over
    /// the fallback (`Fallback::retry_quic`).
    pub fn retry_quic(&self) -> Option<Duration> {
        match self {
            Dialer::WithFallback { settings, .. } => settings.retry_quic,
            _ => None,
        }
    }

    /// With a fallback: whether a QUIC handshake with `options.server` completes now, within
    /// the fallback's `after`.
    pub async fn quic_answers(&self, options: &ClientOptions) -> bool {
        match self {
            Dialer::WithFallback { quic, settings, .. } => match quic.as_ref() {
                Dialer::Quic(q) => {
                    let within = settings.after.min(options.connect_timeout);
                    q.handshake_completes(&options.server, within).await
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// One transport, no fallback.
    async fn dial_once(&self, options: &ClientOptions) -> Result<LinkParts, ClientError> {
        let server = options.server.as_str();
        let attempt = async {
            let addrs = resolve(server).await?;
            match self {
                Dialer::Tcp => tcp(server, &addrs).await,
                Dialer::Tls(dialer) => dialer.connect(server, &addrs).await,
                Dialer::Quic(dialer) => {
                    let q = dialer.connect_any(server, addrs).await?;
                    Ok(LinkParts {
                        reader: Box::new(q.recv),
                        writer: Box::new(q.send),
                        quic: Some((q.endpoint, q.connection)),
                        early: q.early,
                        fallback: false,
                    })
                }
                Dialer::WithFallback { .. } => Err(ClientError::Unsupported(
                    "a fallback is dialled through Dialer::dial".into(),
                )),
                Dialer::Given => Err(ClientError::Unsupported(
                    "this client runs over a stream its caller provided: reconnect with reconnect_over".into(),
                )),
            }
        };
        match tokio::time::timeout(options.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out(server, options.connect_timeout)),
        }
    }

    fn timed_out(&self, server: &str, after: Duration) -> ClientError {
        match self {
            // UDP has no "connection refused": silence is all a wrong port gives.
            Dialer::Quic(_) => ClientError::Quic {
                server: server.to_owned(),
                message: format!(
                    "no answer to the QUIC handshake within {}s (is the broker listening for MQTT over QUIC on this UDP port?)",
                    after.as_secs_f64()
                ),
            },
            _ => ClientError::Connect {
                server: server.to_owned(),
                source: std::io::ErrorKind::TimedOut.into(),
            },
        }
    }
}

async fn resolve(server: &str) -> Result<Vec<SocketAddr>, ClientError> {
    let fail = |message: String| ClientError::Resolve {
        server: server.to_owned(),
        message,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(server)
        .await
        .map_err(|e| fail(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(fail("no address found".into()));
    }
    Ok(addrs)
}

/// Tries each address in turn; the last failure is reported.
async fn tcp(server: &str, addrs: &[SocketAddr]) -> Result<LinkParts, ClientError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(socket) => {
                let _ = socket.set_nodelay(true);
                let (reader, writer) = socket.into_split();
                return Ok(LinkParts {
                    reader: Box::new(reader),
                    writer: Box::new(writer),
                    quic: None,
                    early: None,
                    fallback: false,
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(ClientError::Connect {
        server: server.to_owned(),
        source: last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()),
    })
}
