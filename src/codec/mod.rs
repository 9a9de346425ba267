//! Sans-IO MQTT 3.1.1 / 5.0 codec: bytes in, [`Packet`]s out, and back.
//!
//! Nothing here touches a socket or a clock. The decoder is incremental: it reads the fixed header,
//! rejects a packet larger than the negotiated maximum before its body is buffered, and returns
//! `Ok(None)` until a whole packet is available.

mod decode;
mod encode;
mod error;
pub mod flow;
mod header;
mod packet;
mod primitives;
mod properties;
mod props_codec;
mod reason;
mod reason_sets;
#[cfg(test)]
mod tests;

pub use encode::PublishRef;
pub use error::DecodeError;
pub use packet::*;
pub use properties::{Properties, PropertyValues};
pub use reason::ReasonCode;

use bytes::BytesMut;

/// Decodes one packet from the front of `buf`, consuming its bytes.
///
/// `version` is `None` before CONNECT: then only a CONNECT is accepted (its level decides the
/// version; anything else is a protocol error [MQTT-3.1.0-1]). `max_packet_size` bounds the
/// whole packet including the fixed header.
///
/// Returns `Ok(None)` when more bytes are needed, consuming nothing. After an error the
/// connection is unusable: how much of `buf` was consumed is unspecified.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    decode::decode(buf, version, max_packet_size)
}

/// [`decode`] for a server: the packet types only a server sends (CONNACK, SUBACK, UNSUBACK,
/// PINGRESP) are a protocol error whatever their content, decided from the first byte alone
/// (2.1.2: their direction is "Server to Client").
pub fn decode_from_client(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    if let (Some(_), Some(first)) = (version, buf.first()) {
        let kind = first >> 4;
        if matches!(kind, 2 | 9 | 11 | 13) {
            // The spec does not order the two checks; as the reference broker does, SUBACK and
            // UNSUBACK with bad reserved flags [MQTT-2.1.3-1] are malformed, and otherwise a
            // packet only a server sends is a protocol error.
            if matches!(kind, 9 | 11) && first & 0x0F != 0 {
                return Err(DecodeError::Malformed("reserved fixed header flags set"));
            }
            return Err(DecodeError::Protocol(
                "server-to-client packet sent by a client",
            ));
        }
    }
    decode(buf, version, max_packet_size)
}

/// Appends the encoding of `packet` for `version` to `out`.
///
/// Everything follows `version`, including a CONNECT's protocol name and level
/// (`Connect::protocol` is what the decoder found; the encoder does not read it).
/// For 3.x no properties are written and reason codes become 3.1.1 return codes; for 5.0 the
/// short forms are used where the spec allows them. The caller keeps strings and binary data
/// within 65,535 bytes and the packet within the 268,435,455 byte remaining length (checked by
/// debug assertions only; [`encoded_len`] sizes an oversized packet without panicking).
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) {
    encode::encode(packet, version, out)
}

/// The length of the whole packet (fixed header included) at the start of `buf`, from its fixed
/// header alone; `None` when `buf` does not hold a complete, well-formed fixed header. Used to
/// split buffers of packets this crate encoded (one QUIC datagram per packet).
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let (remaining, len_bytes) = primitives::peek_varint(buf.get(1..)?).ok()??;
    Some(1 + len_bytes + remaining as usize)
}

/// The encoded size of `packet` for `version`, in bytes, without encoding it (used to enforce the
/// client's Maximum Packet Size before sending [MQTT-3.1.2-24]).
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    encode::encoded_len(packet, version)
}
