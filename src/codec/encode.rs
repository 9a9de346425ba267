//! [`Packet`] to bytes, and the exact encoded size without encoding.
//!
//! Sizing and writing are two passes over the same layout: [`body_len`] gives the remaining
//! length the fixed header needs before the body is written, and [`encoded_len`] reuses it so
//! the broker can check a client's Maximum Packet Size without encoding. For MQTT 5.0 the short
//! forms the spec allows are used (an ack with Success and no properties is just its packet
//! identifier; DISCONNECT and AUTH with code 0 and no properties have no body).

use bytes::{BufMut, BytesMut};

use super::header::first_byte;
use super::primitives::{prefixed_len, put_prefixed, put_varint, varint_len, MAX_VARINT};
use super::props_codec;
use super::{
    Ack, ConnAck, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubAck,
    Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};

pub(super) fn encoded_len(packet: &Packet, v: ProtocolVersion) -> usize {
    let body = body_len(packet, v);
    1 + varint_len(body) + body
}

pub(super) fn encode(packet: &Packet, v: ProtocolVersion, out: &mut BytesMut) {
    let body = body_len(packet, v);
    debug_assert!(
        body <= MAX_VARINT,
        "packet too large to encode: {body} bytes"
    );
    out.reserve(1 + varint_len(body) + body);
    out.put_u8(first_byte(packet));
    put_varint(out, body);
    #[cfg(debug_assertions)]
    let start = out.len();
    match packet {
        Packet::Connect(c) => put_connect(c, v, out),
        Packet::ConnAck(c) => put_connack(c, v, out),
        Packet::Publish(p) => put_publish(p, v, out),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            put_ack(a, v, out)
        }
        Packet::Subscribe(s) => put_subscribe(s, v, out),
        Packet::SubAck(s) => put_suback(s, v, out),
        Packet::Unsubscribe(u) => put_unsubscribe(u, v, out),
        Packet::UnsubAck(u) => put_unsuback(u, v, out),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => put_code_and_properties(d.code, &d.properties, v, CODE_ALONE, out),
        Packet::Auth(a) => put_code_and_properties(a.code, &a.properties, v, AUTH_CODE_ALONE, out),
    }
    #[cfg(debug_assertions)]
    debug_assert_eq!(
        out.len() - start,
        body,
        "body_len disagrees with the encoder"
    );
}

/// The remaining length of `packet`'s fixed header.
fn body_len(packet: &Packet, v: ProtocolVersion) -> usize {
    match packet {
        Packet::Connect(c) => connect_len(c, v),
        Packet::ConnAck(c) => 2 + props_len(&c.properties, v),
        Packet::Publish(p) => publish_len(p, v),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            2 + code_and_properties_len(a.code, &a.properties, v, CODE_ALONE)
        }
        Packet::Subscribe(s) => {
            2 + props_len(&s.properties, v)
                + s.filters
                    .iter()
                    .map(|(f, _)| prefixed_len(f.as_bytes()) + 1)
                    .sum::<usize>()
        }
        Packet::SubAck(s) => 2 + props_len(&s.properties, v) + s.codes.len(),
        Packet::Unsubscribe(u) => {
            2 + props_len(&u.properties, v)
                + u.filters
                    .iter()
                    .map(|f| prefixed_len(f.as_bytes()))
                    .sum::<usize>()
        }
        Packet::UnsubAck(u) if v.is_v5() => 2 + props_len(&u.properties, v) + u.codes.len(),
        // 3.1.1 3.11: packet identifier only.
        Packet::UnsubAck(_) => 2,
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => code_and_properties_len(d.code, &d.properties, v, CODE_ALONE),
        Packet::Auth(a) => code_and_properties_len(a.code, &a.properties, v, AUTH_CODE_ALONE),
    }
}

/// A property block, present only in 5.0.
fn props_len(p: &Properties, v: ProtocolVersion) -> usize {
    if v.is_v5() {
        props_codec::block_len(p)
    } else {
        0
    }
}

fn put_props(p: &Properties, v: ProtocolVersion, out: &mut BytesMut) {
    if v.is_v5() {
        props_codec::encode(p, out);
    }
}

fn protocol_name(v: ProtocolVersion) -> &'static [u8] {
    match v {
        ProtocolVersion::V3_1 => b"MQIsdp",
        ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => b"MQTT",
    }
}

