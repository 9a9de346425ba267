//! Hand-written byte vectors for every packet type, in both protocol versions: each decodes to
//! the expected packet and encodes back to the same bytes (or, where the spec allows several
//! encodings, decodes from the long form and encodes to the short one).

use bytes::Bytes;
use bytestring::ByteString;

use super::super::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, Properties, Publish, QoS, ReasonCode, SubAck,
    Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use super::{assert_both_ways, decode_one, encode_vec, hex, V3_1, V3_1_1, V5};

fn s(text: &'static str) -> ByteString {
    ByteString::from_static(text)
}

fn b(bytes: &'static [u8]) -> Bytes {
    Bytes::from_static(bytes)
}

fn connect(protocol: super::super::ProtocolVersion) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 10,
        properties: Properties::default(),
        client_id: s("p"),
        will: None,
        username: None,
        password: None,
    }
}

#[test]
fn connect_v3_1_minimal() {
    let packet = Packet::Connect(Box::new(connect(V3_1)));
    assert_both_ways("10 0F 0006 4D5149736470 03 02 000A 0001 70", V3_1, &packet);
}

#[test]
fn connect_v3_1_1_minimal() {
    let packet = Packet::Connect(Box::new(connect(V3_1_1)));
    assert_both_ways("10 0D 0004 4D515454 04 02 000A 0001 70", V3_1_1, &packet);
}

