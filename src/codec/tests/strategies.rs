//! Proptest generators of valid packets for each protocol version.
//!
//! "Valid" means what the decoder accepts and can reproduce exactly: each property block holds
//! only the properties its packet type allows (listed here independently of the codec's own
//! tables), reason codes come from their packet's table, and 3.x packets carry no 5.0 fields.

use bytes::Bytes;
use bytestring::ByteString;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use super::super::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};

/// Any UTF-8 string without U+0000.
fn string() -> impl Strategy<Value = ByteString> {
    "[^\u{0}]{0,8}".prop_map(ByteString::from)
}

/// Client ids and user names: no control characters (the decoder rejects them).
fn identifier() -> impl Strategy<Value = ByteString> {
    "[^\u{0}-\u{1F}\u{7F}-\u{9F}]{0,8}".prop_map(ByteString::from)
}

fn topic_name() -> impl Strategy<Value = ByteString> {
    "[^\u{0}-\u{1F}\u{7F}-\u{9F}+#]{1,8}".prop_map(ByteString::from)
}

fn topic_filter() -> impl Strategy<Value = ByteString> {
    "[a-z0-9/+#]{1,8}".prop_map(ByteString::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    option::of(0u8..=1)
}

fn code(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    select(codes).prop_map(ReasonCode)
}

/// Every property with a valid value, each present about half the time.
fn any_properties() -> impl Strategy<Value = Properties> {
    let first = (
        flag(),
        option::of(any::<u32>()),
        option::of(string()),
        // Response Topic is a topic name: no wildcards.
        option::of(topic_name()),
        option::of(binary()),
        vec(1u32..=268_435_455, 0..3),
        option::of(any::<u32>()),
        option::of(string()),
        option::of(any::<u16>()),
        option::of(string()),
        option::of(binary()),
        flag(),
    );
    let second = (
        option::of(any::<u32>()),
        flag(),
        option::of(string()),
        option::of(string()),
        option::of(string()),
        option::of(1u16..),
        option::of(any::<u16>()),
        option::of(1u16..),
        flag(),
        flag(),
        vec((string(), string()), 0..3),
        option::of(1u32..),
    );
    let third = (flag(), flag(), flag());
    (first, second, third).prop_map(|(a, b, c)| {
        Properties::from(crate::codec::PropertyValues {
            payload_format_indicator: a.0,
            message_expiry_interval: a.1,
            content_type: a.2,
            response_topic: a.3,
            correlation_data: a.4,
            subscription_identifiers: a.5,
            session_expiry_interval: a.6,
            assigned_client_identifier: a.7,
            server_keep_alive: a.8,
            authentication_method: a.9,
            authentication_data: a.10,
            request_problem_information: a.11,
            will_delay_interval: b.0,
            request_response_information: b.1,
            response_information: b.2,
            server_reference: b.3,
            reason_string: b.4,
            receive_maximum: b.5,
            topic_alias_maximum: b.6,
            topic_alias: b.7,
            maximum_qos: b.8,
            retain_available: b.9,
            user_properties: b.10,
            maximum_packet_size: b.11,
            wildcard_subscription_available: c.0,
            subscription_identifier_available: c.1,
            shared_subscription_available: c.2,
        })
    })
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Connect,
    Will,
    ConnAck,
    Publish,
    Ack,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Auth,
}

/// Keeps the properties MQTT 5.0 allows for `kind` (2.2.2.2, table 2-4).
fn restrict(p: Properties, kind: Kind) -> Properties {
    let mut out = Properties::from(crate::codec::PropertyValues {
        user_properties: p.user_properties.clone(),
        ..crate::codec::PropertyValues::default()
    });
    match kind {
        Kind::Connect => {
            out.session_expiry_interval = p.session_expiry_interval;
            out.receive_maximum = p.receive_maximum;
            out.maximum_packet_size = p.maximum_packet_size;
            out.topic_alias_maximum = p.topic_alias_maximum;
            out.request_response_information = p.request_response_information;
            out.request_problem_information = p.request_problem_information;
            out.authentication_method = p.authentication_method.clone();
            // Authentication data needs a method (3.1.2.11.10).
            out.authentication_data = p
                .authentication_data
                .clone()
                .filter(|_| out.authentication_method.is_some());
        }
        Kind::Will => {
            out.will_delay_interval = p.will_delay_interval;
            out.payload_format_indicator = p.payload_format_indicator;
            out.message_expiry_interval = p.message_expiry_interval;
            out.content_type = p.content_type.clone();
            out.response_topic = p.response_topic.clone();
            out.correlation_data = p.correlation_data.clone();
        }
        Kind::ConnAck => {
            out.session_expiry_interval = p.session_expiry_interval;
            out.receive_maximum = p.receive_maximum;
            out.maximum_qos = p.maximum_qos;
            out.retain_available = p.retain_available;
            out.maximum_packet_size = p.maximum_packet_size;
            out.assigned_client_identifier = p.assigned_client_identifier.clone();
            out.topic_alias_maximum = p.topic_alias_maximum;
            out.reason_string = p.reason_string.clone();
            out.wildcard_subscription_available = p.wildcard_subscription_available;
            out.subscription_identifier_available = p.subscription_identifier_available;
            out.shared_subscription_available = p.shared_subscription_available;
            out.server_keep_alive = p.server_keep_alive;
            out.response_information = p.response_information.clone();
            out.server_reference = p.server_reference.clone();
            out.authentication_method = p.authentication_method.clone();
            out.authentication_data = p.authentication_data.clone();
        }
        Kind::Publish => {
            out.payload_format_indicator = p.payload_format_indicator;
            out.message_expiry_interval = p.message_expiry_interval;
            out.topic_alias = p.topic_alias;
            out.response_topic = p.response_topic.clone();
            out.correlation_data = p.correlation_data.clone();
            out.subscription_identifiers = p.subscription_identifiers.clone();
            out.content_type = p.content_type.clone();
        }
        Kind::Ack => out.reason_string = p.reason_string.clone(),
        Kind::Subscribe => {
            out.subscription_identifiers = p
                .subscription_identifiers
                .clone()
                .into_iter()
                .take(1)
                .collect();
        }
        Kind::Unsubscribe => {}
        Kind::Disconnect => {
            out.session_expiry_interval = p.session_expiry_interval;
            out.reason_string = p.reason_string.clone();
            out.server_reference = p.server_reference.clone();
        }
        Kind::Auth => {
            out.authentication_method = p.authentication_method.clone();
            out.authentication_data = p.authentication_data.clone();
            out.reason_string = p.reason_string.clone();
        }
    }
    out
}

/// Properties for `kind`, or none before 5.0.
fn props(v: ProtocolVersion, kind: Kind) -> BoxedStrategy<Properties> {
    if v.is_v5() {
        any_properties()
            .prop_map(move |p| restrict(p, kind))
            .boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

fn will(v: ProtocolVersion) -> impl Strategy<Value = Will> {
    (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        props(v, Kind::Will),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        any::<u16>(),
        props(v, Kind::Connect),
        identifier(),
        option::of(will(v)),
        option::of(identifier()),
        option::of(binary()),
    )
        .prop_map(
            move |(clean_start, keep_alive, properties, client_id, will, username, password)| {
                // 3.1.1 [MQTT-3.1.2-22]: no password without a user name.
                let password = password.filter(|_| v.is_v5() || username.is_some());
                Packet::Connect(Box::new(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                }))
            },
        )
}

const CONNACK_V5: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
/// The 5.0 codes that are the exact images of the 3.1.1 return codes 0 to 5.
const CONNACK_V3: &[u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
const PUBACK_PUBREC: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_PUBCOMP: &[u8] = &[0x00, 0x92];
const SUBACK_V5: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const SUBACK_V3: &[u8] = &[0x00, 0x01, 0x02, 0x80];
const UNSUBACK: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH: &[u8] = &[0x00, 0x18, 0x19];

fn connack(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if v.is_v5() { CONNACK_V5 } else { CONNACK_V3 };
    (any::<bool>(), code(codes), props(v, Kind::ConnAck)).prop_map(
        |(session_present, code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present,
                code,
                properties,
            })
        },
    )
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let topic = if v.is_v5() {
        "[^\u{0}-\u{1F}\u{7F}-\u{9F}+#]{0,8}"
            .prop_map(ByteString::from)
            .boxed()
    } else {
        topic_name().boxed()
    };
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic,
        1u16..,
        props(v, Kind::Publish),
        binary(),
    )
        .prop_map(|(dup, qos, retain, topic, id, mut properties, payload)| {
            // 5.0 3.3.2.1: an empty topic name needs a topic alias.
            if topic.is_empty() && properties.topic_alias.is_none() {
                properties.topic_alias = Some(1);
            }
            let with_qos = qos != QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && with_qos,
                qos,
                retain,
                topic,
                packet_id: with_qos.then_some(id),
                properties,
                payload,
            })
        })
}

