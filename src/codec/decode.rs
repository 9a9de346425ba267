//! Bytes to [`Packet`]: framing (fixed header, size limit, waiting for the whole packet) and one
//! parser per packet type.
//!
//! Every normative statement the decoder enforces is tagged with its clause. Which error a rule
//! yields matters: the broker answers with `DecodeError::reason_code()`.

use bytes::{Buf, BytesMut};
use bytestring::ByteString;

use super::header::{self, check_first_byte};
use super::primitives::{peek_varint, Reader};
use super::props_codec::{self, PropContext};
use super::reason_sets;
use super::{
    Ack, Auth, ConnAck, Connect, DecodeError, Disconnect, Packet, Properties, ProtocolVersion,
    Publish, QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};

pub(super) fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let (kind, flags) = check_first_byte(first, version)?;
    let Some((remaining, len_bytes)) = peek_varint(buf.get(1..).unwrap_or_default())? else {
        return Ok(None);
    };
    let header_len = 1 + len_bytes;
    let total = header_len + remaining as usize;
    if total > max_packet_size as usize {
        return Err(DecodeError::PacketTooLarge {
            size: total,
            max: max_packet_size,
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    if let (Some(_), 2) = (version, remaining) {
        // The commonest packets after PUBLISH: a packet identifier alone (every 3.1.1 ack, a
        // successful 5.0 ack without properties, 3.4.2.1). Parsed in place, without splitting
        // the frame off as shared `Bytes` (a reference count per ack).
        let make: Option<fn(Ack) -> Packet> = match kind {
            header::PUBACK => Some(Packet::PubAck),
            header::PUBREC => Some(Packet::PubRec),
            header::PUBREL => Some(Packet::PubRel),
            header::PUBCOMP => Some(Packet::PubComp),
            _ => None,
        };
        let id_bytes = buf
            .get(header_len..total)
            .and_then(|b| b.first_chunk::<2>());
        if let (Some(make), Some(&id_bytes)) = (make, id_bytes) {
            let id = u16::from_be_bytes(id_bytes);
            buf.advance(total);
            // [MQTT-2.2.1-3]
            if id == 0 {
                return Err(DecodeError::Protocol("packet identifier 0"));
            }
            return Ok(Some(make(Ack::new(id))));
        }
    }
    let mut frame = buf.split_to(total).freeze();
    frame.advance(header_len);
    let mut r = Reader::new(frame);
    let packet = match version {
        None => Packet::Connect(Box::new(connect(flags, &mut r)?)),
        Some(v) => body(kind, flags, v, &mut r)?,
    };
    r.finish()?;
    Ok(Some(packet))
}

fn body(kind: u8, flags: u8, v: ProtocolVersion, r: &mut Reader) -> Result<Packet, DecodeError> {
    Ok(match kind {
        header::CONNACK => Packet::ConnAck(connack(v, r)?),
        header::PUBLISH => Packet::Publish(publish(flags, v, r)?),
        header::PUBACK => Packet::PubAck(ack(v, r, reason_sets::puback_pubrec)?),
        header::PUBREC => Packet::PubRec(ack(v, r, reason_sets::puback_pubrec)?),
        header::PUBREL => Packet::PubRel(ack(v, r, reason_sets::pubrel_pubcomp)?),
        header::PUBCOMP => Packet::PubComp(ack(v, r, reason_sets::pubrel_pubcomp)?),
        header::SUBSCRIBE => Packet::Subscribe(subscribe(v, r)?),
        header::SUBACK => Packet::SubAck(suback(v, r)?),
        header::UNSUBSCRIBE => Packet::Unsubscribe(unsubscribe(v, r)?),
        header::UNSUBACK => Packet::UnsubAck(unsuback(v, r)?),
        // 3.12, 3.13: no variable header or payload; `finish` rejects a body.
        header::PINGREQ => Packet::PingReq,
        header::PINGRESP => Packet::PingResp,
        header::DISCONNECT => Packet::Disconnect(disconnect(v, r)?),
        header::AUTH => Packet::Auth(auth(r)?),
        // CONNECT and type 0 were refused with the first byte.
        _ => return Err(DecodeError::Protocol("unexpected packet type")),
    })
}

/// A Packet Identifier, which must be non-zero wherever it appears.
fn packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        // [MQTT-2.2.1-3]
        0 => Err(DecodeError::Protocol("packet identifier 0")),
        id => Ok(id),
    }
}

