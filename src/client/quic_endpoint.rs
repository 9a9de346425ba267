//! A UDP socket that several QUIC clients of one process share
//! ([`ClientOptions::quic_endpoint`](super::ClientOptions::quic_endpoint)), as a browser shares
//! one for all its tabs: one socket, one receive buffer and one driver task for all of them.
//!
//! Worth it when a process opens many connections (a load generator, a gateway with many
//! upstreams). Each client's own endpoint costs a socket, quinn's receive buffer (the largest
//! UDP payload x the GRO segments x the receive batch: megabytes of address space, mapped and
//! unmapped per connection) and, on Linux, two rounds of kernel code patching across every CPU
//! (quinn-udp probes UDP GRO with a throwaway IPv6 socket per endpoint, which switches a kernel
//! static key on and off): in `mqttd bench conn --transport quic` that was most of the
//! generator's CPU per connection (README "QUIC against TCP and MQTTS").
//!
//! The price: connections on a shared endpoint move together, so
//! [`Client::migrate`](super::Client::migrate) refuses; the server sees every connection come
//! from one address and port, which QUIC's connection IDs tell apart.

use std::fmt;
use std::net::SocketAddr;

use super::error::ClientError;

/// Receive buffer asked for a shared socket (`SO_RCVBUF`).
const SHARED_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// A UDP socket for QUIC connections to share. Cloning it shares the same socket.
#[derive(Clone)]
pub struct QuicEndpoint {
    endpoint: quinn::Endpoint,
    local: SocketAddr,
}

impl QuicEndpoint {
    /// Binds `bind` (`0.0.0.0:0` for IPv4 servers, `[::]:0` for IPv6). Call it within the Tokio
    /// runtime the connections run on: the endpoint's driver is a task of that runtime.
    pub fn bind(bind: SocketAddr) -> Result<QuicEndpoint, ClientError> {
        let failed = |source| ClientError::Connect {
            server: bind.to_string(),
            source,
        };
        let socket = std::net::UdpSocket::bind(bind).map_err(failed)?;
        // Every connection's packets arrive here (`crate::udp_buffers`).
        use crate::udp_buffers::{size, Direction};
        size(
            &socket,
            Direction::Receive,
            SHARED_RECEIVE_BUFFER,
            "QuicEndpoint",
        );
        let endpoint = super::quic::client_endpoint_on(socket).map_err(failed)?;
        let local = endpoint.local_addr().map_err(failed)?;
        Ok(QuicEndpoint { endpoint, local })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether a connection to `server` can leave through this socket (same address family).
    pub(crate) fn serves(&self, server: SocketAddr) -> bool {
        self.local.is_ipv4() == server.is_ipv4()
    }

    pub(crate) fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }
}

impl fmt::Debug for QuicEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QuicEndpoint({})", self.local)
    }
}

/// Two handles are equal when they share the socket (a bound address is unique while bound).
impl PartialEq for QuicEndpoint {
    fn eq(&self, other: &QuicEndpoint) -> bool {
        self.local == other.local
    }
}

impl Eq for QuicEndpoint {}