#[test]
fn connect_v3_1_1_with_will_user_and_password() {
    let packet = Packet::Connect(Box::new(Connect {
        keep_alive: 60,
        client_id: s("cid"),
        will: Some(Will {
            topic: s("t"),
            payload: b(b"hi"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some(s("u")),
        password: Some(b(b"pw")),
        ..connect(V3_1_1)
    }));
    assert_both_ways(
        "10 1D 0004 4D515454 04 EE 003C 0003 636964 0001 74 0002 6869 0001 75 0002 7077",
        V3_1_1,
        &packet,
    );
}

#[test]
fn connect_v5_with_properties() {
    let packet = Packet::Connect(Box::new(Connect {
        keep_alive: 60,
        properties: Properties::from(crate::codec::PropertyValues {
            receive_maximum: Some(20),
            ..crate::codec::PropertyValues::default()
        }),
        ..connect(V5)
    }));
    assert_both_ways(
        "10 11 0004 4D515454 05 02 003C 03 210014 0001 70",
        V5,
        &packet,
    );
}

#[test]
fn connect_v5_with_will_properties_and_password_only() {
    let packet = Packet::Connect(Box::new(Connect {
        keep_alive: 60,
        will: Some(Will {
            topic: s("t"),
            payload: Bytes::new(),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: Properties::from(crate::codec::PropertyValues {
                payload_format_indicator: Some(1),
                will_delay_interval: Some(10),
                ..crate::codec::PropertyValues::default()
            }),
        }),
        password: Some(b(b"pw")),
        ..connect(V5)
    }));
    assert_both_ways(
        "10 1F 0004 4D515454 05 56 003C 00 0001 70 07 0101 180000000A 0001 74 0000 0002 7077",
        V5,
        &packet,
    );
}

#[test]
fn connack_v3() {
    let ok = ConnAck {
        session_present: true,
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    };
    assert_both_ways("20 02 01 00", V3_1_1, &Packet::ConnAck(ok));
    let refused = ConnAck {
        session_present: false,
        code: ReasonCode::NOT_AUTHORIZED,
        properties: Properties::default(),
    };
    assert_both_ways("20 02 00 05", V3_1_1, &Packet::ConnAck(refused));
}

#[test]
fn connack_v3_maps_v5_codes_to_return_codes() {
    let cases = [
        (ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, 1),
        (ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, 2),
        (ReasonCode::SERVER_BUSY, 3),
        (ReasonCode::BAD_USER_NAME_OR_PASSWORD, 4),
        (ReasonCode::BANNED, 5),
    ];
    for (code, v3) in cases {
        let packet = Packet::ConnAck(ConnAck {
            session_present: false,
            code,
            properties: Properties::from(crate::codec::PropertyValues {
                reason_string: Some(s("dropped")),
                ..crate::codec::PropertyValues::default()
            }),
        });
        assert_eq!(encode_vec(&packet, V3_1_1), vec![0x20, 0x02, 0x00, v3]);
    }
}

#[test]
fn connack_v5() {
    let plain = ConnAck {
        session_present: false,
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    };
    assert_both_ways("20 03 00 00 00", V5, &Packet::ConnAck(plain));
    let with_props = ConnAck {
        session_present: true,
        code: ReasonCode::SUCCESS,
        properties: Properties::from(crate::codec::PropertyValues {
            topic_alias_maximum: Some(10),
            maximum_qos: Some(1),
            ..crate::codec::PropertyValues::default()
        }),
    };
    assert_both_ways(
        "20 08 01 00 05 22000A 2401",
        V5,
        &Packet::ConnAck(with_props),
    );
    let refused = ConnAck {
        session_present: false,
        code: ReasonCode::BANNED,
        properties: Properties::default(),
    };
    assert_both_ways("20 03 00 8A 00", V5, &Packet::ConnAck(refused));
}

fn publish(qos: QoS, packet_id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: s("a/b"),
        packet_id,
        properties: Properties::default(),
        payload: b(b"hi"),
    }
}

#[test]
fn publish_v3() {
    let qos0 = publish(QoS::AtMostOnce, None);
    assert_both_ways("30 07 0003 612F62 6869", V3_1_1, &Packet::Publish(qos0));
    let qos1 = Publish {
        dup: true,
        retain: true,
        ..publish(QoS::AtLeastOnce, Some(1))
    };
    assert_both_ways(
        "3B 09 0003 612F62 0001 6869",
        V3_1_1,
        &Packet::Publish(qos1),
    );
    let qos2 = publish(QoS::ExactlyOnce, Some(0xBEEF));
    assert_both_ways("34 09 0003 612F62 BEEF 6869", V3_1, &Packet::Publish(qos2));
}

#[test]
fn publish_v5() {
    let qos0 = publish(QoS::AtMostOnce, None);
    assert_both_ways("30 08 0003 612F62 00 6869", V5, &Packet::Publish(qos0));
    let qos2 = Publish {
        properties: Properties::from(crate::codec::PropertyValues {
            payload_format_indicator: Some(1),
            subscription_identifiers: vec![1, 2],
            topic_alias: Some(5),
            user_properties: vec![(s("k"), s("v"))],
            ..crate::codec::PropertyValues::default()
        }),
        ..publish(QoS::ExactlyOnce, Some(7))
    };
    assert_both_ways(
        "34 1A 0003 612F62 0007 10 0101 0B01 0B02 230005 2600016B000176 6869",
        V5,
        &Packet::Publish(qos2),
    );
}

#[test]
fn publish_v5_empty_topic_with_alias() {
    let packet = Publish {
        topic: s(""),
        payload: Bytes::new(),
        properties: Properties::from(crate::codec::PropertyValues {
            topic_alias: Some(1),
            ..crate::codec::PropertyValues::default()
        }),
        ..publish(QoS::AtMostOnce, None)
    };
    assert_both_ways("30 06 0000 03 230001", V5, &Packet::Publish(packet));
}

#[test]
fn publish_payload_slices_the_receive_buffer() {
    let packet = decode_one("30 07 0003 612F62 6869", Some(V3_1_1)).expect("decodes");
    let Packet::Publish(p) = packet else {
        panic!("not a PUBLISH")
    };
    // Payload and topic are views into one frame: the topic ends where the payload begins.
    let topic_end = p.topic.as_bytes().as_ptr() as usize + p.topic.len();
    assert_eq!(topic_end, p.payload.as_ptr() as usize);
}

#[test]
fn acks_v3() {
    assert_both_ways("40 02 0001", V3_1_1, &Packet::PubAck(Ack::new(1)));
    assert_both_ways("50 02 0002", V3_1_1, &Packet::PubRec(Ack::new(2)));
    assert_both_ways("62 02 0003", V3_1_1, &Packet::PubRel(Ack::new(3)));
    assert_both_ways("70 02 FFFF", V3_1_1, &Packet::PubComp(Ack::new(0xFFFF)));
}

#[test]
fn acks_v3_drop_v5_fields() {
    let ack = Ack {
        packet_id: 1,
        code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
        properties: Properties::from(crate::codec::PropertyValues {
            reason_string: Some(s("x")),
            ..crate::codec::PropertyValues::default()
        }),
    };
    assert_eq!(
        encode_vec(&Packet::PubAck(ack), V3_1_1),
        hex("40 02 0001").to_vec()
    );
}

#[test]
fn acks_v5_short_forms() {
    assert_both_ways("40 02 0001", V5, &Packet::PubAck(Ack::new(1)));
    assert_both_ways("50 02 0001", V5, &Packet::PubRec(Ack::new(1)));
    assert_both_ways("62 02 0001", V5, &Packet::PubRel(Ack::new(1)));
    assert_both_ways("70 02 0001", V5, &Packet::PubComp(Ack::new(1)));
    let no_subscribers = Ack {
        code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
        ..Ack::new(1)
    };
    assert_both_ways("40 03 0001 10", V5, &Packet::PubAck(no_subscribers));
    let not_found = Ack {
        code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        ..Ack::new(9)
    };
    assert_both_ways("62 03 0009 92", V5, &Packet::PubRel(not_found.clone()));
    assert_both_ways("70 03 0009 92", V5, &Packet::PubComp(not_found));
}

#[test]
fn acks_v5_with_properties() {
    let ack = Ack {
        packet_id: 1,
        code: ReasonCode::NOT_AUTHORIZED,
        properties: Properties::from(crate::codec::PropertyValues {
            reason_string: Some(s("x")),
            ..crate::codec::PropertyValues::default()
        }),
    };
    assert_both_ways(
        "40 08 0001 87 04 1F000178",
        V5,
        &Packet::PubAck(ack.clone()),
    );
    assert_both_ways("50 08 0001 87 04 1F000178", V5, &Packet::PubRec(ack));
}

#[test]
fn acks_v5_long_forms_decode_to_the_same_packet() {
    // Success with an empty property block, and a code with an empty block.
    assert_eq!(
        decode_one("40 04 0001 00 00", Some(V5)),
        Ok(Packet::PubAck(Ack::new(1)))
    );
    let code = Ack {
        code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
        ..Ack::new(1)
    };
    assert_eq!(
        decode_one("40 04 0001 10 00", Some(V5)),
        Ok(Packet::PubAck(code))
    );
}

#[test]
fn subscribe_v3() {
    let packet = Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![
            (
                s("a/b"),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            ),
            (s("#"), SubscriptionOptions::default()),
        ],
    };
    assert_both_ways(
        "82 0C 0001 0003 612F62 01 0001 23 00",
        V3_1_1,
        &Packet::Subscribe(packet),
    );
}

#[test]
fn subscribe_v3_drops_v5_options() {
    let packet = Subscribe {
        packet_id: 1,
        properties: Properties::from(crate::codec::PropertyValues {
            subscription_identifiers: vec![3],
            ..crate::codec::PropertyValues::default()
        }),
        filters: vec![(
            s("#"),
            SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: 2,
            },
        )],
    };
    assert_eq!(
        encode_vec(&Packet::Subscribe(packet), V3_1_1),
        hex("82 06 0001 0001 23 02").to_vec()
    );
}

