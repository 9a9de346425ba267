//! One test per validation rule, each asserting the exact [`DecodeError`] variant, since the
//! broker's answer (reason code, CONNACK return code, or a plain close) depends on it.

use super::super::{DecodeError, Packet, QoS};
use super::{decode_err, decode_one, V3_1, V3_1_1, V5};

fn malformed(e: DecodeError) -> bool {
    matches!(e, DecodeError::Malformed(_))
}

fn protocol(e: DecodeError) -> bool {
    matches!(e, DecodeError::Protocol(_))
}

// ---- Connection state -------------------------------------------------------------------------

#[test]
fn first_packet_must_be_connect() {
    // [MQTT-3.1.0-1]
    assert!(protocol(decode_err("C0 00", None)));
    assert!(protocol(decode_err("30 07 0003 612F62 6869", None)));
    // Refused at the first byte, before the rest arrives.
    assert!(protocol(decode_err("82", None)));
}

#[test]
fn second_connect_is_a_protocol_error() {
    // [MQTT-3.1.0-2]
    let connect = "10 0D 0004 4D515454 04 02 000A 0001 70";
    assert!(protocol(decode_err(connect, Some(V3_1_1))));
    assert!(protocol(decode_err(connect, Some(V5))));
}

#[test]
fn server_to_client_packets_decode() {
    // The bundled client decodes CONNACK, SUBACK, UNSUBACK and PINGRESP with this codec.
    assert!(decode_one("20 02 00 00", Some(V3_1_1)).is_ok());
    assert!(decode_one("90 03 0001 00", Some(V5)).is_ok());
    assert!(decode_one("B0 02 0001", Some(V3_1_1)).is_ok());
    assert!(decode_one("D0 00", Some(V5)).is_ok());
}

// ---- Fixed header -----------------------------------------------------------------------------

#[test]
fn packet_type_0_is_a_protocol_error() {
    // Table 2-1: forbidden.
    assert!(protocol(decode_err("00 00", Some(V5))));
    assert!(protocol(decode_err("00 00", Some(V3_1_1))));
}

#[test]
fn auth_is_malformed_before_v5() {
    assert!(malformed(decode_err("F0 00", Some(V3_1_1))));
    assert!(malformed(decode_err("F0 00", Some(V3_1))));
}

#[test]
fn reserved_flags_must_be_zero() {
    // [MQTT-2.1.3-1]
    assert!(malformed(decode_err("C1 00", Some(V5))));
    assert!(malformed(decode_err("D8 00", Some(V5))));
    assert!(malformed(decode_err("E2 00", Some(V3_1_1))));
    assert!(malformed(decode_err("41 02 0001", Some(V5))));
    assert!(malformed(decode_err("52 02 0001", Some(V5))));
    assert!(malformed(decode_err("74 02 0001", Some(V5))));
    assert!(malformed(decode_err("24 02 00 00", Some(V3_1_1))));
    assert!(malformed(decode_err("98 03 0001 00", Some(V5))));
    assert!(malformed(decode_err("B1 02 0001", Some(V3_1_1))));
    assert!(malformed(decode_err("F1 00", Some(V5))));
    assert!(malformed(decode_err(
        "12 0D 0004 4D515454 04 02 000A 0001 70",
        None
    )));
    assert!(malformed(decode_err(
        "18 0E 0004 4D515454 05 02 000A 00 0001 70",
        None
    )));
}

#[test]
fn mqtt_3_1_flags_are_checked_like_3_1_1() {
    // 3.1 calls these flags "not used"; like every broker in the field we reject them set.
    assert!(malformed(decode_err(
        "14 0F 0006 4D5149736470 03 02 000A 0001 70",
        None
    )));
    // Connect flag bit 0 is the exception: 3.1 clients set it and brokers accept it.
    assert!(decode_one("10 0F 0006 4D5149736470 03 03 000A 0001 70", None).is_ok());
    assert!(malformed(decode_err("8A 06 0001 0001 23 00", Some(V3_1))));
    assert!(malformed(decode_err("C1 00", Some(V3_1))));
    assert!(decode_one("10 0F 0006 4D5149736470 03 02 000A 0001 70", None).is_ok());
    // PUBLISH flags carry meaning in 3.1 too.
    assert!(malformed(decode_err(
        "36 09 0003 612F62 0001 6869",
        Some(V3_1)
    )));
}

