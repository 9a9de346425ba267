//! Flow headers of the MQTT-next draft (mqtt.ai, March 2024): the optional prefix of a QUIC
//! stream that names the flow it carries. Sans-IO: bytes in, a parsed header out.
//!
//! A stream whose first byte is 0x11..=0x14 starts with a flow header; no MQTT packet a client
//! may send starts with one of those bytes (they would be a CONNECT with reserved flags set), so
//! flows and plain MQTT streams live on one listener. See `proto-ext/flows.md`.

use bytes::{BufMut, BytesMut};

pub const FLOW_CONTROL: u8 = 0x11;
pub const FLOW_CLIENT_DATA: u8 = 0x12;
pub const FLOW_SERVER_DATA: u8 = 0x13;
pub const FLOW_USER_DEFINED: u8 = 0x14;

/// Longest header we wait for before giving up (type + id + expiry, each at most 8 bytes, + flags).
pub const MAX_HEADER_LEN: usize = 25;

/// A flow identifier: bit 0 is the initiator (0 client, 1 server), the rest a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowId(pub u64);

impl FlowId {
    pub fn is_server_initiated(self) -> bool {
        self.0 & 1 == 1
    }
    pub fn server(sequence: u64) -> FlowId {
        FlowId((sequence << 1) | 1)
    }
}

/// The flow flags octet, most significant bit first: optional headers, persistent
/// subscriptions, persistent topic alias, persistent QoS, error tolerance (2 bits), abort if no
/// state, clean. (The draft's figure is ambiguous about the order; this is the order the
/// `mqtt5` crate uses, see `proto-ext/flows.md`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowFlags(pub u8);

