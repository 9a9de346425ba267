//! MQTT 5.0 properties (section 2.2.2): one struct for every packet type.
//!
//! The decoder checks, per packet type, that only the allowed identifiers appear and that none
//! except User Property (and Subscription Identifier in a server-sent PUBLISH) appears twice.
//! MQTT 3.1.1 packets always carry `Properties::default()`.

use bytes::Bytes;
use bytestring::ByteString;

/// All MQTT 5.0 properties. `None` / empty means "absent on the wire".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01, PUBLISH / will: 0 = unspecified bytes, 1 = UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// 0x02, PUBLISH / will, seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03, PUBLISH / will.
    pub content_type: Option<ByteString>,
    /// 0x08, PUBLISH / will.
    pub response_topic: Option<ByteString>,
    /// 0x09, PUBLISH / will.
    pub correlation_data: Option<Bytes>,
    /// 0x0B, PUBLISH (server to client: one per matching subscription) and SUBSCRIBE (at most one).
    /// Values 1..=268_435_455; 0 is a protocol error.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, CONNECT / CONNACK / DISCONNECT, seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12, CONNACK.
    pub assigned_client_identifier: Option<ByteString>,
    /// 0x13, CONNACK, seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15, CONNECT / CONNACK / AUTH.
    pub authentication_method: Option<ByteString>,
    /// 0x16, CONNECT / CONNACK / AUTH.
    pub authentication_data: Option<Bytes>,
    /// 0x17, CONNECT (0 or 1).
    pub request_problem_information: Option<u8>,
    /// 0x18, will properties, seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19, CONNECT (0 or 1).
    pub request_response_information: Option<u8>,
    /// 0x1A, CONNACK.
    pub response_information: Option<ByteString>,
    /// 0x1C, CONNACK / DISCONNECT.
    pub server_reference: Option<ByteString>,
    /// 0x1F, CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH.
    pub reason_string: Option<ByteString>,
    /// 0x21, CONNECT / CONNACK; 0 is a protocol error.
    pub receive_maximum: Option<u16>,
    /// 0x22, CONNECT / CONNACK.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, PUBLISH; 0 is a protocol error.
    pub topic_alias: Option<u16>,
    /// 0x24, CONNACK (0 or 1).
    pub maximum_qos: Option<u8>,
    /// 0x25, CONNACK (0 or 1).
    pub retain_available: Option<u8>,
    /// 0x26, every packet that has properties; order preserved, duplicates allowed.
    pub user_properties: Vec<(ByteString, ByteString)>,
    /// 0x27, CONNECT / CONNACK; 0 is a protocol error.
    pub maximum_packet_size: Option<u32>,
    /// 0x28, CONNACK (0 or 1).
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29, CONNACK (0 or 1).
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A, CONNACK (0 or 1).
    pub shared_subscription_available: Option<u8>,
}

impl Properties {
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}