#[test]
fn pubrel_subscribe_unsubscribe_flags_must_be_0010() {
    // [MQTT-2.1.3-1]
    assert!(malformed(decode_err("60 02 0001", Some(V5))));
    assert!(malformed(decode_err("63 02 0001", Some(V3_1_1))));
    assert!(malformed(decode_err("80 06 0001 0001 23 00", Some(V3_1_1))));
    assert!(malformed(decode_err("8A 06 0001 0001 23 00", Some(V3_1_1))));
    assert!(malformed(decode_err("A0 05 0001 0001 23", Some(V3_1_1))));
    assert!(malformed(decode_err("A3 05 0001 0001 23", Some(V3_1_1))));
}

#[test]
fn publish_qos_3_is_malformed() {
    // [MQTT-3.3.1-4]
    assert!(malformed(decode_err(
        "36 09 0003 612F62 0001 6869",
        Some(V3_1_1)
    )));
    assert!(malformed(decode_err(
        "3E 09 0003 612F62 0001 6869",
        Some(V5)
    )));
}

#[test]
fn publish_qos_0_with_dup_is_malformed() {
    // [MQTT-3.3.1-2]
    assert!(malformed(decode_err(
        "38 07 0003 612F62 6869",
        Some(V3_1_1)
    )));
    assert!(malformed(decode_err("39 08 0003 612F62 00 6869", Some(V5))));
}

#[test]
fn remaining_length_longer_than_4_bytes_is_malformed() {
    // 1.5.5 (3.1.1: 2.2.3): at most four bytes.
    assert!(malformed(decode_err("30 FF FF FF FF 7F", Some(V5))));
    assert!(malformed(decode_err("C0 80 80 80 80 00", Some(V5))));
}

#[test]
fn non_minimal_variable_byte_integers_are_malformed() {
    // [MQTT-1.5.5-1]: the fewest bytes necessary.
    assert!(malformed(decode_err("C0 80 00", Some(V5))));
    assert!(malformed(decode_err("D0 80 80 80 00", Some(V3_1_1))));
    // A subscription identifier of 0x80 0x00 in a property.
    assert!(malformed(decode_err(
        "82 0A 0001 03 0B8000 0001 70 00",
        Some(V5)
    )));
}

#[test]
fn leftover_bytes_are_malformed() {
    assert!(malformed(decode_err("40 03 0001 00", Some(V3_1_1))));
    assert!(malformed(decode_err("B0 03 0001 00", Some(V3_1_1))));
    assert!(malformed(decode_err("E0 01 00", Some(V3_1_1))));
    assert!(malformed(decode_err("20 03 00 00 00", Some(V3_1_1))));
    assert!(malformed(decode_err(
        "10 0E 0004 4D515454 04 02 000A 0001 70 00",
        None
    )));
}

#[test]
fn reading_past_the_end_is_malformed() {
    assert!(malformed(decode_err("30 03 0005 61", Some(V3_1_1))));
    assert!(malformed(decode_err("40 01 00", Some(V3_1_1))));
    assert!(malformed(decode_err("32 05 0003 612F62", Some(V3_1_1))));
    assert!(malformed(decode_err(
        "10 0A 0004 4D515454 04 02 000A",
        None
    )));
    assert!(malformed(decode_err("20 01 00", Some(V5))));
    assert!(malformed(decode_err("82 05 0001 0001 23", Some(V3_1_1))));
}

#[test]
fn ping_with_a_body_is_malformed() {
    assert!(malformed(decode_err("C0 01 00", Some(V3_1_1))));
    assert!(malformed(decode_err("D0 01 00", Some(V5))));
}

// ---- UTF-8 strings ----------------------------------------------------------------------------