#[test]
fn subscribe_v5() {
    let packet = Subscribe {
        packet_id: 10,
        properties: Properties::from(crate::codec::PropertyValues {
            subscription_identifiers: vec![5],
            ..crate::codec::PropertyValues::default()
        }),
        filters: vec![(
            s("a/+"),
            SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: 1,
            },
        )],
    };
    assert_both_ways(
        "82 0B 000A 02 0B05 0003 612F2B 1E",
        V5,
        &Packet::Subscribe(packet),
    );
}

#[test]
fn suback_v3() {
    let packet = SubAck {
        packet_id: 1,
        properties: Properties::default(),
        codes: vec![
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode(0x80),
        ],
    };
    assert_both_ways("90 05 0001 01 00 80", V3_1_1, &Packet::SubAck(packet));
    let v5_failure = SubAck {
        packet_id: 1,
        properties: Properties::default(),
        codes: vec![ReasonCode::NOT_AUTHORIZED, ReasonCode::GRANTED_QOS_2],
    };
    assert_eq!(
        encode_vec(&Packet::SubAck(v5_failure), V3_1_1),
        hex("90 04 0001 80 02").to_vec()
    );
}

#[test]
fn suback_v5() {
    let packet = SubAck {
        packet_id: 1,
        properties: Properties::default(),
        codes: vec![
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::TOPIC_FILTER_INVALID,
        ],
    };
    assert_both_ways("90 06 0001 00 01 02 8F", V5, &Packet::SubAck(packet));
}