fn properties_for(
    v: ProtocolVersion,
    r: &mut Reader,
    ctx: PropContext,
) -> Result<Properties, DecodeError> {
    if v.is_v5() {
        props_codec::decode(r, ctx)
    } else {
        Ok(Properties::default())
    }
}

/// A topic name as used by PUBLISH and the will: no wildcards.
fn topic_name(r: &mut Reader) -> Result<ByteString, DecodeError> {
    let topic = r.string()?;
    // [MQTT-3.3.2-2]; the will topic (3.1.3.3) is a topic name too.
    let wildcard = topic
        .as_bytes()
        .iter()
        .fold(false, |acc, &b| acc | (b == b'+') | (b == b'#'));
    if wildcard {
        return Err(DecodeError::TopicNameInvalid);
    }
    check_topic_chars(&topic)?;
    Ok(topic)
}

/// A topic filter in SUBSCRIBE / UNSUBSCRIBE: at least one character [MQTT-4.7.3-1] and no
/// control characters. Wildcard placement is the broker's check (it answers 0x8F).
fn topic_filter(r: &mut Reader) -> Result<ByteString, DecodeError> {
    let filter = r.string()?;
    if filter.is_empty() {
        return Err(DecodeError::Malformed("empty topic filter"));
    }
    check_topic_chars(&filter)?;
    Ok(filter)
}

/// A client identifier or user name: no control characters either, for the same reasons as
/// topics (they end up in logs, ACL files and listings).
fn identifier(r: &mut Reader) -> Result<ByteString, DecodeError> {
    let s = r.string()?;
    check_topic_chars(&s)?;
    Ok(s)
}

/// Control characters U+0001..U+001F and U+007F..U+009F in a topic, client id or user name:
/// 1.5.4 says a receiver MAY treat them as malformed. There they are never intended and break
/// logs, ACL files and shells, so mqttd does (as mosquitto does). Free-form strings (user
/// properties, content type, reason strings) may carry them.
fn check_topic_chars(topic: &str) -> Result<(), DecodeError> {
    // On the UTF-8 bytes (decoding chars cost ~20 instructions a byte on every PUBLISH):
    // U+0001..U+001F and U+007F are single bytes; U+0080..U+009F are exactly C2 80..C2 9F.
    let bytes = topic.as_bytes();
    // A branch-free pass first (it vectorizes): almost every string has no byte that could
    // start a control character, and only those that do get the exact check.
    let suspect = bytes.iter().fold(false, |acc, &b| {
        acc | (b < 0x20) | (b == 0x7F) | (b == 0xC2)
    });
    if suspect && has_control_char(bytes) {
        return Err(DecodeError::Malformed(
            "control character in a topic, client id or user name",
        ));
    }
    Ok(())
}

fn has_control_char(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| {
        matches!(b, 0x01..=0x1F | 0x7F)
            || (b == 0xC2 && matches!(bytes.get(i + 1), Some(0x80..=0x9F)))
    })
}

/// CONNECT; `header_flags` are the fixed header's, checked once the version is known.
fn connect(header_flags: u8, r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => ProtocolVersion::V3_1_1,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQIsdp", 3) => ProtocolVersion::V3_1,
        // [MQTT-3.1.2-2] unsupported level: CONNACK 0x84 / return code 1, then close.
        (b"MQTT" | b"MQIsdp", level) => return Err(DecodeError::UnsupportedProtocolVersion(level)),
        // [MQTT-3.1.2-1] not an MQTT connection at all.
        _ => return Err(DecodeError::Malformed("unknown protocol name")),
    };
    let v5 = protocol.is_v5();
    // [MQTT-2.1.3-1] (3.1.1: [MQTT-2.2.2-2]). MQTT 3.1 calls these bits unused, but every
    // broker in the field (and the 3.1.1 rules that superseded it) rejects them set.
    if header_flags != 0 {
        return Err(DecodeError::Malformed(header::RESERVED_FLAGS));
    }

    let flags = r.u8()?;
    // [MQTT-3.1.2-3] the reserved flag must be 0. MQTT 3.1 (MQIsdp) has no such rule and its
    // clients are known to set the bit, so it is ignored there.
    if flags & 0x01 != 0 && protocol != ProtocolVersion::V3_1 {
        return Err(DecodeError::Malformed("CONNECT reserved flag set"));
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    // 3.1.1 [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15]; 5.0 [MQTT-3.1.2-11],
    // [MQTT-3.1.2-13]: without a will, will QoS and will retain must be 0.
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(DecodeError::Malformed(
            "will QoS or retain set without a will",
        ));
    }
    // 3.1.1 [MQTT-3.1.2-14]; 5.0 [MQTT-3.1.2-12]: will QoS 3 is malformed.
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::Malformed("will QoS 3"))?;
    // 3.1.1 [MQTT-3.1.2-22]: a password needs a user name (5.0 allows a password alone).
    if !v5 && password_flag && !username_flag {
        return Err(DecodeError::Malformed(
            "password flag set without user name flag",
        ));
    }

    let keep_alive = r.u16()?;
    let properties = properties_for(protocol, r, PropContext::Connect)?;
    // 3.1.2.11.10: Authentication Data without an Authentication Method is a protocol error.
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::Protocol(
            "authentication data without a method",
        ));
    }
    // [MQTT-3.1.3-3] the client identifier is present, possibly empty; the broker judges it.
    let client_id = identifier(r)?;
    let will = if will_flag {
        // [MQTT-3.1.2-9] will properties (5.0), topic and payload are present.
        let properties = properties_for(protocol, r, PropContext::Will)?;
        let topic = topic_name(r)?;
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    // 3.1.2.8, 3.1.2.9: user name and password are present iff their flags are set.
    let username = if username_flag {
        Some(identifier(r)?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.binary()?)
    } else {
        None
    };

    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        properties,
        client_id,
        will,
        username,
        password,
    })
}