#[test]
fn invalid_utf8_is_malformed() {
    // [MQTT-1.5.4-1]
    assert!(malformed(decode_err("30 06 0002 C328 6869", Some(V3_1_1))));
    // A surrogate (U+D800).
    assert!(malformed(decode_err("30 05 0003 EDA080", Some(V5))));
    assert!(malformed(decode_err("A2 05 0001 0001 FF", Some(V3_1_1))));
}

#[test]
fn null_character_is_malformed() {
    // [MQTT-1.5.4-2]
    assert!(malformed(decode_err("30 05 0003 610062", Some(V3_1_1))));
    assert!(malformed(decode_err(
        "10 0D 0004 4D515454 04 02 000A 0001 00",
        None
    )));
}

#[test]
fn control_characters_in_topics_are_malformed_noncharacters_are_allowed() {
    // 1.5.4: a receiver MAY treat U+0001..U+001F and U+007F..U+009F as malformed; in topics
    // mqttd does.
    for topic in ["0001 01", "0001 1F", "0001 7F", "0002 C29F"] {
        let len = topic.replace(' ', "").len() / 2;
        let bytes = format!("30 {len:02X} {topic}");
        assert!(malformed(decode_err(&bytes, Some(V3_1_1))), "{bytes}");
    }
    assert!(malformed(decode_err("A2 05 0001 0001 01", Some(V3_1_1))));
    // Non-characters are not control characters, nor is U+00A0 (C2 A0, past U+009F).
    assert!(decode_one("30 05 0003 EFBFBF", Some(V3_1_1)).is_ok());
    assert!(decode_one("30 04 0002 C2A0", Some(V3_1_1)).is_ok());
    assert!(malformed(decode_err("30 06 0004 61C28062", Some(V3_1_1))));
    // Elsewhere (a user property value) control characters are allowed.
    assert!(decode_one("30 0B 0001 61 07 26 0001 6B 0001 01", Some(V5)).is_ok());
}

// ---- CONNECT ----------------------------------------------------------------------------------

#[test]
fn connect_unsupported_level() {
    // [MQTT-3.1.2-2]: reported right after the level, whatever follows.
    assert_eq!(
        decode_err("10 07 0004 4D515454 06", None),
        DecodeError::UnsupportedProtocolVersion(6)
    );
    assert_eq!(
        decode_err("10 0D 0004 4D515454 03 02 000A 0001 70", None),
        DecodeError::UnsupportedProtocolVersion(3)
    );
    assert_eq!(
        decode_err("10 0F 0006 4D5149736470 04 02 000A 0001 70", None),
        DecodeError::UnsupportedProtocolVersion(4)
    );
}

#[test]
fn connect_unknown_protocol_name_is_malformed() {
    // [MQTT-3.1.2-1]
    assert!(malformed(decode_err(
        "10 0D 0004 4D515458 04 02 000A 0001 70",
        None
    )));
    assert!(malformed(decode_err(
        "10 0D 0004 6D717474 04 02 000A 0001 70",
        None
    )));
}

#[test]
fn connect_reserved_flag_is_malformed() {
    // [MQTT-3.1.2-3]
    assert!(malformed(decode_err(
        "10 0D 0004 4D515454 04 03 000A 0001 70",
        None
    )));
    assert!(malformed(decode_err(
        "10 0E 0004 4D515454 05 03 000A 00 0001 70",
        None
    )));
}

#[test]
fn connect_will_qos_without_will_is_malformed() {
    // [MQTT-3.1.2-11], [MQTT-3.1.2-13]
    assert!(malformed(decode_err(
        "10 0D 0004 4D515454 04 0A 000A 0001 70",
        None
    )));
    assert!(malformed(decode_err(
        "10 0E 0004 4D515454 05 12 000A 00 0001 70",
        None
    )));
}