#[test]
fn unsubscribe_both_versions() {
    let packet = Unsubscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![s("a/b")],
    };
    assert_both_ways(
        "A2 07 0001 0003 612F62",
        V3_1_1,
        &Packet::Unsubscribe(packet.clone()),
    );
    assert_both_ways(
        "A2 08 0001 00 0003 612F62",
        V5,
        &Packet::Unsubscribe(packet),
    );
}

#[test]
fn unsuback_both_versions() {
    let v3 = UnsubAck {
        packet_id: 1,
        properties: Properties::default(),
        codes: Vec::new(),
    };
    assert_both_ways("B0 02 0001", V3_1_1, &Packet::UnsubAck(v3));
    let v5 = UnsubAck {
        packet_id: 1,
        properties: Properties::default(),
        codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
    };
    assert_both_ways("B0 05 0001 00 00 11", V5, &Packet::UnsubAck(v5.clone()));
    // 3.1.1 UNSUBACK has no payload.
    assert_eq!(
        encode_vec(&Packet::UnsubAck(v5), V3_1_1),
        hex("B0 02 0001").to_vec()
    );
}

#[test]
fn pings_both_versions() {
    for v in [V3_1_1, V5] {
        assert_both_ways("C0 00", v, &Packet::PingReq);
        assert_both_ways("D0 00", v, &Packet::PingResp);
    }
}

#[test]
fn disconnect_v3() {
    let normal = Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION));
    assert_both_ways("E0 00", V3_1_1, &normal);
    let taken_over = Packet::Disconnect(Disconnect::new(ReasonCode::SESSION_TAKEN_OVER));
    assert_eq!(encode_vec(&taken_over, V3_1_1), hex("E0 00").to_vec());
}

#[test]
fn disconnect_v5() {
    let normal = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    assert_both_ways("E0 00", V5, &Packet::Disconnect(normal));
    let with_will = Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL);
    assert_both_ways("E0 01 04", V5, &Packet::Disconnect(with_will));
    let expiry = Disconnect {
        code: ReasonCode::NORMAL_DISCONNECTION,
        properties: Properties::from(crate::codec::PropertyValues {
            session_expiry_interval: Some(60),
            ..crate::codec::PropertyValues::default()
        }),
    };
    assert_both_ways("E0 07 00 05 110000003C", V5, &Packet::Disconnect(expiry));
    // Success with an empty property block.
    assert_eq!(
        decode_one("E0 02 00 00", Some(V5)),
        Ok(Packet::Disconnect(Disconnect::new(
            ReasonCode::NORMAL_DISCONNECTION
        )))
    );
}

#[test]
fn auth_v5() {
    let empty = Auth {
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    };
    assert_both_ways("F0 00", V5, &Packet::Auth(empty));
    let cont = Auth {
        code: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: Properties::default(),
    };
    // A non-zero code is always followed by a property length...
    assert_both_ways("F0 02 18 00", V5, &Packet::Auth(cont.clone()));
    // ...but a bare code is accepted.
    assert_eq!(decode_one("F0 01 18", Some(V5)), Ok(Packet::Auth(cont)));
    let scram = Auth {
        code: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: Properties::from(crate::codec::PropertyValues {
            authentication_method: Some(s("SCRAM")),
            ..crate::codec::PropertyValues::default()
        }),
    };
    assert_both_ways("F0 0A 18 08 15 0005 5343 5241 4D", V5, &Packet::Auth(scram));
}