impl FlowFlags {
    pub fn optional_headers(self) -> bool {
        self.0 & 0x80 != 0
    }
    pub fn persistent_subscriptions(self) -> bool {
        self.0 & 0x40 != 0
    }
    pub fn persistent_topic_alias(self) -> bool {
        self.0 & 0x20 != 0
    }
    pub fn persistent_qos(self) -> bool {
        self.0 & 0x10 != 0
    }
    pub fn error_tolerance(self) -> u8 {
        (self.0 >> 2) & 0b11
    }
    pub fn abort_if_no_state(self) -> bool {
        self.0 & 0x02 != 0
    }
    pub fn clean(self) -> bool {
        self.0 & 0x01 != 0
    }
    /// Clean with nothing persistent: the client asks to discard the flow's state.
    pub fn is_discard(self) -> bool {
        self.clean()
            && !self.persistent_qos()
            && !self.persistent_subscriptions()
            && !self.persistent_topic_alias()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowHeader {
    /// 0x11: on the control stream; the flow id is 0.
    Control { id: FlowId, flags: FlowFlags },
    /// 0x12 (client data) or 0x13 (server data).
    Data {
        kind: u8,
        id: FlowId,
        expire_secs: u64,
        flags: FlowFlags,
    },
    /// 0x14: user-defined content follows; mqttd refuses these flows.
    UserDefined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("flow header longer than {MAX_HEADER_LEN} bytes or malformed")]
    Malformed,
    #[error("unknown flow type 0x{0:02X}")]
    UnknownType(u64),
}

/// True if a stream starting with `first` carries a flow header.
pub fn starts_flow(first: u8) -> bool {
    (FLOW_CONTROL..=FLOW_USER_DEFINED).contains(&first)
}

/// Parses a flow header at the front of `buf`: `Ok(None)` while incomplete, else the header and
/// its length in bytes.
pub fn parse(buf: &[u8]) -> Result<Option<(FlowHeader, usize)>, FlowError> {
    let mut at = 0;
    let Some(kind) = varint(buf, &mut at)? else {
        return incomplete(buf);
    };
    match kind {
        0x11 => {
            let Some(id) = varint(buf, &mut at)? else {
                return incomplete(buf);
            };
            let Some(&flags) = buf.get(at) else {
                return incomplete(buf);
            };
            Ok(Some((
                FlowHeader::Control {
                    id: FlowId(id),
                    flags: FlowFlags(flags),
                },
                at + 1,
            )))
        }
        0x12 | 0x13 => {
            let Some(id) = varint(buf, &mut at)? else {
                return incomplete(buf);
            };
            let Some(expire_secs) = varint(buf, &mut at)? else {
                return incomplete(buf);
            };
            let Some(&flags) = buf.get(at) else {
                return incomplete(buf);
            };
            let header = FlowHeader::Data {
                kind: kind as u8,
                id: FlowId(id),
                expire_secs,
                flags: FlowFlags(flags),
            };
            Ok(Some((header, at + 1)))
        }
        0x14 => Ok(Some((FlowHeader::UserDefined, at))),
        other => Err(FlowError::UnknownType(other)),
    }
}

fn incomplete(buf: &[u8]) -> Result<Option<(FlowHeader, usize)>, FlowError> {
    if buf.len() >= MAX_HEADER_LEN {
        Err(FlowError::Malformed)
    } else {
        Ok(None)
    }
}

/// Encodes a server data flow header (0x13).
pub fn encode_server_data(id: FlowId, expire_secs: u64, flags: FlowFlags, out: &mut BytesMut) {
    put_varint(u64::from(FLOW_SERVER_DATA), out);
    put_varint(id.0, out);
    put_varint(expire_secs, out);
    out.put_u8(flags.0);
}

/// A QUIC variable-length integer (RFC 9000 16): `Ok(None)` if `buf` ends inside it.
fn varint(buf: &[u8], at: &mut usize) -> Result<Option<u64>, FlowError> {
    let Some(&first) = buf.get(*at) else {
        return Ok(None);
    };
    let len = 1usize << (first >> 6);
    let Some(bytes) = buf.get(*at..*at + len) else {
        return Ok(None);
    };
    let mut value = u64::from(first & 0x3F);
    for &b in bytes.iter().skip(1) {
        value = (value << 8) | u64::from(b);
    }
    *at += len;
    Ok(Some(value))
}

fn put_varint(value: u64, out: &mut BytesMut) {
    match value {
        0..=63 => out.put_u8(value as u8),
        64..=16_383 => out.put_u16(0x4000 | value as u16),
        16_384..=1_073_741_823 => out.put_u32(0x8000_0000 | value as u32),
        _ => out.put_u64(0xC000_0000_0000_0000 | value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn parses_each_header_type_incrementally() {
        let control = hex("11 00 50");
        let data = hex("12 02 41 2C 50 30 00 01 70");
        for (bytes, expected, len) in [
            (
                control.clone(),
                FlowHeader::Control {
                    id: FlowId(0),
                    flags: FlowFlags(0x50),
                },
                3,
            ),
            (
                data.clone(),
                FlowHeader::Data {
                    kind: 0x12,
                    id: FlowId(2),
                    expire_secs: 300,
                    flags: FlowFlags(0x50),
                },
                5,
            ),
        ] {
            for cut in 0..len {
                assert_eq!(parse(&bytes[..cut]), Ok(None), "cut at {cut}");
            }
            assert_eq!(parse(&bytes), Ok(Some((expected, len))));
        }
        assert_eq!(parse(&[0x14, 0xAA]), Ok(Some((FlowHeader::UserDefined, 1))));
        assert_eq!(parse(&[0x15]), Err(FlowError::UnknownType(0x15)));
        assert!(starts_flow(0x12) && !starts_flow(0x10) && !starts_flow(0x30));
    }

    #[test]
    fn flag_bits_and_discard() {
        let f = FlowFlags(0x50);
        assert!(f.persistent_subscriptions() && f.persistent_qos() && !f.clean());
        assert!(FlowFlags(0x01).is_discard());
        assert!(!FlowFlags(0x11).is_discard());
        assert_eq!(FlowFlags(0x0C).error_tolerance(), 3);
    }

    #[test]
    fn server_data_header_round_trips() {
        let mut out = BytesMut::new();
        encode_server_data(FlowId::server(1), 0, FlowFlags(0), &mut out);
        assert_eq!(&out[..], &hex("13 03 00 00")[..]);
        assert_eq!(
            parse(&out),
            Ok(Some((
                FlowHeader::Data {
                    kind: 0x13,
                    id: FlowId(3),
                    expire_secs: 0,
                    flags: FlowFlags(0)
                },
                4
            )))
        );
        let mut big = BytesMut::new();
        encode_server_data(FlowId(1 << 40), 70_000, FlowFlags(0x01), &mut big);
        assert!(
            matches!(parse(&big), Ok(Some((FlowHeader::Data { id: FlowId(v), expire_secs: 70_000, .. }, _))) if v == 1 << 40)
        );
    }
}