#[test]
fn connect_will_retain_without_will_is_malformed() {
    // [MQTT-3.1.2-15] (5.0: [MQTT-3.1.2-13])
    assert!(malformed(decode_err(
        "10 0D 0004 4D515454 04 22 000A 0001 70",
        None
    )));
    assert!(malformed(decode_err(
        "10 0E 0004 4D515454 05 22 000A 00 0001 70",
        None
    )));
}

#[test]
fn connect_will_qos_3_is_malformed() {
    // [MQTT-3.1.2-14] (5.0: [MQTT-3.1.2-12])
    let v3 = "10 13 0004 4D515454 04 1E 000A 0001 70 0001 74 0001 6D";
    assert!(malformed(decode_err(v3, None)));
}

#[test]
fn connect_password_without_user_name() {
    // [MQTT-3.1.2-22] in 3.1.1; allowed in 5.0.
    assert!(malformed(decode_err(
        "10 11 0004 4D515454 04 42 000A 0001 70 0002 7077",
        None
    )));
    assert!(malformed(decode_err(
        "10 13 0006 4D5149736470 03 42 000A 0001 70 0002 7077",
        None
    )));
    assert!(decode_one("10 12 0004 4D515454 05 42 000A 00 0001 70 0002 7077", None).is_ok());
}

#[test]
fn connect_empty_client_id_decodes() {
    // Whether it is acceptable is the broker's decision ([MQTT-3.1.3-7], [MQTT-3.1.3-8]).
    assert!(decode_one("10 0C 0004 4D515454 04 00 000A 0000", None).is_ok());
}

#[test]
fn connect_will_topic_with_wildcard_is_invalid() {
    let bytes = "10 13 0004 4D515454 04 06 000A 0001 70 0001 23 0001 6D";
    assert_eq!(decode_err(bytes, None), DecodeError::TopicNameInvalid);
}

#[test]
fn connect_authentication_data_without_method() {
    // 3.1.2.11.10
    let bytes = "10 12 0004 4D515454 05 02 000A 04 16 0001 78 0001 70";
    assert!(protocol(decode_err(bytes, None)));
}

// ---- CONNACK ----------------------------------------------------------------------------------

#[test]
fn connack_reserved_flags_are_malformed() {
    // [MQTT-3.2.2-1] (5.0 3.2.2.1)
    assert!(malformed(decode_err("20 02 02 00", Some(V3_1_1))));
    assert!(malformed(decode_err("20 03 80 00 00", Some(V5))));
}

#[test]
fn connack_reserved_return_codes_are_rejected() {
    assert!(malformed(decode_err("20 02 00 06", Some(V3_1_1))));
    assert!(matches!(
        decode_err("20 03 00 01 00", Some(V5)),
        DecodeError::Protocol(_)
    ));
    assert!(matches!(
        decode_err("20 03 00 8B 00", Some(V5)),
        DecodeError::Protocol(_)
    ));
}

// ---- Packet identifiers -----------------------------------------------------------------------

#[test]
fn packet_identifier_0_is_a_protocol_error() {
    // [MQTT-2.2.1-3]
    assert!(protocol(decode_err(
        "32 09 0003 612F62 0000 6869",
        Some(V3_1_1)
    )));
    assert!(protocol(decode_err(
        "34 0A 0003 612F62 0000 00 6869",
        Some(V5)
    )));
    assert!(protocol(decode_err("82 06 0000 0001 23 00", Some(V3_1_1))));
    assert!(protocol(decode_err("A2 05 0000 0001 23", Some(V3_1_1))));
    assert!(protocol(decode_err("40 02 0000", Some(V3_1_1))));
    assert!(protocol(decode_err("50 02 0000", Some(V5))));
    assert!(protocol(decode_err("62 02 0000", Some(V5))));
    assert!(protocol(decode_err("70 02 0000", Some(V3_1_1))));
    assert!(protocol(decode_err("90 03 0000 00", Some(V3_1_1))));
    assert!(protocol(decode_err("B0 02 0000", Some(V3_1_1))));
}

// ---- PUBLISH ----------------------------------------------------------------------------------

