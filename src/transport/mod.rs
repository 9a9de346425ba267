//! Transports: byte streams in, broker events out. Each one is a thin loop around the codec.
//!
//! [`stream`] serves any ordered byte stream (a TCP socket, a TLS session, a QUIC stream);
//! [`tcp`] and [`tls_tcp`] accept sockets; [`quic`] serves QUIC connections, with [`quic_tls`]
//! (certificate, tickets, early data), [`early`] (what 0-RTT data may do), [`migration`]
//! (following a client's address), [`cid`] (connection IDs carrying a server id) and [`qlog`]
//! (qlog traces of selected connections).
//! [`login`] judges each CONNECT's credentials before the broker sees it. [`ws`] serves MQTT
//! over WebSocket ([`ws_http`] the upgrade, [`ws_io`] the frames as bytes, [`proxy_protocol`]
//! the client address from a trusted proxy). [`webtransport`] serves MQTT over WebTransport
//! on the QUIC port (ALPN `h3`), [`wt_cert`] its development certificate.

pub mod admission;
pub mod app_error;
pub mod cert;
pub mod cid;
pub mod early;
pub mod login;
pub mod migration;
pub mod proxy_protocol;
pub mod qlog;
pub mod quic;
mod quic_connection;
pub mod quic_datagrams;
mod quic_dispatch;
pub mod quic_registry;
mod quic_settings;
pub mod quic_streams;
pub mod quic_tls;
mod quic_transport;
mod session_cache;
pub mod stream;
pub mod tcp;
pub mod tls_tcp;
pub mod webtransport;
pub mod ws;
pub mod ws_http;
pub mod ws_io;
pub mod wt_cert;
