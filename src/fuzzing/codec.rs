//! Codec target: decode arbitrary bytes in every protocol context; every packet that decodes
//! must encode to `encoded_len` bytes and decode back to itself.

use bytes::BytesMut;

use super::Input;
use crate::codec::{self, Packet, ProtocolVersion};

/// Input: one selector byte (bits 0-1: the connection's version so far, none/3.1/3.1.1/5.0;
/// bit 2: decode as a server does (`decode_from_client`) or as a client; bit 3: a small
/// maximum packet size), then the bytes of a stream.
pub fn codec_decode(data: &[u8]) {
    let mut input = Input::new(data);
    let selector = input.byte();
    let mut version = match selector & 3 {
        0 => None,
        1 => Some(ProtocolVersion::V3_1),
        2 => Some(ProtocolVersion::V3_1_1),
        _ => Some(ProtocolVersion::V5),
    };
    let from_client = selector & 4 != 0;
    let max = if selector & 8 != 0 { 128 } else { 1 << 20 };
    let mut buf = BytesMut::from(input.rest());
    loop {
        let before = buf.len();
        let decoded = if from_client {
            codec::decode_from_client(&mut buf, version, max)
        } else {
            codec::decode(&mut buf, version, max)
        };
        match decoded {
            Ok(Some(packet)) => {
                assert!(buf.len() < before, "a decoded packet consumed no bytes");
                if let Packet::Connect(c) = &packet {
                    version = Some(c.protocol);
                }
                let Some(v) = version else {
                    panic!("a packet other than CONNECT decoded before CONNECT: {packet:?}");
                };
                round_trip(&packet, v);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete packet consumed bytes");
                return;
            }
            Err(e) => {
                // Every error maps to an error reason code the broker can send.
                assert!(e.reason_code().is_error(), "{e:?}");
                return;
            }
        }
    }
}

/// Encodes `packet` for `version` and decodes it again: same size as announced, one whole
/// packet, equal to the original.
pub(crate) fn round_trip(packet: &Packet, version: ProtocolVersion) {
    let mut out = BytesMut::new();
    codec::encode(packet, version, &mut out);
    assert_eq!(
        out.len(),
        codec::encoded_len(packet, version),
        "encoded_len disagrees with encode for {packet:?}"
    );
    let context = match packet {
        Packet::Connect(_) => None,
        _ => Some(version),
    };
    let again = codec::decode(&mut out, context, u32::MAX);
    match again {
        Ok(Some(decoded)) => {
            assert!(out.is_empty(), "re-encoded {packet:?} left bytes over");
            assert_eq!(&decoded, packet, "round trip changed the packet");
        }
        other => panic!("re-encoded {packet:?} does not decode: {other:?}"),
    }
}
