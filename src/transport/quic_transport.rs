//! The QUIC transport parameters every server connection gets, from `quic:` in the
//! configuration: stream and flow-control limits, idle timeout, datagrams, MTU discovery and
//! the ACK frequency extension. Its own file because both the endpoint (`quic.rs`) and qlog
//! tracing (`qlog.rs`, one configuration per traced connection) build them.

use std::time::Duration;

use quinn::VarInt;

/// The transport parameters of every connection (`super::qlog` builds one per traced
/// connection: quinn's transport configuration is not `Clone`).
pub fn transport_config(q: &crate::config::Quic) -> quinn::TransportConfig {
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