#[test]
fn publish_topic_with_wildcards_is_malformed() {
    // [MQTT-3.3.2-2]
    assert!(malformed(decode_err("30 05 0003 612F2B", Some(V3_1_1))));
    assert!(malformed(decode_err("30 06 0003 612F23 00", Some(V5))));
}

#[test]
fn publish_empty_topic_v3_is_malformed() {
    assert!(malformed(decode_err("30 04 0000 6869", Some(V3_1_1))));
}

#[test]
fn publish_empty_topic_v5_without_alias_is_a_protocol_error() {
    assert!(protocol(decode_err("30 05 0000 00 6869", Some(V5))));
}

#[test]
fn publish_packet_id_only_with_qos() {
    let Ok(Packet::Publish(p)) = decode_one("30 07 0003 612F62 0001", Some(V3_1_1)) else {
        panic!("decodes")
    };
    // For QoS 0 the two bytes are payload.
    assert_eq!(
        (p.qos, p.packet_id, &p.payload[..]),
        (QoS::AtMostOnce, None, &[0, 1][..])
    );
}

// ---- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------------------------

#[test]
fn subscribe_without_filters_is_a_protocol_error() {
    // [MQTT-3.8.3-3]
    assert!(protocol(decode_err("82 02 0001", Some(V3_1_1))));
    assert!(protocol(decode_err("82 03 0001 00", Some(V5))));
}

#[test]
fn subscribe_v5_reserved_option_bits_are_malformed() {
    // [MQTT-3.8.3-5]
    assert!(malformed(decode_err("82 07 0001 00 0001 23 40", Some(V5))));
    assert!(malformed(decode_err("82 07 0001 00 0001 23 80", Some(V5))));
}

#[test]
fn subscribe_v5_qos_3_is_a_protocol_error() {
    // 3.8.3.1: "It is a Protocol Error if the Maximum QoS field has the value 3."
    assert!(protocol(decode_err("82 07 0001 00 0001 23 03", Some(V5))));
}

#[test]
fn subscribe_v5_retain_handling_3_is_a_protocol_error() {
    // 3.8.3.1
    assert!(protocol(decode_err("82 07 0001 00 0001 23 30", Some(V5))));
}

#[test]
fn subscribe_v5_no_local_on_shared_subscription_is_a_protocol_error() {
    // [MQTT-3.8.3-4] (5.0)
    assert!(protocol(decode_err(
        "82 0F 0001 00 0009 2473686172652F672F 04",
        Some(V5)
    )));
    assert!(decode_one("82 0F 0001 00 0009 2473686172652F672F 00", Some(V5)).is_ok());
}

#[test]
fn subscribe_v3_reserved_option_bits_are_malformed() {
    // [MQTT-3-8.3-4] (3.1.1): upper 6 bits reserved.
    for options in ["04", "08", "10", "40", "80"] {
        let bytes = format!("82 06 0001 0001 23 {options}");
        assert!(malformed(decode_err(&bytes, Some(V3_1_1))), "{bytes}");
    }
}

#[test]
fn subscribe_v3_qos_3_is_malformed() {
    // [MQTT-3-8.3-4] (3.1.1)
    assert!(malformed(decode_err("82 06 0001 0001 23 03", Some(V3_1_1))));
}

#[test]
fn empty_topic_filters_are_malformed() {
    // [MQTT-4.7.3-1] at least one character.
    assert!(malformed(decode_err("82 05 0001 0000 00", Some(V3_1_1))));
    assert!(malformed(decode_err("82 06 0001 00 0000 00", Some(V5))));
    assert!(malformed(decode_err("A2 04 0001 0000", Some(V3_1_1))));
}

#[test]
fn unsubscribe_without_filters_is_a_protocol_error() {
    // [MQTT-3.10.3-2]
    assert!(protocol(decode_err("A2 02 0001", Some(V3_1_1))));
    assert!(protocol(decode_err("A2 03 0001 00", Some(V5))));
}

// ---- Properties -------------------------------------------------------------------------------