fn connect_len(c: &Connect, v: ProtocolVersion) -> usize {
    // Protocol name, level, flags, keep alive.
    prefixed_len(protocol_name(v))
        + 4
        + props_len(&c.properties, v)
        + prefixed_len(c.client_id.as_bytes())
        + c.will.as_ref().map_or(0, |w| {
            props_len(&w.properties, v)
                + prefixed_len(w.topic.as_bytes())
                + prefixed_len(&w.payload)
        })
        + c.username
            .as_ref()
            .map_or(0, |u| prefixed_len(u.as_bytes()))
        + c.password.as_ref().map_or(0, |p| prefixed_len(p))
}

fn put_connect(c: &Connect, v: ProtocolVersion, out: &mut BytesMut) {
    put_prefixed(out, protocol_name(v));
    out.put_u8(v.level());
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | ((w.qos as u8) << 3) | (u8::from(w.retain) << 5);
    }
    flags |= u8::from(c.password.is_some()) << 6;
    flags |= u8::from(c.username.is_some()) << 7;
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    put_props(&c.properties, v, out);
    put_prefixed(out, c.client_id.as_bytes());
    if let Some(w) = &c.will {
        put_props(&w.properties, v, out);
        put_prefixed(out, w.topic.as_bytes());
        put_prefixed(out, &w.payload);
    }
    if let Some(u) = &c.username {
        put_prefixed(out, u.as_bytes());
    }
    if let Some(p) = &c.password {
        put_prefixed(out, p);
    }
}

fn put_connack(c: &ConnAck, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u8(u8::from(c.session_present));
    out.put_u8(if v.is_v5() {
        c.code.0
    } else {
        c.code.to_v3_connack()
    });
    put_props(&c.properties, v, out);
}

fn publish_len(p: &Publish, v: ProtocolVersion) -> usize {
    publish_ref_len(&PublishRef::of(p), v)
}

fn put_publish(p: &Publish, v: ProtocolVersion, out: &mut BytesMut) {
    put_publish_ref(&PublishRef::of(p), v, out)
}

fn publish_ref_len(p: &PublishRef<'_>, v: ProtocolVersion) -> usize {
    let packet_id = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
    let props = if v.is_v5() {
        props_codec::block_len_with_alias(p.properties, p.topic_alias)
    } else {
        0
    };
    prefixed_len(p.topic) + packet_id + props + p.payload.len()
}

fn put_publish_ref(p: &PublishRef<'_>, v: ProtocolVersion, out: &mut BytesMut) {
    put_prefixed(out, p.topic);
    if p.qos != QoS::AtMostOnce {
        debug_assert!(
            p.packet_id.is_some(),
            "PUBLISH with QoS > 0 needs a packet identifier"
        );
        out.put_u16(p.packet_id.unwrap_or(0));
    }
    if v.is_v5() {
        props_codec::encode_with_alias(p.properties, p.topic_alias, out);
    }
    out.put_slice(p.payload);
}

/// A PUBLISH to encode from borrowed parts: the broker writes each delivery straight from the
/// shared message, without building a [`Publish`] (two reference counts and a packet per
/// subscriber). Encodes exactly as the equivalent [`Packet::Publish`].
#[derive(Debug, Clone, Copy)]
pub struct PublishRef<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty when a topic alias stands for it.
    pub topic: &'a [u8],
    pub packet_id: Option<u16>,
    pub properties: &'a Properties,
    /// The Topic Alias of this copy (5.0), written as if `properties` held it: the
    /// properties stay shared by every subscriber's copy, never cloned to add it.
    pub topic_alias: Option<u16>,
    pub payload: &'a [u8],
}

