//! MQTT over TCP + TLS 1.3 (MQTTS) for the bundled client: the QUIC transport's trust settings
//! (`--cafile`, `--insecure`) and client certificate (`--cert`/`--key`, mutual TLS) on
//! tokio-rustls, so `mqttd pub/sub --mqtts` reaches a broker's MQTTS listener.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::error::ClientError;
use super::link::LinkParts;
use super::options::{ClientCert, QuicOptions};
use super::quic::host_of;

pub(crate) struct TlsDialer {
    connector: TlsConnector,
    server_name: Option<String>,
}

impl TlsDialer {
    pub fn new(
        options: &QuicOptions,
        client_cert: Option<&ClientCert>,
    ) -> Result<TlsDialer, ClientError> {
        let tls = super::quic::tls_config(options, client_cert)?;
        Ok(TlsDialer {
            connector: TlsConnector::from(Arc::new(tls)),
            server_name: options.server_name.clone(),
        })
    }

    /// TCP to the first address that accepts, then the TLS handshake.
    pub async fn connect(
        &self,
        server: &str,
        addrs: &[SocketAddr],
    ) -> Result<LinkParts, ClientError> {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| host_of(server).to_owned());
        let name = ServerName::try_from(name.clone()).map_err(|e| ClientError::Connect {
            server: server.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{name:?} is not a TLS server name: {e}"),
            ),
        })?;
        let mut last = None;
        for addr in addrs {
            let socket = match TcpStream::connect(addr).await {
                Ok(s) => s,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let tls = self
                .connector
                .connect(name.clone(), socket)
                .await
                .map_err(|e| handshake_error(server, e))?;
            let (reader, writer) = tokio::io::split(tls);
            return Ok(LinkParts {
                reader: Box::new(reader),
                writer: Box::new(writer),
                quic: None,
                early: None,
                fallback: false,
            });
        }
        Err(ClientError::Connect {
            server: server.to_owned(),
            source: last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()),
        })
    }
}

fn handshake_error(server: &str, e: std::io::Error) -> ClientError {
    let text = e.to_string();
    if text.contains("certificate") || text.contains("UnknownIssuer") {
        ClientError::UntrustedCertificate {
            server: server.to_owned(),
            detail: text,
        }
    } else {
        ClientError::Connect {
            server: server.to_owned(),
            source: e,
        }
    }
}
