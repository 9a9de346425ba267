//! Which reason codes each MQTT 5.0 packet type may carry, and the MQTT 3.1.1 return codes.
//!
//! A reason code outside its packet's table is a Protocol Error: the packet parses, but carries
//! a value the protocol does not allow (4.13: "data that is not allowed by the protocol"); e.g.
//! [MQTT-3.4.2-1] "MUST use one of the PUBACK Reason Codes". The tables are spelled out per
//! packet type so each can be checked against its section of the specification.

use super::{DecodeError, ReasonCode};

/// CONNACK reason codes (3.2.2.2).
pub(super) fn connack(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x80..=0x8A | 0x8C | 0x90 | 0x95 | 0x97 | 0x99..=0x9D | 0x9F
    )
}

/// PUBACK (3.4.2.1) and PUBREC (3.5.2.1) reason codes.
pub(super) fn puback_pubrec(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
    )
}

/// PUBREL (3.6.2.1) and PUBCOMP (3.7.2.1) reason codes.
pub(super) fn pubrel_pubcomp(code: u8) -> bool {
    matches!(code, 0x00 | 0x92)
}

/// SUBACK reason codes (3.9.3).
pub(super) fn suback(code: u8) -> bool {
    matches!(
        code,
        0x00..=0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2
    )
}

/// UNSUBACK reason codes (3.11.3).
pub(super) fn unsuback(code: u8) -> bool {
    matches!(code, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91)
}

/// DISCONNECT reason codes (3.14.2.1).
pub(super) fn disconnect(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x04 | 0x80..=0x83 | 0x87 | 0x89 | 0x8B | 0x8D..=0x90 | 0x93..=0xA2
    )
}

/// AUTH reason codes (3.15.2.1).
pub(super) fn auth(code: u8) -> bool {
    matches!(code, 0x00 | 0x18 | 0x19)
}

/// Reads a reason code through `allowed`; a code outside the table is a protocol error.
pub(super) fn check(code: u8, allowed: fn(u8) -> bool) -> Result<ReasonCode, DecodeError> {
    if allowed(code) {
        Ok(ReasonCode(code))
    } else {
        Err(DecodeError::Protocol(
            "reason code not allowed for this packet type",
        ))
    }
}

/// The MQTT 5.0 equivalent of an MQTT 3.1.1 CONNACK return code (3.2.2.3); 6..=255 are
/// reserved.
pub(super) fn from_v3_connack(code: u8) -> Result<ReasonCode, DecodeError> {
    match code {
        0 => Ok(ReasonCode::SUCCESS),
        1 => Ok(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        2 => Ok(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
        3 => Ok(ReasonCode::SERVER_UNAVAILABLE),
        4 => Ok(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        5 => Ok(ReasonCode::NOT_AUTHORIZED),
        _ => Err(DecodeError::Malformed("reserved CONNACK return code")),
    }
}

/// An MQTT 3.1.1 SUBACK return code (3.9.3): granted QoS or 0x80 failure.
pub(super) fn from_v3_suback(code: u8) -> Result<ReasonCode, DecodeError> {
    match code {
        // [MQTT-3.9.3-2] other values are reserved and must not be used.
        0x00..=0x02 | 0x80 => Ok(ReasonCode(code)),
        _ => Err(DecodeError::Malformed("reserved SUBACK return code")),
    }
}