impl<'a> PublishRef<'a> {
    pub fn of(p: &'a Publish) -> PublishRef<'a> {
        PublishRef {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            topic: p.topic.as_bytes(),
            packet_id: p.packet_id,
            properties: &p.properties,
            topic_alias: None,
            payload: &p.payload,
        }
    }

    /// The encoded size for `v`, fixed header included.
    pub fn encoded_len(&self, v: ProtocolVersion) -> usize {
        let body = publish_ref_len(self, v);
        1 + varint_len(body) + body
    }

    /// Appends the encoding for `v` to `out`.
    pub fn encode(&self, v: ProtocolVersion, out: &mut BytesMut) {
        self.encode_body(v, publish_ref_len(self, v), out);
    }

    /// [`PublishRef::encode`] when the caller already measured it: `len` is what
    /// [`PublishRef::encoded_len`] returned for `v` (the broker measures every delivery
    /// against the client's Maximum Packet Size before it encodes it).
    pub fn encode_measured(&self, v: ProtocolVersion, len: usize, out: &mut BytesMut) {
        // The body length whose variable byte integer fills the rest of `len`.
        let body = (1..=4)
            .map(|n| len.saturating_sub(1 + n))
            .find(|&body| 1 + varint_len(body) + body == len)
            .unwrap_or_else(|| publish_ref_len(self, v));
        debug_assert_eq!(
            body,
            publish_ref_len(self, v),
            "encoded_len was for another packet"
        );
        self.encode_body(v, body, out);
    }

    fn encode_body(&self, v: ProtocolVersion, body: usize, out: &mut BytesMut) {
        debug_assert!(
            body <= MAX_VARINT,
            "packet too large to encode: {body} bytes"
        );
        out.reserve(1 + varint_len(body) + body);
        let flags = (u8::from(self.dup && self.qos as u8 > 0) << 3)
            | ((self.qos as u8) << 1)
            | u8::from(self.retain);
        out.put_u8((super::header::PUBLISH << 4) | flags);
        put_varint(out, body);
        put_publish_ref(self, v, out);
    }
}

/// How a reason code and its properties are written in acks, DISCONNECT and AUTH (5.0).
enum Tail {
    /// Nothing: Success and no properties.
    Empty,
    /// The reason code alone.
    Code,
    /// Reason code and property block.
    Full,
}

fn tail(code: ReasonCode, p: &Properties, v: ProtocolVersion, code_alone: bool) -> Tail {
    // 3.x acks and DISCONNECT carry no reason code; AUTH does not exist there, so one encoded
    // for 3.x comes out as `F0 00`.
    if !v.is_v5() {
        Tail::Empty
    } else if !p.is_empty() {
        Tail::Full
    } else if code == ReasonCode::SUCCESS {
        Tail::Empty
    } else if code_alone {
        Tail::Code
    } else {
        Tail::Full
    }
}

/// Acks (3.4.2.2.1) and DISCONNECT (3.14.2.2.1) may end after the reason code; AUTH (3.15.2.2)
/// has no such rule, so an AUTH with a non-zero code and no properties carries an empty property
/// block.
const CODE_ALONE: bool = true;
const AUTH_CODE_ALONE: bool = false;

fn code_and_properties_len(
    code: ReasonCode,
    p: &Properties,
    v: ProtocolVersion,
    code_alone: bool,
) -> usize {
    match tail(code, p, v, code_alone) {
        Tail::Empty => 0,
        Tail::Code => 1,
        Tail::Full => 1 + props_codec::block_len(p),
    }
}

fn put_code_and_properties(
    code: ReasonCode,
    p: &Properties,
    v: ProtocolVersion,
    code_alone: bool,
    out: &mut BytesMut,
) {
    match tail(code, p, v, code_alone) {
        Tail::Empty => {}
        Tail::Code => out.put_u8(code.0),
        Tail::Full => {
            out.put_u8(code.0);
            props_codec::encode(p, out);
        }
    }
}

fn put_ack(a: &Ack, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u16(a.packet_id);
    put_code_and_properties(a.code, &a.properties, v, CODE_ALONE, out);
}

fn options_byte(o: SubscriptionOptions, v: ProtocolVersion) -> u8 {
    let qos = o.qos as u8;
    if v.is_v5() {
        qos | (u8::from(o.no_local) << 2)
            | (u8::from(o.retain_as_published) << 3)
            | ((o.retain_handling & 0b11) << 4)
    } else {
        qos
    }
}

fn put_subscribe(s: &Subscribe, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u16(s.packet_id);
    put_props(&s.properties, v, out);
    for (filter, options) in &s.filters {
        put_prefixed(out, filter.as_bytes());
        out.put_u8(options_byte(*options, v));
    }
}

fn put_suback(s: &SubAck, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u16(s.packet_id);
    put_props(&s.properties, v, out);
    for code in &s.codes {
        out.put_u8(if v.is_v5() {
            code.0
        } else {
            code.to_v3_suback()
        });
    }
}

fn put_unsubscribe(u: &Unsubscribe, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u16(u.packet_id);
    put_props(&u.properties, v, out);
    for filter in &u.filters {
        put_prefixed(out, filter.as_bytes());
    }
}

fn put_unsuback(u: &UnsubAck, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u16(u.packet_id);
    if v.is_v5() {
        props_codec::encode(&u.properties, out);
        for code in &u.codes {
            out.put_u8(code.0);
        }
    }
}
