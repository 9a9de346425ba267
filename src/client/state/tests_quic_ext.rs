//! Datagrams and server streams in the state machine (`proto-ext/datagrams.md`,
//! `proto-ext/flows.md` section 7).

use super::*;

#[test]
fn qos0_asking_for_a_datagram_goes_to_the_datagram_key_once_connected() {
    let now = Instant::now();
    let mut state = ClientState::new(connect_packet(ProtocolVersion::V5), now);
    state.begin_connect(true, now);
    let _connect = state.poll_transmit();
    // Before CONNACK the server drops datagrams: it rides behind the CONNECT.
    let early = Message::new("d/x", Bytes::from_static(b"early")).datagram(true);
    state.publish(S0, early, now).unwrap();
    assert!(matches!(
        state.poll_transmit(),
        Some((S0, Packet::Publish(_)))
    ));
    state
        .handle_packet(S0, connack(false, Properties::default()), now)
        .unwrap();
    events(&mut state);
    let q0 = Message::new("d/x", Bytes::from_static(b"dg")).datagram(true);
    state.publish(S0, q0, now).unwrap();
    assert!(matches!(
        transmits(&mut state).as_slice(),
        [(StreamKey::DATAGRAM, Packet::Publish(p))] if p.qos == QoS::AtMostOnce && p.properties.topic_alias.is_none()
    ));
    // QoS 1 never goes in a datagram.
    let q1 = Message::new("d/x", Bytes::from_static(b"q1"))
        .qos(QoS::AtLeastOnce)
        .datagram(true);
    state.publish(S0, q1, now).unwrap();
    assert!(matches!(
        transmits(&mut state).as_slice(),
        [(S0, Packet::Publish(p))] if p.qos == QoS::AtLeastOnce
    ));
    // Without the flag: the stream.
    state
        .publish(S0, Message::new("d/x", Bytes::from_static(b"s")), now)
        .unwrap();
    assert!(matches!(transmits(&mut state).as_slice(), [(S0, _)]));
}

#[test]
fn only_a_qos0_publish_without_alias_is_taken_from_a_datagram() {
    let (mut state, now) = v5();
    assert!(state.handle_datagram(Packet::Publish(incoming("d/1", QoS::AtMostOnce, None)), now));
    let (message, ack) = message_event(&mut state);
    assert_eq!((message.topic.as_ref(), ack), ("d/1", None));
    let q1 = incoming("d/1", QoS::AtLeastOnce, Some(7));
    assert!(!state.handle_datagram(Packet::Publish(q1), now));
    let mut aliased = incoming("d/1", QoS::AtMostOnce, None);
    aliased.properties.topic_alias = Some(1);
    assert!(!state.handle_datagram(Packet::Publish(aliased), now));
    assert!(!state.handle_datagram(Packet::PingResp, now));
    // Dropped, not fatal: nothing delivered, nothing sent, still connected.
    assert!(events(&mut state).is_empty());
    assert!(transmits(&mut state).is_empty());
    assert!(state.is_connected());
}

#[test]
fn server_stream_deliveries_are_acknowledged_on_the_control_stream() {
    let (mut state, now) = v5();
    let server = StreamKey::server(3);
    state.open_server_stream(server).unwrap();
    state
        .handle_packet(
            server,
            Packet::Publish(incoming("t/1", QoS::AtLeastOnce, Some(5))),
            now,
        )
        .unwrap();
    let token = match events(&mut state).as_slice() {
        [Event::Message {
            stream,
            ack: Some(token),
            ..
        }] if *stream == server => *token,
        other => panic!("expected a message on the server stream, got {other:?}"),
    };
    state.acknowledge(token, now);
    assert!(matches!(
        transmits(&mut state).as_slice(),
        [(S0, Packet::PubAck(a))] if a.packet_id == 5
    ));
    // QoS 2: PUBREC on the control stream too, PUBREL arrives there.
    state
        .handle_packet(
            server,
            Packet::Publish(incoming("t/1", QoS::ExactlyOnce, Some(6))),
            now,
        )
        .unwrap();
    let (_, token) = message_event(&mut state);
    state.acknowledge(token.unwrap(), now);
    assert!(matches!(
        transmits(&mut state).as_slice(),
        [(S0, Packet::PubRec(_))]
    ));
    // The stream ends: the connection lives on.
    state.stream_closed(server, now);
    assert!(state.is_connected());
}

#[test]
fn a_server_stream_carries_publish_only_and_never_an_alias() {
    let (mut state, now) = v5();
    let server = StreamKey::server(1);
    state.open_server_stream(server).unwrap();
    let error = state
        .handle_packet(server, Packet::PingResp, now)
        .unwrap_err();
    assert!(matches!(
        error,
        ClientError::Protocol {
            code: ReasonCode::PROTOCOL_ERROR,
            ..
        }
    ));

    let (mut state, now) = v5();
    state.open_server_stream(server).unwrap();
    let mut aliased = incoming("t/1", QoS::AtMostOnce, None);
    aliased.properties.topic_alias = Some(1);
    assert!(state
        .handle_packet(server, Packet::Publish(aliased), now)
        .is_err());
}