#[test]
fn unknown_property_is_malformed() {
    // 2.2.2.2
    assert!(malformed(decode_err("30 08 0003 612F62 02 0501", Some(V5))));
    // Identifier 0x80 0x01 = 128 as a multi-byte Variable Byte Integer.
    assert!(malformed(decode_err(
        "30 09 0003 612F62 03 800101",
        Some(V5)
    )));
    // Identifier 0 is not a property either.
    assert!(malformed(decode_err(
        "A2 08 0001 02 0001 0001 70",
        Some(V5)
    )));
}

#[test]
fn property_not_allowed_for_the_packet_is_malformed() {
    // Topic alias in SUBSCRIBE, session expiry in PUBLISH, will delay in CONNECT.
    assert!(malformed(decode_err(
        "82 0A 0001 03 230001 0001 23 00",
        Some(V5)
    )));
    assert!(malformed(decode_err(
        "30 0B 0003 612F62 05 1100000001",
        Some(V5)
    )));
    assert!(malformed(decode_err(
        "10 13 0004 4D515454 05 02 000A 05 1800000001 0001 70",
        None
    )));
    // A will property list follows its own table: Receive Maximum is not a will property.
    let will = "10 17 0004 4D515454 05 06 000A 00 0001 70 03 210001 0001 74 0000";
    assert!(malformed(decode_err(will, None)));
    // Reason string is fine in an ack but not in UNSUBSCRIBE.
    assert!(malformed(decode_err(
        "A2 0A 0001 04 1F000178 0001 70",
        Some(V5)
    )));
}

#[test]
fn duplicate_property_is_a_protocol_error() {
    // 2.2.2.2 and each property's definition.
    assert!(protocol(decode_err(
        "30 0C 0003 612F62 06 230001 230002",
        Some(V5)
    )));
    assert!(protocol(decode_err(
        "40 0C 0001 00 08 1F000178 1F000179",
        Some(V5)
    )));
}

#[test]
fn repeatable_properties() {
    // User property anywhere; subscription identifier in PUBLISH but not SUBSCRIBE.
    let users = "40 12 0001 00 0E 2600016B000176 2600016B000177";
    assert!(decode_one(users, Some(V5)).is_ok());
    assert!(decode_one("30 0A 0003 612F62 04 0B01 0B02", Some(V5)).is_ok());
    assert!(protocol(decode_err(
        "82 0B 0001 04 0B01 0B02 0001 23 00",
        Some(V5)
    )));
}

#[test]
fn property_values_out_of_range_are_protocol_errors() {
    let cases = [
        // Payload format indicator 2 (PUBLISH).
        ("30 08 0003 612F62 02 0102", Some(V5)),
        // Request problem information 2, request response information 2 (CONNECT).
        ("10 10 0004 4D515454 05 02 000A 02 1702 0001 70", None),
        ("10 10 0004 4D515454 05 02 000A 02 1902 0001 70", None),
        // Receive maximum 0, maximum packet size 0 (CONNECT).
        ("10 11 0004 4D515454 05 02 000A 03 210000 0001 70", None),
        ("10 13 0004 4D515454 05 02 000A 05 2700000000 0001 70", None),
        // Maximum QoS, retain, wildcard, subscription identifier, shared available = 2.
        ("20 05 00 00 02 2402", Some(V5)),
        ("20 05 00 00 02 2502", Some(V5)),
        ("20 05 00 00 02 2802", Some(V5)),
        ("20 05 00 00 02 2902", Some(V5)),
        ("20 05 00 00 02 2A02", Some(V5)),
        // Receive maximum 0 (CONNACK).
        ("20 06 00 00 03 210000", Some(V5)),
        // Topic alias 0 (PUBLISH).
        ("30 09 0003 612F62 03 230000", Some(V5)),
        // Subscription identifier 0 (SUBSCRIBE, PUBLISH).
        ("82 09 0001 02 0B00 0001 23 00", Some(V5)),
        ("30 08 0003 612F62 02 0B00", Some(V5)),
        // Will payload format indicator 2.
        (
            "10 16 0004 4D515454 05 06 000A 00 0001 70 02 0102 0001 74 0000",
            None,
        ),
    ];
    for (bytes, version) in cases {
        assert!(protocol(decode_err(bytes, version)), "{bytes}");
    }
}

