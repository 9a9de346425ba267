//! MQTT 5.0 properties on the wire (2.2.2): the per-packet allow lists, decoding with duplicate
//! and value checks, and encoding.
//!
//! Allow lists and the duplicate check are bit masks over the identifier (all identifiers are
//! below 64), so a property block is checked without allocating.

use bytes::{BufMut, BytesMut};
use bytestring::ByteString;

use super::primitives::{prefixed_len, put_prefixed, put_varint, varint_len, Reader, MAX_VARINT};
use super::{DecodeError, Properties, PropertyValues};

mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Where a property block sits; decides which identifiers are allowed (2.2.2.2, table 2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PropContext {
    Connect,
    /// Will Properties in the CONNECT payload (3.1.3.2).
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

// A const fn over constant tables, evaluated at compile time: an index out of range is a
// compile error, never a runtime panic (and `get` is not usable in a const fn loop here).
#[allow(clippy::indexing_slicing)]
const fn mask(ids: &[u8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < ids.len() {
        m |= 1 << ids[i];
        i += 1;
    }
    m
}

impl PropContext {
    fn allowed(self) -> u64 {
        use id::*;
        match self {
            PropContext::Connect => {
                const {
                    mask(&[
                        SESSION_EXPIRY_INTERVAL,
                        RECEIVE_MAXIMUM,
                        MAXIMUM_PACKET_SIZE,
                        TOPIC_ALIAS_MAXIMUM,
                        REQUEST_RESPONSE_INFORMATION,
                        REQUEST_PROBLEM_INFORMATION,
                        USER_PROPERTY,
                        AUTHENTICATION_METHOD,
                        AUTHENTICATION_DATA,
                    ])
                }
            }
            PropContext::Will => {
                const {
                    mask(&[
                        WILL_DELAY_INTERVAL,
                        PAYLOAD_FORMAT_INDICATOR,
                        MESSAGE_EXPIRY_INTERVAL,
                        CONTENT_TYPE,
                        RESPONSE_TOPIC,
                        CORRELATION_DATA,
                        USER_PROPERTY,
                    ])
                }
            }
            PropContext::ConnAck => {
                const {
                    mask(&[
                        SESSION_EXPIRY_INTERVAL,
                        RECEIVE_MAXIMUM,
                        MAXIMUM_QOS,
                        RETAIN_AVAILABLE,
                        MAXIMUM_PACKET_SIZE,
                        ASSIGNED_CLIENT_IDENTIFIER,
                        TOPIC_ALIAS_MAXIMUM,
                        REASON_STRING,
                        USER_PROPERTY,
                        WILDCARD_SUBSCRIPTION_AVAILABLE,
                        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                        SHARED_SUBSCRIPTION_AVAILABLE,
                        SERVER_KEEP_ALIVE,
                        RESPONSE_INFORMATION,
                        SERVER_REFERENCE,
                        AUTHENTICATION_METHOD,
                        AUTHENTICATION_DATA,
                    ])
                }
            }
            PropContext::Publish => {
                const {
                    mask(&[
                        PAYLOAD_FORMAT_INDICATOR,
                        MESSAGE_EXPIRY_INTERVAL,
                        TOPIC_ALIAS,
                        RESPONSE_TOPIC,
                        CORRELATION_DATA,
                        USER_PROPERTY,
                        SUBSCRIPTION_IDENTIFIER,
                        CONTENT_TYPE,
                    ])
                }
            }
            PropContext::Ack | PropContext::SubAck | PropContext::UnsubAck => {
                const { mask(&[REASON_STRING, USER_PROPERTY]) }
            }
            PropContext::Subscribe => const { mask(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]) },
            PropContext::Unsubscribe => const { mask(&[USER_PROPERTY]) },
            PropContext::Disconnect => {
                const {
                    mask(&[
                        SESSION_EXPIRY_INTERVAL,
                        REASON_STRING,
                        USER_PROPERTY,
                        SERVER_REFERENCE,
                    ])
                }
            }
            PropContext::Auth => {
                const {
                    mask(&[
                        AUTHENTICATION_METHOD,
                        AUTHENTICATION_DATA,
                        REASON_STRING,
                        USER_PROPERTY,
                    ])
                }
            }
        }
    }

    /// Identifiers that may appear more than once in this context.
    fn repeatable(self) -> u64 {
        match self {
            // 3.3.2.3.8: one Subscription Identifier per matching subscription.
            PropContext::Publish => {
                const { mask(&[id::USER_PROPERTY, id::SUBSCRIPTION_IDENTIFIER]) }
            }
            _ => const { mask(&[id::USER_PROPERTY]) },
        }
    }
}

fn boolean(value: u8, what: &'static str) -> Result<u8, DecodeError> {
    if value <= 1 {
        Ok(value)
    } else {
        Err(DecodeError::Protocol(what))
    }
}

fn non_zero<T: Default + PartialEq>(value: T, what: &'static str) -> Result<T, DecodeError> {
    if value == T::default() {
        Err(DecodeError::Protocol(what))
    } else {
        Ok(value)
    }
}

/// Reads a Property Length and the properties it covers.
pub(super) fn decode(r: &mut Reader, ctx: PropContext) -> Result<Properties, DecodeError> {
    let len = r.varint()? as usize;
    if len > r.remaining() {
        return Err(DecodeError::Malformed("property length exceeds the packet"));
    }
    let mut props = Properties::default();
    if len == 0 {
        return Ok(props);
    }
    // A reader bounded by the Property Length: a value running past it is truncated, not read
    // from the payload.
    let mut block = Reader::new(r.take(len)?);
    let (allowed, repeatable) = (ctx.allowed(), ctx.repeatable());
    let mut seen = 0u64;
    while !block.is_empty() {
        let ident = block.varint()?;
        // 2.2.2.2: an identifier not defined for this packet type makes the packet malformed.
        let bit = match 1u64.checked_shl(ident) {
            Some(bit) if allowed & bit != 0 => bit,
            _ => {
                return Err(DecodeError::Malformed(
                    "property not allowed in this packet",
                ))
            }
        };
        // 2.2.2.2 and each property's definition: only the listed ones may repeat.
        if seen & bit != 0 && repeatable & bit == 0 {
            return Err(DecodeError::Protocol("property included more than once"));
        }
        seen |= bit;
        // `ident` is below 64 here, so the narrowing is exact.
        read_value(&mut block, ident as u8, &mut props)?;
    }
    Ok(props)
}

/// Response Topic (3.1.3.2.5, 3.3.2.3.5): a topic name, so no wildcards [MQTT-3.3.2-14].
fn response_topic(r: &mut Reader) -> Result<ByteString, DecodeError> {
    let topic = r.string()?;
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(DecodeError::Protocol("response topic contains wildcards"));
    }
    Ok(topic)
}

fn read_value(r: &mut Reader, ident: u8, p: &mut Properties) -> Result<(), DecodeError> {
    use id::*;
    match ident {
        // 3.3.2.3.2: 0 or 1.
        PAYLOAD_FORMAT_INDICATOR => {
            p.payload_format_indicator = Some(boolean(r.u8()?, "payload format indicator")?)
        }
        MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(r.u32()?),
        CONTENT_TYPE => p.content_type = Some(r.string()?),
        RESPONSE_TOPIC => p.response_topic = Some(response_topic(r)?),
        CORRELATION_DATA => p.correlation_data = Some(r.binary()?),
        // 3.3.2.3.8, 3.8.2.1.2: a value of 0 is a protocol error.
        SUBSCRIPTION_IDENTIFIER => p
            .subscription_identifiers
            .push(non_zero(r.varint()?, "subscription identifier 0")?),
        SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(r.u32()?),
        ASSIGNED_CLIENT_IDENTIFIER => p.assigned_client_identifier = Some(r.string()?),
        SERVER_KEEP_ALIVE => p.server_keep_alive = Some(r.u16()?),
        AUTHENTICATION_METHOD => p.authentication_method = Some(r.string()?),
        AUTHENTICATION_DATA => p.authentication_data = Some(r.binary()?),
        // 3.1.2.11.7: 0 or 1.
        REQUEST_PROBLEM_INFORMATION => {
            p.request_problem_information = Some(boolean(r.u8()?, "request problem information")?)
        }
        WILL_DELAY_INTERVAL => p.will_delay_interval = Some(r.u32()?),
        // 3.1.2.11.6: 0 or 1.
        REQUEST_RESPONSE_INFORMATION => {
            p.request_response_information = Some(boolean(r.u8()?, "request response information")?)
        }
        RESPONSE_INFORMATION => p.response_information = Some(r.string()?),
        SERVER_REFERENCE => p.server_reference = Some(r.string()?),
        REASON_STRING => p.reason_string = Some(r.string()?),
        // 3.1.2.11.3, 3.2.2.3.3: 0 is a protocol error.
        RECEIVE_MAXIMUM => p.receive_maximum = Some(non_zero(r.u16()?, "receive maximum 0")?),
        TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(r.u16()?),
        // [MQTT-3.3.2-8] 0 is not a valid topic alias (the broker checks the upper bound).
        TOPIC_ALIAS => p.topic_alias = Some(non_zero(r.u16()?, "topic alias 0")?),
        // 3.2.2.3.4: 0 or 1.
        MAXIMUM_QOS => p.maximum_qos = Some(boolean(r.u8()?, "maximum QoS")?),
        // 3.2.2.3.5: 0 or 1.
        RETAIN_AVAILABLE => p.retain_available = Some(boolean(r.u8()?, "retain available")?),
        USER_PROPERTY => {
            let key = r.string()?;
            let value = r.string()?;
            p.user_properties.push((key, value));
        }
        // 3.1.2.11.4, 3.2.2.3.6: 0 is a protocol error.
        MAXIMUM_PACKET_SIZE => {
            p.maximum_packet_size = Some(non_zero(r.u32()?, "maximum packet size 0")?)
        }
        // 3.2.2.3.11 to 3.2.2.3.13: 0 or 1.
        WILDCARD_SUBSCRIPTION_AVAILABLE => {
            p.wildcard_subscription_available =
                Some(boolean(r.u8()?, "wildcard subscription available")?)
        }
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            p.subscription_identifier_available =
                Some(boolean(r.u8()?, "subscription identifier available")?)
        }
        SHARED_SUBSCRIPTION_AVAILABLE => {
            p.shared_subscription_available =
                Some(boolean(r.u8()?, "shared subscription available")?)
        }
        // Unreachable: every allow list holds only the identifiers above.
        _ => return Err(DecodeError::Malformed("unknown property")),
    }
    Ok(())
}

