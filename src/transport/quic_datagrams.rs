//! QUIC DATAGRAM frames (RFC 9221) from clients: one MQTT packet each. See
//! `proto-ext/datagrams.md`.

use bytes::{Bytes, BytesMut};
use quinn::Connection;
use tokio::sync::mpsc;

use super::migration::PeerPath;
use crate::broker::{ConnId, StreamId};
use crate::codec::{self, ProtocolVersion};
use crate::handoff::Event;
use crate::rate::TokenBucket;

/// Datagrams the server buffers before quinn drops the oldest.
pub const RECEIVE_BUFFER: usize = 64 * 1024;

/// What one datagram from a client means to the broker.
pub fn classify(
    conn: ConnId,
    datagram: Bytes,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Option<Event> {
    match datagram.first() {
        // A zero-length datagram is a liveness probe (EMQX 6.1).
        None => Some(Event::DatagramProbe { conn }),
        // First byte 0x00: not an MQTT packet (no packet type 0 exists); ignored.
        Some(0x00) => None,
        Some(_) => {
            let mut buf = BytesMut::from(&datagram[..]);
            match codec::decode_from_client(&mut buf, Some(version), max_packet_size) {
                // Exactly one whole packet per datagram.
                Ok(Some(packet)) if buf.is_empty() => Some(Event::Packets {
                    conn,
                    stream: StreamId::DATAGRAM,
                    packets: vec![packet],
                    // Datagrams are bounded by their rate limit, not by a reader's pause.
                    read: 0,
                }),
                _ => Some(Event::DatagramMalformed { conn }),
            }
        }
    }
}

/// Dropped datagrams are reported to the broker in batches of at most this many (and whenever a
/// datagram passes again), so a flood does not become a flood of events.
const REPORT_DROPS_EVERY: u64 = 256;

/// Reads the client's datagrams until the connection ends. Those beyond `rate` are dropped
/// unread and counted.
pub async fn read(
    conn: ConnId,
    connection: Connection,
    events: mpsc::Sender<Event>,
    version: ProtocolVersion,
    max_packet_size: u32,
    mut rate: TokenBucket,
    path: &PeerPath,
) {
    let mut dropped = 0;
    while let Ok(datagram) = connection.read_datagram().await {
        path.on_receipt();
        let allowed = rate.allow(std::time::Instant::now());
        if !allowed {
            dropped += 1;
        }
        if dropped > 0 && (allowed || dropped >= REPORT_DROPS_EVERY) {
            let count = std::mem::take(&mut dropped);
            if events
                .send(Event::DatagramsRateLimited { conn, count })
                .await
                .is_err()
            {
                return;
            }
        }
        if !allowed {
            continue;
        }
        if let Some(event) = classify(conn, datagram, version, max_packet_size) {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(d: &[u8]) -> &'static str {
        match classify(
            ConnId(1),
            Bytes::copy_from_slice(d),
            ProtocolVersion::V5,
            1024,
        ) {
            None => "ignored",
            Some(Event::DatagramProbe { .. }) => "probe",
            Some(Event::DatagramMalformed { .. }) => "malformed",
            Some(Event::Packets {
                stream: StreamId::DATAGRAM,
                ..
            }) => "packet",
            Some(_) => "other",
        }
    }

    #[test]
    fn datagrams_are_classified() {
        assert_eq!(kind(b""), "probe");
        assert_eq!(kind(&[0x00, 1, 2]), "ignored");
        assert_eq!(kind(&[0x30, 0x04, 0x00, 0x01, b't', 0x00]), "packet");
        assert_eq!(
            kind(&[0x30, 0x04, 0x00, 0x01, b't', 0x00, 0xC0, 0x00]),
            "malformed",
            "two packets"
        );
        assert_eq!(kind(&[0x30, 0x09]), "malformed", "truncated");
        assert_eq!(kind(&[0x20, 0x02, 0, 0]), "malformed", "server-only packet");
    }
}
