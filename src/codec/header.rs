//! The first byte of the fixed header (2.1.2, 2.1.3): packet type and flags.
//!
//! Checked on its own, before the remaining length or the body has arrived, so a connection that
//! opens with anything but CONNECT, or sends a packet with reserved flags set, is refused at its
//! first byte. The encoder builds the same byte here, so both directions share one table.

use super::{DecodeError, Packet, ProtocolVersion};

pub(super) const CONNECT: u8 = 1;
pub(super) const CONNACK: u8 = 2;
pub(super) const PUBLISH: u8 = 3;
pub(super) const PUBACK: u8 = 4;
pub(super) const PUBREC: u8 = 5;
pub(super) const PUBREL: u8 = 6;
pub(super) const PUBCOMP: u8 = 7;
pub(super) const SUBSCRIBE: u8 = 8;
pub(super) const SUBACK: u8 = 9;
pub(super) const UNSUBSCRIBE: u8 = 10;
pub(super) const UNSUBACK: u8 = 11;
pub(super) const PINGREQ: u8 = 12;
pub(super) const PINGRESP: u8 = 13;
pub(super) const DISCONNECT: u8 = 14;
pub(super) const AUTH: u8 = 15;

/// Flags of PUBREL, SUBSCRIBE and UNSUBSCRIBE (2.1.3).
const FLAGS_0010: u8 = 0b0010;

pub(super) const RESERVED_FLAGS: &str = "reserved fixed header flags must be 0000";

/// Validates the first byte against the connection state; returns `(packet type, flags)`.
pub(super) fn check_first_byte(
    byte: u8,
    version: Option<ProtocolVersion>,
) -> Result<(u8, u8), DecodeError> {
    let (kind, flags) = (byte >> 4, byte & 0x0F);
    match version {
        // [MQTT-3.1.0-1] the first packet from the client must be CONNECT.
        None if kind != CONNECT => {
            return Err(DecodeError::Protocol("first packet is not CONNECT"));
        }
        // [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
        Some(_) if kind == CONNECT => return Err(DecodeError::Protocol("second CONNECT")),
        _ => {}
    }
    match kind {
        // Table 2-1: type 0 is forbidden.
        0 => return Err(DecodeError::Protocol("reserved packet type 0")),
        AUTH if version.is_some_and(|v| !v.is_v5()) => {
            // Packet type 15 is reserved before MQTT 5.0.
            return Err(DecodeError::Malformed("reserved packet type 15"));
        }
        PUBLISH => {
            // [MQTT-3.3.1-4] QoS 3 is malformed.
            if (flags >> 1) & 0b11 == 3 {
                return Err(DecodeError::Malformed("PUBLISH with QoS 3"));
            }
            // [MQTT-3.3.1-2] DUP must be 0 for QoS 0.
            if flags & 0b1110 == 0b1000 {
                return Err(DecodeError::Malformed("PUBLISH with QoS 0 and DUP set"));
            }
        }
        // The CONNECT parser checks its flags once the protocol name is known.
        CONNECT => {}
        // [MQTT-2.1.3-1] (3.1.1: [MQTT-2.2.2-1], [MQTT-2.2.2-2]) reserved flags must match.
        PUBREL | SUBSCRIBE | UNSUBSCRIBE if flags != FLAGS_0010 => {
            return Err(DecodeError::Malformed(
                "reserved fixed header flags must be 0010",
            ));
        }
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => {}
        _ if flags != 0 => return Err(DecodeError::Malformed(RESERVED_FLAGS)),
        _ => {}
    }
    Ok((kind, flags))
}

/// The first byte of `packet`'s fixed header.
pub(super) fn first_byte(packet: &Packet) -> u8 {
    let flags = match packet {
        Packet::Publish(p) => {
            (u8::from(p.dup && p.qos as u8 > 0) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
        }
        Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => FLAGS_0010,
        _ => 0,
    };
    (packet.packet_type() << 4) | flags
}
