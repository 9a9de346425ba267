//! Codec tests: spec byte vectors, one test per validation rule, framing, and property tests.
//!
//! Shared helpers live here so each test reads as "these bytes decode to this packet / fail with
//! this error".

mod framing;
mod roundtrip;
mod strategies;
mod validation;
mod vectors;

use bytes::BytesMut;

use super::{decode, encode, encoded_len, DecodeError, Packet, ProtocolVersion};

pub(super) use ProtocolVersion::{V3_1, V3_1_1, V5};

/// Bytes from hex, ignoring whitespace: `hex("30 02 0001")`.
pub(super) fn hex(s: &str) -> BytesMut {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {s:?}"
    );
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).expect("hex digits are ASCII");
            u8::from_str_radix(text, 16).expect("valid hex digit")
        })
        .collect::<Vec<u8>>()
        .as_slice()
        .into()
}

/// Decodes exactly one whole packet from `bytes`; the buffer must be consumed completely.
pub(super) fn decode_one(
    bytes: &str,
    version: Option<ProtocolVersion>,
) -> Result<Packet, DecodeError> {
    let mut buf = hex(bytes);
    let packet = decode(&mut buf, version, u32::MAX)?.expect("a whole packet");
    assert!(buf.is_empty(), "decode left {} bytes", buf.len());
    Ok(packet)
}

/// The decode error for `bytes`, panicking if they decode.
pub(super) fn decode_err(bytes: &str, version: Option<ProtocolVersion>) -> DecodeError {
    match decode(&mut hex(bytes), version, u32::MAX) {
        Err(e) => e,
        Ok(p) => panic!("expected an error, decoded {p:?}"),
    }
}

/// Encodes `packet` and checks `encoded_len` agrees.
pub(super) fn encode_vec(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out);
    assert_eq!(
        out.len(),
        encoded_len(packet, version),
        "encoded_len for {packet:?}"
    );
    out.to_vec()
}

/// `bytes` decode to `packet` (CONNECT with no version yet, the rest with `version`) and
/// `packet` encodes back to exactly `bytes`.
pub(super) fn assert_both_ways(bytes: &str, version: ProtocolVersion, packet: &Packet) {
    let context = match packet {
        Packet::Connect(_) => None,
        _ => Some(version),
    };
    assert_eq!(
        &decode_one(bytes, context).expect("decodes"),
        packet,
        "decoding {bytes}"
    );
    assert_eq!(
        encode_vec(packet, version),
        hex(bytes).to_vec(),
        "encoding {packet:?}"
    );
}