fn connack(v: ProtocolVersion, r: &mut Reader) -> Result<ConnAck, DecodeError> {
    let ack_flags = r.u8()?;
    // 3.1.1 [MQTT-3.2.2-1]; 5.0 3.2.2.1: bits 7-1 are reserved and must be 0.
    if ack_flags & 0xFE != 0 {
        return Err(DecodeError::Malformed("CONNACK reserved flags set"));
    }
    let code = r.u8()?;
    let code = if v.is_v5() {
        reason_sets::check(code, reason_sets::connack)?
    } else {
        reason_sets::from_v3_connack(code)?
    };
    let properties = properties_for(v, r, PropContext::ConnAck)?;
    Ok(ConnAck {
        session_present: ack_flags & 0x01 != 0,
        code,
        properties,
    })
}

fn publish(flags: u8, v: ProtocolVersion, r: &mut Reader) -> Result<Publish, DecodeError> {
    // QoS 3 and DUP with QoS 0 were refused with the first byte.
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::Malformed("QoS 3"))?;
    // [MQTT-3.3.2-2] a wildcard makes the topic name malformed (0x90 is for names that are well
    // formed but not accepted).
    let topic = topic_name(r).map_err(|e| match e {
        DecodeError::TopicNameInvalid => DecodeError::Malformed("wildcard in topic name"),
        e => e,
    })?;
    // [MQTT-2.2.1-2] a packet identifier only for QoS 1 and 2.
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(packet_id(r)?)
    };
    let properties = properties_for(v, r, PropContext::Publish)?;
    if topic.is_empty() {
        if !v.is_v5() {
            // 3.1.1 [MQTT-4.7.3-1] topic names are at least one character long.
            return Err(DecodeError::Malformed("empty topic name"));
        }
        // 5.0 3.3.2.1: an empty topic name is a protocol error without a topic alias.
        if properties.topic_alias.is_none() {
            return Err(DecodeError::Protocol("empty topic name"));
        }
    }
    Ok(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 0b0001 != 0,
        topic,
        packet_id,
        properties,
        payload: r.rest(),
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP (3.4 to 3.7).
fn ack(v: ProtocolVersion, r: &mut Reader, allowed: fn(u8) -> bool) -> Result<Ack, DecodeError> {
    let packet_id = packet_id(r)?;
    if !v.is_v5() {
        return Ok(Ack::new(packet_id));
    }
    // 3.4.2.1: remaining length 2 means Success with no properties; 3.4.2.2.1: below 4 there is
    // no property length.
    let code = match r.remaining() {
        0 => ReasonCode::SUCCESS,
        _ => reason_sets::check(r.u8()?, allowed)?,
    };
    let properties = match r.remaining() {
        0 => Properties::default(),
        _ => props_codec::decode(r, PropContext::Ack)?,
    };
    Ok(Ack {
        packet_id,
        code,
        properties,
    })
}

fn subscription_options(byte: u8, v: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    let qos = byte & 0b11;
    if v.is_v5() {
        // [MQTT-3.8.3-5] bits 6 and 7 are reserved.
        if byte & 0b1100_0000 != 0 {
            return Err(DecodeError::Malformed(
                "subscription options reserved bits set",
            ));
        }
        // 3.8.3.1: Maximum QoS 3 is a protocol error.
        let qos = QoS::from_u8(qos).ok_or(DecodeError::Protocol("subscription QoS 3"))?;
        let retain_handling = (byte >> 4) & 0b11;
        // 3.8.3.1: Retain Handling 3 is a protocol error.
        if retain_handling == 3 {
            return Err(DecodeError::Protocol("retain handling 3"));
        }
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & 0b0100 != 0,
            retain_as_published: byte & 0b1000 != 0,
            retain_handling,
        })
    } else {
        // 3.1.1 [MQTT-3-8.3-4]: upper 6 bits reserved, QoS must be 0, 1 or 2.
        if byte & 0b1111_1100 != 0 {
            return Err(DecodeError::Malformed(
                "subscription options reserved bits set",
            ));
        }
        let qos = QoS::from_u8(qos).ok_or(DecodeError::Malformed("subscription QoS 3"))?;
        Ok(SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        })
    }
}