#[test]
fn response_topic_with_wildcards_is_a_protocol_error() {
    // [MQTT-3.3.2-14]
    assert!(protocol(decode_err(
        "30 0A 0003 612F62 04 08000123",
        Some(V5)
    )));
    assert!(protocol(decode_err(
        "30 0A 0003 612F62 04 0800012B",
        Some(V5)
    )));
    let will = "10 18 0004 4D515454 05 06 000A 00 0001 70 04 08000123 0001 74 0000";
    assert!(protocol(decode_err(will, None)));
}

#[test]
fn property_length_beyond_the_packet_is_malformed() {
    assert!(malformed(decode_err("30 08 0003 612F62 09 0101", Some(V5))));
    assert!(malformed(decode_err("40 04 0001 00 05", Some(V5))));
}

#[test]
fn property_overrunning_the_property_length_is_malformed() {
    // Property length 1 but message expiry takes 5 bytes (the payload would supply them).
    assert!(malformed(decode_err(
        "30 0B 0003 612F62 01 0200000001",
        Some(V5)
    )));
    // A truncated user property.
    assert!(malformed(decode_err("E0 05 00 03 260001", Some(V5))));
    // Payload format indicator whose value byte lies beyond the property length.
    assert!(malformed(decode_err(
        "32 0A 0003 612F62 0001 01 01 70",
        Some(V5)
    )));
}

// ---- Reason codes -----------------------------------------------------------------------------

#[test]
fn ack_reason_codes_outside_their_table_are_protocol_errors() {
    // 3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1; [MQTT-3.4.2-1]: parsed but not allowed (4.13).
    assert!(matches!(
        decode_err("40 03 0001 92", Some(V5)),
        DecodeError::Protocol(_)
    ));
    assert!(matches!(
        decode_err("50 03 0001 01", Some(V5)),
        DecodeError::Protocol(_)
    ));
    assert!(matches!(
        decode_err("62 03 0001 10", Some(V5)),
        DecodeError::Protocol(_)
    ));
    assert!(matches!(
        decode_err("62 03 0001 80", Some(V5)),
        DecodeError::Protocol(_)
    ));
    assert!(matches!(
        decode_err("70 03 0001 87", Some(V5)),
        DecodeError::Protocol(_)
    ));
    assert!(decode_one("62 03 0001 92", Some(V5)).is_ok());
    assert!(decode_one("50 03 0001 99", Some(V5)).is_ok());
}

#[test]
fn disconnect_and_auth_reason_codes_outside_their_table_are_protocol_errors() {
    // 3.14.2.1, 3.15.2.1
    assert!(matches!(
        decode_err("E0 01 05", Some(V5)),
        DecodeError::Protocol(_)
    ));
    assert!(matches!(
        decode_err("E0 01 91", Some(V5)),
        DecodeError::Protocol(_)
    ));
    assert!(matches!(
        decode_err("F0 01 01", Some(V5)),
        DecodeError::Protocol(_)
    ));
    assert!(matches!(
        decode_err("F0 02 80 00", Some(V5)),
        DecodeError::Protocol(_)
    ));
    assert!(decode_one("E0 01 8E", Some(V5)).is_ok());
}

#[test]
fn suback_and_unsuback_reason_codes_outside_their_table_are_rejected() {
    // 3.9.3, 3.11.3 (5.0: protocol error, 4.13); 3.1.1 [MQTT-3.9.3-2] (malformed).
    assert!(matches!(
        decode_err("90 04 0001 00 03", Some(V5)),
        DecodeError::Protocol(_)
    ));
    assert!(malformed(decode_err("90 03 0001 03", Some(V3_1_1))));
    assert!(malformed(decode_err("90 03 0001 87", Some(V3_1_1))));
    assert!(matches!(
        decode_err("B0 04 0001 00 10", Some(V5)),
        DecodeError::Protocol(_)
    ));
}
