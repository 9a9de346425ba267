//! Sans-IO MQTT 3.1.1 / 5.0 codec: bytes in, [`Packet`]s out, and back.
//!
//! Nothing here touches a socket or a clock. The decoder is incremental: it reads the fixed header,
//! rejects a packet larger than the negotiated maximum before its body is buffered, and returns
//! `Ok(None)` until a whole packet is available.

mod error;
mod packet;
mod properties;
mod reason;

pub use error::DecodeError;
pub use packet::*;
pub use properties::Properties;
pub use reason::ReasonCode;

use bytes::BytesMut;

/// Decodes one packet from the front of `buf`, consuming its bytes.
///
/// `version` is `None` before CONNECT: then only a CONNECT is accepted (its level decides the
/// version; anything else is a protocol error [MQTT-3.1.0-1]). `max_packet_size` bounds the
/// whole packet including the fixed header.
///
/// Returns `Ok(None)` when more bytes are needed.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    todo!("codec helper")
}

/// Appends the encoding of `packet` for `version` to `out`.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) {
    todo!("codec helper")
}

/// The encoded size of `packet` for `version`, in bytes, without encoding it (used to enforce the
/// client's Maximum Packet Size before sending [MQTT-3.1.2-24]).
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    todo!("codec helper")
}
