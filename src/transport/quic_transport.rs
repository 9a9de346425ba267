//! The QUIC transport parameters every server connection gets, from `quic:` in the
//! configuration: stream and flow-control limits, idle timeout, datagrams, MTU discovery and
//! the ACK frequency extension. Its own file because both the endpoint (`quic.rs`) and qlog
//! tracing (`qlog.rs`, one configuration per traced connection) build them.

use std::time::Duration;

use quinn::VarInt;

/// Where a connection's packets travel, as far as its size limit is known in advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Any network: packets start at QUIC's 1,200 bytes and MTU discovery searches upward.
    Network,
    /// The peer is on this host (127.0.0.0/8, ::1): the kernel's loopback carries up to
    /// 65,536 bytes, so packets start at `quic.max_udp_payload` and there is nothing to probe.
    Loopback,
}

impl PathKind {
    pub fn of(peer: std::net::IpAddr) -> PathKind {
        // A dual-stack socket sees IPv4 peers as ::ffff:a.b.c.d.
        if peer.to_canonical().is_loopback() {
            PathKind::Loopback
        } else {
            PathKind::Network
        }
    }
}

/// The transport parameters of every connection on `path` (`super::qlog` builds one per
/// traced connection: quinn's transport configuration is not `Clone`).
pub fn transport_config(q: &crate::config::Quic, path: PathKind) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(q.max_bidi_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(q.max_uni_streams))
        .stream_receive_window(VarInt::from_u32(q.stream_receive_window))
        .receive_window(VarInt::from_u32(q.receive_window))
        .send_window(u64::from(q.send_window))
        .max_idle_timeout(
            quinn::IdleTimeout::try_from(Duration::from_secs(q.idle_timeout_secs)).ok(),
        )
        // QoS 0 in DATAGRAM frames (proto-ext/datagrams.md).
        .datagram_receive_buffer_size(Some(super::quic_datagrams::RECEIVE_BUFFER));
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(q.max_udp_payload);
    transport.mtu_discovery_config(Some(mtu));
    if path == PathKind::Loopback {
        // No search: a binary search from 1,200 to 8,952 bytes is ten probes, ~80 KB of
        // PADDING frames per connection that the peer's QUIC stack parses a byte at a time
        // (quinn does), which was most of a loopback client's handshake CPU. The peer's
        // max_udp_payload_size still caps it, and Initial packets are still padded only to
        // 1,200 bytes (README "QUIC against TCP and MQTTS").
        transport.initial_mtu(q.max_udp_payload);
    }
    if q.ack_delay_ms > 0 {
        // Ask clients to acknowledge within ack_delay_ms (ACK frequency extension): their
        // max_ack_delay is part of our probe timeout, so a lost packet with nothing after it
        // (the last message of a quiet topic) is resent sooner. See benches/lossy.sh.
        let mut ack = quinn::AckFrequencyConfig::default();
        ack.max_ack_delay(Some(Duration::from_millis(u64::from(q.ack_delay_ms))))
            // A gap in packet numbers is still acknowledged at once, as without the extension.
            .reordering_threshold(VarInt::from_u32(1));
        transport.ack_frequency_config(Some(ack));
    }
    transport
}

#[cfg(test)]
mod tests {
    use super::PathKind;

    #[test]
    fn loopback_peers_in_every_spelling_and_the_rest() {
        for ip in ["127.0.0.1", "127.5.6.7", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(
                PathKind::of(ip.parse().unwrap()),
                PathKind::Loopback,
                "{ip}"
            );
        }
        for ip in [
            "10.0.0.1",
            "192.0.2.7",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
        ] {
            assert_eq!(PathKind::of(ip.parse().unwrap()), PathKind::Network, "{ip}");
        }
    }
}
