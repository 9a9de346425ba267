//! MQTT 5.0 properties (section 2.2.2): one struct for every packet type.
//!
//! The decoder checks, per packet type, that only the allowed identifiers appear and that none
//! except User Property (and Subscription Identifier in a server-sent PUBLISH) appears twice.
//! MQTT 3.1.1 packets always carry `Properties::default()`.

use bytes::Bytes;
use bytestring::ByteString;

/// All MQTT 5.0 properties. `None` / empty means "absent on the wire".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyValues {
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

/// The properties of one packet: [`PropertyValues`] behind a pointer that is null when the
/// packet has none (every 3.1.1 packet, and most 5.0 PUBLISH and acknowledgements).
///
/// Why: the values take ~400 bytes, and every packet, message and delivery carries a set. Inline,
/// they made each `Packet` 472 bytes, and moving packets through the decoder, the broker's
/// outputs and the writers was a quarter of the broker's instructions (callgrind, fan-in QoS 1).
/// Reading an absent set reads a shared empty one; writing a field allocates the set.
#[derive(Clone, Default)]
pub struct Properties(Option<Box<PropertyValues>>);

static EMPTY: PropertyValues = PropertyValues {
    payload_format_indicator: None,
    message_expiry_interval: None,
    content_type: None,
    response_topic: None,
    correlation_data: None,
    subscription_identifiers: Vec::new(),
    session_expiry_interval: None,
    assigned_client_identifier: None,
    server_keep_alive: None,
    authentication_method: None,
    authentication_data: None,
    request_problem_information: None,
    will_delay_interval: None,
    request_response_information: None,
    response_information: None,
    server_reference: None,
    reason_string: None,
    receive_maximum: None,
    topic_alias_maximum: None,
    topic_alias: None,
    maximum_qos: None,
    retain_available: None,
    user_properties: Vec::new(),
    maximum_packet_size: None,
    wildcard_subscription_available: None,
    subscription_identifier_available: None,
    shared_subscription_available: None,
};

impl Properties {
    pub fn is_empty(&self) -> bool {
        match &self.0 {
            None => true,
            Some(values) => **values == EMPTY,
        }
    }

    /// The values, when any were ever set (`None`: certainly empty, nothing to measure or
    /// write: the encoder's fast path for the PUBLISH that carries no properties).
    pub fn values(&self) -> Option<&PropertyValues> {
        self.0.as_deref()
    }

    /// The values, moved out (the empty set when there are none).
    pub fn into_values(self) -> PropertyValues {
        self.0.map(|b| *b).unwrap_or_default()
    }
}

impl From<PropertyValues> for Properties {
    fn from(values: PropertyValues) -> Properties {
        Properties(Some(Box::new(values)))
    }
}

impl std::ops::Deref for Properties {
    type Target = PropertyValues;
    fn deref(&self) -> &PropertyValues {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl std::ops::DerefMut for Properties {
    fn deref_mut(&mut self) -> &mut PropertyValues {
        self.0.get_or_insert_with(Box::default)
    }
}

/// An absent set equals an allocated empty one.
impl PartialEq for Properties {
    fn eq(&self, other: &Properties) -> bool {
        **self == **other
    }
}

impl Eq for Properties {}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}