/// Size of the properties themselves, without the Property Length prefix, with `alias`,
/// when given, as the Topic Alias (a PUBLISH written for one subscriber: the alias is
/// particular to its connection, the rest shared by every copy).
pub(super) fn len_with_alias(p: &Properties, alias: Option<u16>) -> usize {
    match p.values() {
        None => alias.map_or(0, |_| 3),
        Some(values) => values_len(values, alias),
    }
}

fn values_len(p: &PropertyValues, alias: Option<u16>) -> usize {
    fn opt<T>(v: &Option<T>, size: impl Fn(&T) -> usize) -> usize {
        v.as_ref().map_or(0, |v| 1 + size(v))
    }
    let byte = |_: &u8| 1;
    let two = |_: &u16| 2;
    let four = |_: &u32| 4;
    let string = |s: &ByteString| prefixed_len(s.as_bytes());
    let binary = |b: &bytes::Bytes| prefixed_len(b);

    opt(&p.payload_format_indicator, byte)
        + opt(&p.message_expiry_interval, four)
        + opt(&p.content_type, string)
        + opt(&p.response_topic, string)
        + opt(&p.correlation_data, binary)
        + p.subscription_identifiers
            .iter()
            .map(|&v| 1 + varint_len(v as usize))
            .sum::<usize>()
        + opt(&p.session_expiry_interval, four)
        + opt(&p.assigned_client_identifier, string)
        + opt(&p.server_keep_alive, two)
        + opt(&p.authentication_method, string)
        + opt(&p.authentication_data, binary)
        + opt(&p.request_problem_information, byte)
        + opt(&p.will_delay_interval, four)
        + opt(&p.request_response_information, byte)
        + opt(&p.response_information, string)
        + opt(&p.server_reference, string)
        + opt(&p.reason_string, string)
        + opt(&p.receive_maximum, two)
        + opt(&p.topic_alias_maximum, two)
        + opt(&alias.or(p.topic_alias), two)
        + opt(&p.maximum_qos, byte)
        + opt(&p.retain_available, byte)
        + p.user_properties
            .iter()
            .map(|(k, v)| 1 + prefixed_len(k.as_bytes()) + prefixed_len(v.as_bytes()))
            .sum::<usize>()
        + opt(&p.maximum_packet_size, four)
        + opt(&p.wildcard_subscription_available, byte)
        + opt(&p.subscription_identifier_available, byte)
        + opt(&p.shared_subscription_available, byte)
}