fn ack(v: ProtocolVersion, codes: &'static [u8]) -> impl Strategy<Value = Ack> {
    let codes = if v.is_v5() { codes } else { &[0x00] };
    (1u16.., code(codes), props(v, Kind::Ack)).prop_map(|(packet_id, code, properties)| Ack {
        packet_id,
        code,
        properties,
    })
}

fn subscription_options(v: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    (qos(), any::<bool>(), any::<bool>(), 0u8..=2).prop_map(
        move |(qos, no_local, retain_as_published, retain_handling)| {
            if v.is_v5() {
                SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                }
            } else {
                SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                }
            }
        },
    )
}

fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        1u16..,
        props(v, Kind::Subscribe),
        vec((topic_filter(), subscription_options(v)), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

fn suback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if v.is_v5() { SUBACK_V5 } else { SUBACK_V3 };
    (1u16.., props(v, Kind::Ack), vec(code(codes), 0..4)).prop_map(
        |(packet_id, properties, codes)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                codes,
            })
        },
    )
}

fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        1u16..,
        props(v, Kind::Unsubscribe),
        vec(topic_filter(), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    // 3.1.1 UNSUBACK carries no reason codes (0..1 generates none).
    let max_codes = if v.is_v5() { 4 } else { 1 };
    (
        1u16..,
        props(v, Kind::Ack),
        vec(code(UNSUBACK), 0..max_codes),
    )
        .prop_map(|(packet_id, properties, codes)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                codes,
            })
        })
}

fn disconnect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if v.is_v5() { DISCONNECT } else { &[0x00] };
    (code(codes), props(v, Kind::Disconnect))
        .prop_map(|(code, properties)| Packet::Disconnect(Disconnect { code, properties }))
}

fn auth() -> impl Strategy<Value = Packet> {
    (code(AUTH), props(ProtocolVersion::V5, Kind::Auth))
        .prop_map(|(code, properties)| Packet::Auth(Auth { code, properties }))
}

/// Any packet that round-trips exactly for `v`.
pub(super) fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(v),
        connack(v),
        publish(v),
        ack(v, PUBACK_PUBREC).prop_map(Packet::PubAck),
        ack(v, PUBACK_PUBREC).prop_map(Packet::PubRec),
        ack(v, PUBREL_PUBCOMP).prop_map(Packet::PubRel),
        ack(v, PUBREL_PUBCOMP).prop_map(Packet::PubComp),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(v),
    ];
    if v.is_v5() {
        prop_oneof![14 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}
