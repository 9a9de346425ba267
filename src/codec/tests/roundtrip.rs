//! Property tests: every valid packet survives encode then decode unchanged, `encoded_len` is
//! exact, a packet fed in pieces decodes only once whole, and no input makes `decode` panic.

use bytes::BytesMut;
use proptest::prelude::*;

use super::super::{decode, encode, encoded_len, Packet, ProtocolVersion};
use super::strategies::packet;
use super::{V3_1, V3_1_1, V5};

fn encoded(packet: &Packet, v: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    encode(packet, v, &mut out);
    out
}

/// `p` written by reference with `alias` as its Topic Alias equals `p` with the alias set in
/// its properties, written as a packet.
fn check_alias(
    p: &crate::codec::Publish,
    alias: u16,
    v: ProtocolVersion,
) -> Result<(), TestCaseError> {
    let mut with_alias = p.clone();
    with_alias.properties.topic_alias = Some(alias);
    let whole = encoded(&Packet::Publish(with_alias), v);
    let mut by_ref = super::super::PublishRef::of(p);
    by_ref.topic_alias = Some(alias);
    let mut out = BytesMut::new();
    by_ref.encode(v, &mut out);
    prop_assert_eq!(&out[..], &whole[..]);
    prop_assert_eq!(by_ref.encoded_len(v), whole.len());
    Ok(())
}

/// The connection state in which `packet` is decoded.
fn context(packet: &Packet, v: ProtocolVersion) -> Option<ProtocolVersion> {
    match packet {
        Packet::Connect(_) => None,
        _ => Some(v),
    }
}

fn check_roundtrip(packet: &Packet, v: ProtocolVersion) -> Result<(), TestCaseError> {
    let mut buf = encoded(packet, v);
    prop_assert_eq!(buf.len(), encoded_len(packet, v));
    let decoded = decode(&mut buf, context(packet, v), u32::MAX);
    prop_assert_eq!(decoded, Ok(Some(packet.clone())));
    prop_assert!(buf.is_empty());
    Ok(())
}

/// Drains `buf` until it needs more bytes or fails; must never panic.
fn decode_everything(mut buf: BytesMut, version: Option<ProtocolVersion>, max: u32) {
    while let Ok(Some(_)) = decode(&mut buf, version, max) {}
}

fn any_context() -> impl Strategy<Value = Option<ProtocolVersion>> {
    prop_oneof![
        Just(None),
        Just(Some(V3_1)),
        Just(Some(V3_1_1)),
        Just(Some(V5))
    ]
}

proptest! {
    #[test]
    fn roundtrip_v5(packet in packet(V5)) {
        check_roundtrip(&packet, V5)?;
    }

    #[test]
    fn roundtrip_v3_1_1(packet in packet(V3_1_1)) {
        check_roundtrip(&packet, V3_1_1)?;
    }

    #[test]
    fn roundtrip_v3_1(packet in packet(V3_1)) {
        check_roundtrip(&packet, V3_1)?;
    }

    /// `PublishRef` (the broker's borrowed PUBLISH) writes the same bytes as the packet, and
    /// `frame_len` finds where each encoded packet ends.
    #[test]
    fn publish_ref_and_frame_len_agree_with_the_packet(
        packet in packet(V5),
        v in prop_oneof![Just(V3_1_1), Just(V5)],
    ) {
        let whole = encoded(&packet, v);
        prop_assert_eq!(super::super::frame_len(&whole), Some(whole.len()));
        prop_assert_eq!(super::super::frame_len(&whole[..1]), None);
        if let Packet::Publish(p) = &packet {
            let by_ref = super::super::PublishRef::of(p);
            let mut out = BytesMut::new();
            by_ref.encode(v, &mut out);
            prop_assert_eq!(&out[..], &whole[..]);
            prop_assert_eq!(by_ref.encoded_len(v), whole.len());
            // Encoding with the length measured before writes the same bytes.
            let mut measured = BytesMut::new();
            by_ref.encode_measured(v, by_ref.encoded_len(v), &mut measured);
            prop_assert_eq!(&measured[..], &whole[..]);
        }
    }

    /// A `PublishRef` with its own Topic Alias writes the bytes of the packet whose properties
    /// hold that alias (the broker's per-connection alias, without cloning the properties),
    /// whether the packet had properties or none at all.
    #[test]
    fn publish_ref_with_alias_agrees_with_the_packet(
        packet in packet(V5),
        alias in 1u16..,
        v in prop_oneof![Just(V3_1_1), Just(V5)],
    ) {
        if let Packet::Publish(p) = &packet {
            let mut shared = p.clone();
            shared.properties.topic_alias = None;
            check_alias(&shared, alias, v)?;
            // Unallocated properties (none ever set) take the encoder's fast path.
            let bare = crate::codec::Publish { properties: Default::default(), ..shared };
            check_alias(&bare, alias, v)?;
        }
    }

    #[test]
    fn encoding_appends(first in packet(V5), second in packet(V5)) {
        let mut out = encoded(&first, V5);
        encode(&second, V5, &mut out);
        prop_assert_eq!(out.len(), encoded_len(&first, V5) + encoded_len(&second, V5));
    }

    #[test]
    fn split_anywhere_decodes_once_whole(packet in packet(V5), cut in any::<prop::sample::Index>()) {
        let whole = encoded(&packet, V5);
        let cut = cut.index(whole.len());
        let mut buf = BytesMut::from(&whole[..cut]);
        prop_assert_eq!(decode(&mut buf, context(&packet, V5), u32::MAX), Ok(None));
        prop_assert_eq!(buf.len(), cut);
        buf.extend_from_slice(&whole[cut..]);
        prop_assert_eq!(decode(&mut buf, context(&packet, V5), u32::MAX), Ok(Some(packet)));
    }

    #[test]
    fn random_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        version in any_context(),
        max in prop_oneof![Just(u32::MAX), 0u32..300],
    ) {
        decode_everything(BytesMut::from(&bytes[..]), version, max);
    }

    #[test]
    fn mutated_packets_never_panic(
        (v, packet) in prop_oneof![
            packet(V5).prop_map(|p| (V5, p)),
            packet(V3_1_1).prop_map(|p| (V3_1_1, p)),
        ],
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        version in any_context(),
    ) {
        let mut buf = encoded(&packet, v);
        for (at, byte) in edits {
            let i = at.index(buf.len());
            buf[i] = byte;
        }
        decode_everything(buf, version, u32::MAX);
    }
}

/// `encode_measured` finds the body length on both sides of every variable byte integer
/// boundary of the remaining length (127/128, 16,383/16,384 bytes).
#[test]
fn encode_measured_across_remaining_length_boundaries() {
    let sizes = (100..140).chain(16_340..16_400).chain(2_097_100..2_097_160);
    for size in sizes {
        let payload = vec![7u8; size];
        let properties = crate::codec::Properties::default();
        let p = super::super::PublishRef {
            dup: false,
            qos: crate::codec::QoS::AtLeastOnce,
            retain: false,
            topic: b"a/b",
            packet_id: Some(9),
            properties: &properties,
            topic_alias: None,
            payload: &payload,
        };
        for v in [V3_1_1, V5] {
            let mut plain = BytesMut::new();
            p.encode(v, &mut plain);
            let mut measured = BytesMut::new();
            p.encode_measured(v, p.encoded_len(v), &mut measured);
            assert_eq!(plain, measured, "payload of {size} bytes, {v:?}");
        }
    }
}