/// Size of a property block: the Property Length prefix plus the properties.
pub(super) fn block_len(p: &Properties) -> usize {
    block_len_with_alias(p, None)
}

/// [`block_len`] with `alias` as the Topic Alias (see [`len_with_alias`]).
pub(super) fn block_len_with_alias(p: &Properties, alias: Option<u16>) -> usize {
    let n = len_with_alias(p, alias);
    varint_len(n) + n
}

/// Writes a Property Length and the properties, in identifier order.
pub(super) fn encode(p: &Properties, out: &mut BytesMut) {
    encode_with_alias(p, None, out)
}

/// [`encode`] with `alias`, when given, as the Topic Alias (in its place in identifier
/// order, so the bytes are those of the properties with the alias set).
pub(super) fn encode_with_alias(p: &Properties, alias: Option<u16>, out: &mut BytesMut) {
    use id::*;
    // No property ever set (the usual forwarded PUBLISH): the block is written directly,
    // without visiting every field of the empty set (the per-delivery path of 5.0 fan-out
    // with topic aliases).
    let Some(p) = p.values() else {
        match alias {
            None => out.put_u8(0),
            Some(alias) => {
                out.put_u8(3);
                out.put_u8(TOPIC_ALIAS);
                out.put_u16(alias);
            }
        }
        return;
    };
    put_varint(out, values_len(p, alias));

    fn put<T>(out: &mut BytesMut, ident: u8, v: &Option<T>, write: impl Fn(&mut BytesMut, &T)) {
        if let Some(v) = v {
            out.put_u8(ident);
            write(out, v);
        }
    }
    let byte = |o: &mut BytesMut, v: &u8| o.put_u8(*v);
    let two = |o: &mut BytesMut, v: &u16| o.put_u16(*v);
    let four = |o: &mut BytesMut, v: &u32| o.put_u32(*v);
    let string = |o: &mut BytesMut, s: &ByteString| put_prefixed(o, s.as_bytes());
    let binary = |o: &mut BytesMut, b: &bytes::Bytes| put_prefixed(o, b);

    put(
        out,
        PAYLOAD_FORMAT_INDICATOR,
        &p.payload_format_indicator,
        byte,
    );
    put(
        out,
        MESSAGE_EXPIRY_INTERVAL,
        &p.message_expiry_interval,
        four,
    );
    put(out, CONTENT_TYPE, &p.content_type, string);
    put(out, RESPONSE_TOPIC, &p.response_topic, string);
    put(out, CORRELATION_DATA, &p.correlation_data, binary);
    for &sub_id in &p.subscription_identifiers {
        debug_assert!(sub_id as usize <= MAX_VARINT);
        out.put_u8(SUBSCRIPTION_IDENTIFIER);
        put_varint(out, sub_id as usize);
    }
    put(
        out,
        SESSION_EXPIRY_INTERVAL,
        &p.session_expiry_interval,
        four,
    );
    put(
        out,
        ASSIGNED_CLIENT_IDENTIFIER,
        &p.assigned_client_identifier,
        string,
    );
    put(out, SERVER_KEEP_ALIVE, &p.server_keep_alive, two);
    put(out, AUTHENTICATION_METHOD, &p.authentication_method, string);
    put(out, AUTHENTICATION_DATA, &p.authentication_data, binary);
    put(
        out,
        REQUEST_PROBLEM_INFORMATION,
        &p.request_problem_information,
        byte,
    );
    put(out, WILL_DELAY_INTERVAL, &p.will_delay_interval, four);
    put(
        out,
        REQUEST_RESPONSE_INFORMATION,
        &p.request_response_information,
        byte,
    );
    put(out, RESPONSE_INFORMATION, &p.response_information, string);
    put(out, SERVER_REFERENCE, &p.server_reference, string);
    put(out, REASON_STRING, &p.reason_string, string);
    put(out, RECEIVE_MAXIMUM, &p.receive_maximum, two);
    put(out, TOPIC_ALIAS_MAXIMUM, &p.topic_alias_maximum, two);
    put(out, TOPIC_ALIAS, &alias.or(p.topic_alias), two);
    put(out, MAXIMUM_QOS, &p.maximum_qos, byte);
    put(out, RETAIN_AVAILABLE, &p.retain_available, byte);
    for (key, value) in &p.user_properties {
        out.put_u8(USER_PROPERTY);
        put_prefixed(out, key.as_bytes());
        put_prefixed(out, value.as_bytes());
    }
    put(out, MAXIMUM_PACKET_SIZE, &p.maximum_packet_size, four);
    put(
        out,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        &p.wildcard_subscription_available,
        byte,
    );
    put(
        out,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        &p.subscription_identifier_available,
        byte,
    );
    put(
        out,
        SHARED_SUBSCRIPTION_AVAILABLE,
        &p.shared_subscription_available,
        byte,
    );
}
