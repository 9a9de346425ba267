//! Transports: byte streams in, broker events out. Each one is a thin loop around the codec.
//!
//! [`stream`] serves any ordered byte stream (a TCP socket today; a TLS session or a QUIC stream
//! use the same loop); [`tcp`] accepts sockets.

pub mod cert;
pub mod cid;
pub mod early;
pub mod migration;
pub mod quic;
pub mod quic_tls;
pub mod stream;
pub mod tcp;
pub mod tls_tcp;
