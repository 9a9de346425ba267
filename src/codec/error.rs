//! Decode errors, each mapped to the MQTT 5.0 reason code the broker answers with.

use super::ReasonCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes do not form a valid packet (reason code 0x81).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Well-formed bytes that break a protocol rule (reason code 0x82).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// Remaining length says the packet exceeds the maximum packet size (0x95); detected from
    /// the fixed header alone, before the body is buffered.
    #[error("packet of {size} bytes exceeds the maximum packet size {max}")]
    PacketTooLarge { size: usize, max: u32 },
    /// CONNECT with an unknown protocol name or level (0x84; 3.1.1 CONNACK return code 1).
    #[error("unsupported protocol name or level {0}")]
    UnsupportedProtocolVersion(u8),
    /// A topic name that is not valid UTF-8 or contains wildcards (0x90 in PUBLISH).
    #[error("invalid topic name")]
    TopicNameInvalid,
}

impl DecodeError {
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            DecodeError::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocolVersion(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicNameInvalid => ReasonCode::TOPIC_NAME_INVALID,
        }
    }
}
