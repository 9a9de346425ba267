//! The kernel buffers of a UDP socket that many QUIC peers share (the listener's; a client
//! endpoint shared by many connections): one socket takes every peer's packets, and the
//! kernel's default receive buffer (~208 KiB on Linux) overflowed when a hundred clients
//! handshook at once. Each dropped Initial then cost its client a one-second retransmission
//! (README "QUIC against TCP and MQTTS").
//!
//! Linux caps `SO_RCVBUF`/`SO_SNDBUF` at `net.core.rmem_max`/`wmem_max`; a process with
//! CAP_NET_ADMIN (root, as in most containers) may go past them with `SO_RCVBUFFORCE`/
//! `SO_SNDBUFFORCE`, which is tried next (as quic-go does). A size still not granted is a
//! warning naming the sysctl, not an error: the socket works, it only drops more in bursts.

use std::io;
use std::net::UdpSocket;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Receive,
    Send,
}

impl Direction {
    fn sysctl(self) -> &'static str {
        match self {
            Direction::Receive => "net.core.rmem_max",
            Direction::Send => "net.core.wmem_max",
        }
    }
}

/// Asks for `wanted` bytes of buffer in `direction` (0: the kernel's default, untouched);
/// `key` names the setting in warnings. Returns the size the kernel reports afterwards.
pub fn size(socket: &UdpSocket, direction: Direction, wanted: usize, key: &str) -> Option<usize> {
    if wanted == 0 {
        return None;
    }
    match try_size(socket, direction, wanted) {
        // Linux reports twice what it granted (its bookkeeping share included).
        Ok(got) if got >= wanted => {
            tracing::debug!(key, bytes = got, "UDP socket buffer sized");
            Some(got)
        }
        Ok(got) => {
            tracing::warn!(
                key,
                wanted,
                got,
                "the kernel granted a smaller UDP socket buffer: raise {} to at least {wanted} (bursts of new QUIC connections may otherwise be dropped and wait for a retransmission)",
                direction.sysctl()
            );
            Some(got)
        }
        Err(e) => {
            tracing::warn!(key, wanted, error = %e, "cannot size the UDP socket buffer");
            None
        }
    }
}

fn try_size(socket: &UdpSocket, direction: Direction, wanted: usize) -> io::Result<usize> {
    let sock = socket2::SockRef::from(socket);
    let current = |sock: &socket2::SockRef<'_>| match direction {
        Direction::Receive => sock.recv_buffer_size(),
        Direction::Send => sock.send_buffer_size(),
    };
    match direction {
        Direction::Receive => sock.set_recv_buffer_size(wanted)?,
        Direction::Send => sock.set_send_buffer_size(wanted)?,
    }
    let got = current(&sock)?;
    if got >= wanted {
        return Ok(got);
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::net::sockopt;
        // Refused without CAP_NET_ADMIN: then the capped size stays.
        let forced = match direction {
            Direction::Receive => sockopt::set_socket_recv_buffer_size_force(socket, wanted),
            Direction::Send => sockopt::set_socket_send_buffer_size_force(socket, wanted),
        };
        if forced.is_ok() {
            return current(&sock);
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctl(name: &str) -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn a_buffer_is_what_was_asked_or_what_the_kernel_allows() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(size(&socket, Direction::Receive, 0, "test"), None);
        // Above the kernel's default (~208 KiB), so untouched buffers would fail this.
        let wanted = 4 * 1024 * 1024;
        for (direction, cap) in [
            (Direction::Receive, sysctl("rmem_max")),
            (Direction::Send, sysctl("wmem_max")),
        ] {
            let got = size(&socket, direction, wanted, "test").unwrap();
            let sock = socket2::SockRef::from(&socket);
            let reported = match direction {
                Direction::Receive => sock.recv_buffer_size().unwrap(),
                Direction::Send => sock.send_buffer_size().unwrap(),
            };
            assert_eq!(got, reported);
            // Granted in full (the sysctl allows it, or CAP_NET_ADMIN forced it), or at
            // least the sysctl's cap.
            assert!(
                got >= wanted.min(cap),
                "{direction:?}: got {got}, cap {cap}"
            );
        }
    }
}
