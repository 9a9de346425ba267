//! Datagram target: a connected QUIC client sends arbitrary datagrams (one MQTT packet each,
//! classified by `transport::quic_datagrams`) while another subscribes to everything with
//! datagrams on. Never fatal to the connection, counted, and the broker stays consistent.

use bytes::BytesMut;
use bytestring::ByteString;

use super::broker::Sim;
use super::Input;
use crate::broker::StreamId;
use crate::codec::{self, Connect, Packet, PropertyValues, ProtocolVersion, Subscribe};

/// Input: a selector byte (bit 0: the sender speaks 3.1.1 instead of 5.0; bit 1: small
/// limits), then datagrams, each a length byte and its bytes.
pub fn datagram(data: &[u8]) {
    let mut input = Input::new(data);
    let selector = input.byte();
    let sender_version = if selector & 1 != 0 {
        ProtocolVersion::V3_1_1
    } else {
        ProtocolVersion::V5
    };
    let mut sim = Sim::new(super::broker::config(selector >> 1));
    sim.open(0, true, false);
    sim.open(1, true, false);
    let on = vec![(
        ByteString::from_static("quic-datagrams"),
        ByteString::from_static("on"),
    )];
    send(
        &mut sim,
        0,
        connect("sub", ProtocolVersion::V5, on.clone()),
        ProtocolVersion::V5,
    );
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: PropertyValues {
            user_properties: on,
            ..PropertyValues::default()
        }
        .into(),
        filters: vec![("#".into(), Default::default())],
    });
    send(&mut sim, 0, subscribe, ProtocolVersion::V5);
    send(
        &mut sim,
        1,
        connect("pub", sender_version, Vec::new()),
        sender_version,
    );
    sim.settle();
    let mut sent = 0u64;
    while !input.is_empty() {
        let bytes = input.chunk();
        sim.datagram(1, bytes);
        sim.settle();
        sent += 1;
    }
    let m = sim.broker.metrics();
    assert_eq!(m.connections, 2, "a datagram closed a connection");
    assert!(m.datagrams_received + m.datagrams_dropped <= sent);
}

fn connect(
    id: &'static str,
    protocol: ProtocolVersion,
    user_properties: Vec<(ByteString, ByteString)>,
) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol,
        clean_start: true,
        keep_alive: 0,
        properties: PropertyValues {
            user_properties,
            ..PropertyValues::default()
        }
        .into(),
        client_id: ByteString::from_static(id),
        will: None,
        username: None,
        password: None,
    }))
}

fn send(sim: &mut Sim, slot: usize, packet: Packet, version: ProtocolVersion) {
    let mut out = BytesMut::new();
    codec::encode(&packet, version, &mut out);
    sim.feed(slot, StreamId::CONTROL, &out);
}
