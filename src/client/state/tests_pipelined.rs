//! Requests pipelined between CONNECT and CONNACK (what 0-RTT early data carries).

use super::*;

#[test]
fn subscribe_and_qos0_publish_may_follow_connect_before_connack() {
    let now = Instant::now();
    let mut state = ClientState::new(connect_packet(ProtocolVersion::V5), now);
    // Before CONNECT nothing may be sent.
    assert!(matches!(
        state.subscribe(S0, Subscription::new().filter("a/#", QoS::AtLeastOnce), now),
        Err(ClientError::NotConnected)
    ));
    state.begin_connect(true, now);
    let op = state
        .subscribe(S0, Subscription::new().filter("a/#", QoS::AtLeastOnce), now)
        .unwrap();
    assert_eq!(
        state
            .publish(S0, Message::new("a/b", Bytes::from_static(b"early")), now)
            .unwrap(),
        None
    );
    // QoS 1/2 need the server's Receive Maximum: not before CONNACK.
    assert!(matches!(
        state.publish(
            S0,
            Message::new("a/b", Bytes::from_static(b"x")).qos(QoS::AtLeastOnce),
            now
        ),
        Err(ClientError::NotConnected)
    ));
    let sent = transmits(&mut state);
    assert!(matches!(sent[0], (_, Packet::Connect(_))));
    let packet_id = match &sent[1] {
        (_, Packet::Subscribe(s)) => s.packet_id,
        other => panic!("{other:?}"),
    };
    assert!(matches!(sent[2], (_, Packet::Publish(_))));

    // No session on the server: the pipelined SUBSCRIBE is not part of the session and
    // keeps its packet identifier.
    state
        .handle_packet(S0, connack(false, Properties::default()), now)
        .unwrap();
    let suback = Packet::SubAck(SubAck {
        packet_id,
        properties: Properties::default(),
        codes: vec![ReasonCode::GRANTED_QOS_1],
    });
    state.handle_packet(S0, suback, now).unwrap();
    let done = events(&mut state);
    assert!(
        done.iter().any(|e| matches!(
            e,
            Event::Completed { op: o, result: Ok(Completion::Subscribed(_)) } if *o == op
        )),
        "{done:?}"
    );
    // The identifier is free again and a new SUBSCRIBE does not collide with anything.
    state
        .subscribe(S0, Subscription::new().filter("b", QoS::AtMostOnce), now)
        .unwrap();
}

#[test]
fn a_pipelined_subscribe_fails_if_the_connection_is_lost_before_connack() {
    let now = Instant::now();
    let mut state = ClientState::new(connect_packet(ProtocolVersion::V5), now);
    state.begin_connect(true, now);
    let op = state
        .subscribe(S0, Subscription::new().filter("a", QoS::AtMostOnce), now)
        .unwrap();
    state.connection_lost();
    assert!(events(&mut state).iter().any(|e| matches!(
        e,
        Event::Completed { op: o, result: Err(Failure::ConnectionLost) } if *o == op
    )));
}