fn subscribe(v: ProtocolVersion, r: &mut Reader) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties_for(v, r, PropContext::Subscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = topic_filter(r)?;
        let options = subscription_options(r.u8()?, v)?;
        // [MQTT-3.8.3-4] (5.0): No Local on a shared subscription is a protocol error.
        if options.no_local && filter.starts_with("$share/") {
            return Err(DecodeError::Protocol("no local on a shared subscription"));
        }
        filters.push((filter, options));
    }
    // [MQTT-3.8.3-3] at least one topic filter.
    if filters.is_empty() {
        return Err(DecodeError::Protocol("SUBSCRIBE without topic filters"));
    }
    Ok(Subscribe {
        packet_id,
        properties,
        filters,
    })
}

fn suback(v: ProtocolVersion, r: &mut Reader) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties_for(v, r, PropContext::SubAck)?;
    let mut codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        let code = r.u8()?;
        codes.push(if v.is_v5() {
            reason_sets::check(code, reason_sets::suback)?
        } else {
            reason_sets::from_v3_suback(code)?
        });
    }
    Ok(SubAck {
        packet_id,
        properties,
        codes,
    })
}

fn unsubscribe(v: ProtocolVersion, r: &mut Reader) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties_for(v, r, PropContext::Unsubscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(topic_filter(r)?);
    }
    // [MQTT-3.10.3-2] at least one topic filter.
    if filters.is_empty() {
        return Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters"));
    }
    Ok(Unsubscribe {
        packet_id,
        properties,
        filters,
    })
}

fn unsuback(v: ProtocolVersion, r: &mut Reader) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    if !v.is_v5() {
        // 3.1.1 3.11.3: no payload; `finish` rejects anything after the packet identifier.
        return Ok(UnsubAck {
            packet_id,
            properties: Properties::default(),
            codes: Vec::new(),
        });
    }
    let properties = props_codec::decode(r, PropContext::UnsubAck)?;
    let mut codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        codes.push(reason_sets::check(r.u8()?, reason_sets::unsuback)?);
    }
    Ok(UnsubAck {
        packet_id,
        properties,
        codes,
    })
}

/// The reason code and properties of DISCONNECT and AUTH (5.0): remaining length 0 means
/// code 0 without properties, 1 means a code without properties.
fn code_and_properties(
    r: &mut Reader,
    allowed: fn(u8) -> bool,
    ctx: PropContext,
) -> Result<(ReasonCode, Properties), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::SUCCESS, Properties::default()));
    }
    let code = reason_sets::check(r.u8()?, allowed)?;
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        props_codec::decode(r, ctx)?
    };
    Ok((code, properties))
}

fn disconnect(v: ProtocolVersion, r: &mut Reader) -> Result<Disconnect, DecodeError> {
    if !v.is_v5() {
        // 3.1.1 3.14: no variable header; `finish` rejects a body.
        return Ok(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION));
    }
    // 3.14.2.1: remaining length 0 means Normal Disconnection.
    let (code, properties) =
        code_and_properties(r, reason_sets::disconnect, PropContext::Disconnect)?;
    Ok(Disconnect { code, properties })
}

/// AUTH exists only in 5.0 (the first byte check refuses it earlier).
fn auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    // 3.15.2.1: remaining length 0 means Success with no properties.
    let (code, properties) = code_and_properties(r, reason_sets::auth, PropContext::Auth)?;
    Ok(Auth { code, properties })
}
