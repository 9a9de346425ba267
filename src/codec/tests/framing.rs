//! Incremental decoding: partial packets, several packets in one buffer, and the maximum packet
//! size enforced from the fixed header alone.

use bytes::BytesMut;

use super::super::{decode, Ack, DecodeError, Packet};
use super::{hex, V3_1_1, V5};

#[test]
fn empty_buffer_needs_more() {
    assert_eq!(decode(&mut BytesMut::new(), Some(V5), 1024), Ok(None));
}

#[test]
fn byte_by_byte_returns_none_until_the_last_byte() {
    let whole = hex("10 11 0004 4D515454 05 02 003C 03 210014 0001 70");
    let mut buf = BytesMut::new();
    for (i, &byte) in whole.iter().enumerate() {
        buf.extend_from_slice(&[byte]);
        let result = decode(&mut buf, None, 1024).expect("valid so far");
        if i + 1 < whole.len() {
            assert_eq!(result, None, "after {} bytes", i + 1);
            // Nothing is consumed while waiting.
            assert_eq!(buf.len(), i + 1);
        } else {
            assert!(matches!(result, Some(Packet::Connect(_))));
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn incomplete_remaining_length_needs_more() {
    let mut buf = hex("30 FF FF");
    assert_eq!(decode(&mut buf, Some(V5), u32::MAX), Ok(None));
    assert_eq!(buf.len(), 3);
}

#[test]
fn two_packets_in_one_buffer() {
    let mut buf = hex("40 02 0001 C0 00 50");
    assert_eq!(
        decode(&mut buf, Some(V3_1_1), 1024),
        Ok(Some(Packet::PubAck(Ack::new(1))))
    );
    assert_eq!(
        decode(&mut buf, Some(V3_1_1), 1024),
        Ok(Some(Packet::PingReq))
    );
    // The start of a third packet stays buffered.
    assert_eq!(decode(&mut buf, Some(V3_1_1), 1024), Ok(None));
    assert_eq!(&buf[..], &[0x50]);
}

#[test]
fn too_large_is_reported_from_the_header_alone() {
    // A PUBLISH announcing 268,435,455 bytes; only the fixed header has arrived.
    let mut buf = hex("30 FF FF FF 7F");
    assert_eq!(
        decode(&mut buf, Some(V5), 1024),
        Err(DecodeError::PacketTooLarge {
            size: 268_435_455 + 5,
            max: 1024
        })
    );
}

#[test]
fn maximum_packet_size_counts_the_fixed_header() {
    // PINGREQ is 2 bytes; PUBACK 4.
    assert_eq!(
        decode(&mut hex("C0 00"), Some(V5), 2),
        Ok(Some(Packet::PingReq))
    );
    assert_eq!(
        decode(&mut hex("40 02"), Some(V5), 3),
        Err(DecodeError::PacketTooLarge { size: 4, max: 3 })
    );
    assert_eq!(
        decode(&mut hex("40 02 0001"), Some(V5), 4),
        Ok(Some(Packet::PubAck(Ack::new(1))))
    );
}

#[test]
fn too_large_connect_before_the_version_is_known() {
    let mut buf = hex("10 80 01");
    assert_eq!(
        decode(&mut buf, None, 100),
        Err(DecodeError::PacketTooLarge {
            size: 131,
            max: 100
        })
    );
}
