//! The hex examples in `proto-ext/` are normative: each one must appear in its document and
//! decode (or encode) to exactly the packet the text describes.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::BytesMut;
use mqttd::codec::{self, Packet, ProtocolVersion, QoS, ReasonCode};

fn bytes(hex: &str) -> BytesMut {
    let clean: String = hex.split_whitespace().collect();
    let v: Vec<u8> = (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
        .collect();
    BytesMut::from(&v[..])
}

fn doc(name: &str) -> String {
    let path = format!("{}/proto-ext/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Decodes `hex`, checks it round-trips, and that the document shows it.
fn example(document: &str, hex: &str, version: Option<ProtocolVersion>) -> Packet {
    assert!(
        doc(document).contains(hex),
        "{document} does not show the example {hex}"
    );
    let mut buf = bytes(hex);
    let packet = codec::decode(&mut buf, version, u32::MAX).unwrap().unwrap();
    assert!(buf.is_empty(), "{hex}: trailing bytes");
    let mut again = BytesMut::new();
    codec::encode(&packet, version.unwrap_or(ProtocolVersion::V5), &mut again);
    assert_eq!(again, bytes(hex), "{hex} does not round-trip");
    packet
}

const V5: Option<ProtocolVersion> = Some(ProtocolVersion::V5);

#[test]
fn transport_quic_examples() {
    match example(
        "transport-quic.md",
        "10 0E 00 04 4D 51 54 54 05 02 00 1E 00 00 01 61",
        None,
    ) {
        Packet::Connect(c) => {
            assert_eq!(
                (c.protocol, &c.client_id[..], c.keep_alive, c.clean_start),
                (ProtocolVersion::V5, "a", 30, true)
            );
        }
        other => panic!("{other:?}"),
    }
    match example(
        "transport-quic.md",
        "20 0E 00 00 0B 21 04 00 22 00 0A 27 00 10 00 00",
        V5,
    ) {
        Packet::ConnAck(a) => {
            let defaults = mqttd::Config::default();
            assert_eq!(a.code, ReasonCode::SUCCESS);
            assert_eq!(
                a.properties.receive_maximum,
                Some(defaults.limits.receive_maximum)
            );
            assert_eq!(
                a.properties.topic_alias_maximum,
                Some(defaults.limits.topic_alias_maximum)
            );
            assert_eq!(
                a.properties.maximum_packet_size,
                Some(defaults.limits.max_packet_size)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn multi_stream_examples() {
    match example("multi-stream.md", "82 09 00 01 00 00 03 64 2F 74 01", V5) {
        Packet::Subscribe(s) => {
            assert_eq!(
                (s.packet_id, &s.filters[0].0[..], s.filters[0].1.qos),
                (1, "d/t", QoS::AtLeastOnce)
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(example("multi-stream.md", "90 04 00 01 00 01", V5), Packet::SubAck(a) if a.codes == [ReasonCode::GRANTED_QOS_1])
    );
    match example("multi-stream.md", "32 0A 00 03 64 2F 74 00 01 00 68 69", V5) {
        Packet::Publish(p) => assert_eq!(
            (&p.topic[..], p.packet_id, &p.payload[..]),
            ("d/t", Some(1), &b"hi"[..])
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(example("multi-stream.md", "40 02 00 01", V5), Packet::PubAck(a) if a.packet_id == 1)
    );
    assert!(
        matches!(example("multi-stream.md", "A2 08 00 02 00 00 03 64 2F 74", V5), Packet::Unsubscribe(u) if u.filters == ["d/t"])
    );
    assert!(
        matches!(example("multi-stream.md", "B0 04 00 02 00 11", V5), Packet::UnsubAck(a) if a.codes == [ReasonCode::NO_SUBSCRIPTION_EXISTED])
    );
}

#[test]
fn flows_and_datagrams_examples() {
    // Flow headers are checked by the transport's own parser in src/codec/flow.rs; here
    // the document must show the bytes the tests of that parser use.
    let flows = doc("flows.md");
    for hex in [
        "12 02 41 2C 50",
        "11 00 00",
        "12 02 00 01",
        "14 02 68 69",
        "13 01 00 00",
    ] {
        assert!(flows.contains(hex), "flows.md lacks {hex}");
    }
    match example("datagrams.md", "30 09 00 04 64 67 2F 78 00 68 69", V5) {
        Packet::Publish(p) => {
            assert_eq!(
                (&p.topic[..], p.qos, &p.payload[..]),
                ("dg/x", QoS::AtMostOnce, &b"hi"[..])
            )
        }
        other => panic!("{other:?}"),
    }
    // The user property, as it sits in a CONNECT's property list.
    let property = "26 00 0E 71 75 69 63 2D 64 61 74 61 67 72 61 6D 73 00 02 6F 6E";
    assert!(doc("datagrams.md").contains(property));
    let b = bytes(property);
    assert_eq!(b[0], 0x26);
    assert_eq!(&b[3..17], b"quic-datagrams");
    assert_eq!(&b[19..], b"on");
}

#[test]
fn zero_rtt_examples() {
    match example(
        "zero-rtt.md",
        "10 14 00 04 4D 51 54 54 05 00 00 3C 05 11 00 00 0E 10 00 02 73 31",
        None,
    ) {
        Packet::Connect(c) => {
            assert_eq!(
                (c.protocol, &c.client_id[..], c.keep_alive, c.clean_start),
                (ProtocolVersion::V5, "s1", 60, false)
            );
            assert_eq!(c.properties.session_expiry_interval, Some(3600));
            assert!(c.will.is_none());
        }
        other => panic!("{other:?}"),
    }
    match example("zero-rtt.md", "82 09 00 01 00 00 03 73 2F 23 01", V5) {
        Packet::Subscribe(s) => assert_eq!(
            (s.packet_id, &s.filters[0].0[..], s.filters[0].1.qos),
            (1, "s/#", QoS::AtLeastOnce)
        ),
        other => panic!("{other:?}"),
    }
    match example(
        "zero-rtt.md",
        "20 0E 01 00 0B 21 04 00 22 00 0A 27 00 10 00 00",
        V5,
    ) {
        Packet::ConnAck(a) => {
            assert!(a.session_present);
            assert_eq!(a.code, ReasonCode::SUCCESS);
            let defaults = mqttd::Config::default();
            assert_eq!(
                a.properties.receive_maximum,
                Some(defaults.limits.receive_maximum)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(example("zero-rtt.md", "90 04 00 01 00 01", V5), Packet::SubAck(a) if a.codes == [ReasonCode::GRANTED_QOS_1])
    );
}

#[test]
fn migration_connection_id_example() {
    use mqttd::transport::cid::{CidLayout, UNROUTABLE};
    let hex = "2A 01 02 A1 A2 A3 A4 A5 A6 A7 A8";
    assert!(
        doc("migration.md").contains(hex),
        "migration.md lacks {hex}"
    );
    let cid = bytes(hex);
    let layout = CidLayout::new(Some(vec![0x01, 0x02]), 1);
    let nonce = [0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8];
    assert_eq!(layout.encode(&nonce), &cid[..]);
    let decoded = CidLayout::decode(&cid, 2).unwrap();
    assert_eq!(
        (decoded.config_id, decoded.server_id, decoded.nonce),
        (1, vec![0x01, 0x02], nonce.to_vec())
    );
    // "With no server id configured, the first octet ... is `E8`".
    let unroutable = CidLayout::new(None, 0);
    assert_eq!(unroutable.config_id, UNROUTABLE);
    assert_eq!(unroutable.first_octet(), 0xE8);
    assert!(doc("migration.md").contains("is `E8`"));
}

#[test]
fn webtransport_examples() {
    // A WebTransport datagram: the quarter stream ID (0), then one MQTT packet.
    let hex = "00 30 09 00 04 64 67 2F 78 00 68 69";
    assert!(doc("webtransport.md").contains(hex));
    let mut buf = bytes(hex);
    assert_eq!(buf.split_to(1)[0], 0, "quarter stream ID of stream 0");
    match codec::decode(&mut buf, V5, u32::MAX).unwrap().unwrap() {
        Packet::Publish(p) => {
            assert_eq!(
                (&p.topic[..], &p.payload[..], p.qos),
                ("dg/x", &b"hi"[..], QoS::AtMostOnce)
            );
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    assert!(buf.is_empty());
}
