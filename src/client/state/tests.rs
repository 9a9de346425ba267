//! The client state machine in memory: every flow driven packet by packet, with a fake clock.

use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use super::*;
use crate::client::types::{Message, Subscription};
use crate::codec::{Ack, ConnAck, Properties, Publish, SubAck, UnsubAck};

const S0: StreamKey = StreamKey::CONTROL;

fn connect_packet(version: ProtocolVersion) -> Connect {
    let mut properties = Properties::default();
    if version.is_v5() {
        properties.session_expiry_interval = Some(300);
        properties.receive_maximum = Some(4);
        properties.topic_alias_maximum = Some(8);
    }
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 10,
        properties,
        client_id: "test".into(),
        will: None,
        username: None,
        password: None,
    }
}

fn connack(session_present: bool, properties: Properties) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present,
        code: ReasonCode::SUCCESS,
        properties,
    })
}

/// A state machine connected with `version`, the CONNECT and the Connected event drained.
fn connected(version: ProtocolVersion, server: Properties) -> (ClientState, Instant) {
    let now = Instant::now();
    let mut state = ClientState::new(connect_packet(version), now);
    state.begin_connect(true, now);
    let (stream, packet) = state.poll_transmit().expect("CONNECT");
    assert_eq!(stream, S0);
    assert!(matches!(packet, Packet::Connect(c) if c.clean_start));
    state
        .handle_packet(S0, connack(false, server), now)
        .expect("CONNACK accepted");
    assert!(matches!(state.poll_event(), Some(Event::Connected(_))));
    assert!(state.poll_transmit().is_none());
    (state, now)
}

fn v5() -> (ClientState, Instant) {
    connected(ProtocolVersion::V5, Properties::default())
}

fn transmits(state: &mut ClientState) -> Vec<(StreamKey, Packet)> {
    std::iter::from_fn(|| state.poll_transmit()).collect()
}

fn events(state: &mut ClientState) -> Vec<Event> {
    std::iter::from_fn(|| state.poll_event()).collect()
}

fn sent_publish(state: &mut ClientState) -> Publish {
    match transmits(state).as_slice() {
        [(_, Packet::Publish(p))] => p.clone(),
        other => panic!("expected one PUBLISH, got {other:?}"),
    }
}

fn ack(id: u16) -> Ack {
    Ack::new(id)
}

fn ack_with(id: u16, code: ReasonCode) -> Ack {
    Ack {
        packet_id: id,
        code,
        properties: Properties::default(),
    }
}

fn published(op: OpId, id: u16, code: ReasonCode) -> Event {
    Event::Completed {
        op,
        result: Ok(Completion::Published(PublishOutcome {
            packet_id: Some(id),
            code,
            reason_string: None,
        })),
    }
}

fn incoming(topic: &str, qos: QoS, id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: id,
        properties: Properties::default(),
        payload: Bytes::from_static(b"hello"),
    }
}

fn message_event(state: &mut ClientState) -> (ReceivedMessage, Option<AckToken>) {
    match events(state).as_slice() {
        [Event::Message { message, ack, .. }] => (message.clone(), *ack),
        other => panic!("expected one message, got {other:?}"),
    }
}

#[test]
fn connack_reports_the_server_limits_and_keep_alive() {
    let now = Instant::now();
    let mut state = ClientState::new(connect_packet(ProtocolVersion::V5), now);
    assert!(!state.is_connected());
    assert!(matches!(
        state.publish(S0, Message::new("a", "b"), now),
        Err(ClientError::NotConnected)
    ));
    state.begin_connect(true, now);
    transmits(&mut state);
    let server = Properties::from(crate::codec::PropertyValues {
        receive_maximum: Some(10),
        maximum_qos: Some(1),
        retain_available: Some(0),
        maximum_packet_size: Some(1000),
        server_keep_alive: Some(30),
        topic_alias_maximum: Some(5),
        ..crate::codec::PropertyValues::default()
    });
    state
        .handle_packet(S0, connack(false, server), now)
        .unwrap();
    let Some(Event::Connected(c)) = state.poll_event() else {
        panic!("no Connected event")
    };
    assert!(!c.session_present);
    assert_eq!(c.keep_alive, Duration::from_secs(30));
    assert_eq!(c.limits.receive_maximum, 10);
    assert_eq!(c.limits.maximum_qos, QoS::AtLeastOnce);
    assert!(!c.limits.retain_available);
    assert_eq!(c.limits.maximum_packet_size, Some(1000));
    assert_eq!(c.client_id, "test");
    // [MQTT-3.2.2-21] the Server Keep Alive replaces ours.
    assert_eq!(state.poll_timeout(), Some(now + Duration::from_secs(30)));
}

#[test]
fn refused_connack_is_an_error_with_its_code() {
    let now = Instant::now();
    let mut state = ClientState::new(connect_packet(ProtocolVersion::V3_1_1), now);
    state.begin_connect(true, now);
    transmits(&mut state);
    let refusal = Packet::ConnAck(ConnAck {
        session_present: false,
        code: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        properties: Properties::default(),
    });
    let error = state.handle_packet(S0, refusal, now).unwrap_err();
    assert_eq!(
        error.to_string(),
        "server refused the connection: 0x86 bad user name or password"
    );
    assert!(!state.is_connected());
}

#[test]
fn anything_but_connack_first_is_a_protocol_error() {
    let now = Instant::now();
    let mut state = ClientState::new(connect_packet(ProtocolVersion::V5), now);
    state.begin_connect(true, now);
    transmits(&mut state);
    let error = state.handle_packet(S0, Packet::PingResp, now).unwrap_err();
    assert!(matches!(
        error,
        ClientError::Protocol {
            code: ReasonCode::PROTOCOL_ERROR,
            ..
        }
    ));
    // 5.0: the client says why before closing [MQTT-4.13.1-1].
    assert!(matches!(
        transmits(&mut state).as_slice(),
        [(_, Packet::Disconnect(d))] if d.code == ReasonCode::PROTOCOL_ERROR
    ));
}

#[test]
fn session_present_after_clean_start_is_a_protocol_error() {
    let now = Instant::now();
    let mut state = ClientState::new(connect_packet(ProtocolVersion::V3_1_1), now);
    state.begin_connect(true, now);
    transmits(&mut state);
    let error = state.handle_packet(S0, connack(true, Properties::default()), now);
    assert!(matches!(error, Err(ClientError::Protocol { .. })));
}

#[test]
fn qos0_is_sent_at_once_and_completes_immediately() {
    let (mut state, now) = v5();
    let op = state.publish(S0, Message::new("a/b", "x"), now).unwrap();
    assert_eq!(op, None);
    let p = sent_publish(&mut state);
    assert_eq!(
        (p.qos, p.packet_id, &*p.topic),
        (QoS::AtMostOnce, None, "a/b")
    );
    assert!(events(&mut state).is_empty());
}

#[test]
fn qos1_completes_on_puback() {
    let (mut state, now) = v5();
    let msg = Message::new("a/b", "x").qos(QoS::AtLeastOnce);
    let op = state.publish(S0, msg, now).unwrap().expect("an operation");
    let p = sent_publish(&mut state);
    assert_eq!(p.packet_id, Some(1));
    assert!(!p.dup);
    assert!(events(&mut state).is_empty());
    // PUBACK for another identifier is ignored.
    state
        .handle_packet(S0, Packet::PubAck(ack(9)), now)
        .unwrap();
    assert!(events(&mut state).is_empty());
    state
        .handle_packet(
            S0,
            Packet::PubAck(ack_with(1, ReasonCode::NO_MATCHING_SUBSCRIBERS)),
            now,
        )
        .unwrap();
    assert_eq!(
        events(&mut state),
        vec![published(op, 1, ReasonCode::NO_MATCHING_SUBSCRIBERS)]
    );
    assert_eq!(state.unacknowledged(), 0);
}

#[test]
fn qos2_goes_through_pubrec_pubrel_pubcomp() {
    let (mut state, now) = v5();
    let msg = Message::new("a/b", "x").qos(QoS::ExactlyOnce);
    let op = state.publish(S0, msg, now).unwrap().unwrap();
    let id = sent_publish(&mut state).packet_id.unwrap();
    // [MQTT-4.3.3-3] PUBREC is answered with PUBREL.
    state
        .handle_packet(S0, Packet::PubRec(ack(id)), now)
        .unwrap();
    assert_eq!(transmits(&mut state), vec![(S0, Packet::PubRel(ack(id)))]);
    // A duplicate PUBREC gets the PUBREL again.
    state
        .handle_packet(S0, Packet::PubRec(ack(id)), now)
        .unwrap();
    assert_eq!(transmits(&mut state), vec![(S0, Packet::PubRel(ack(id)))]);
    assert!(events(&mut state).is_empty());
    state
        .handle_packet(S0, Packet::PubComp(ack(id)), now)
        .unwrap();
    assert_eq!(
        events(&mut state),
        vec![published(op, id, ReasonCode::SUCCESS)]
    );
    // Unknown PUBREC: PUBREL 0x92.
    state
        .handle_packet(S0, Packet::PubRec(ack(77)), now)
        .unwrap();
    assert_eq!(
        transmits(&mut state),
        vec![(
            S0,
            Packet::PubRel(ack_with(77, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND))
        )]
    );
}

#[test]
fn pubrec_with_an_error_ends_the_flow_without_pubrel() {
    let (mut state, now) = v5();
    let op = state
        .publish(S0, Message::new("a", "x").qos(QoS::ExactlyOnce), now)
        .unwrap()
        .unwrap();
    transmits(&mut state);
    state
        .handle_packet(
            S0,
            Packet::PubRec(ack_with(1, ReasonCode::NOT_AUTHORIZED)),
            now,
        )
        .unwrap();
    assert!(transmits(&mut state).is_empty());
    assert_eq!(
        events(&mut state),
        vec![published(op, 1, ReasonCode::NOT_AUTHORIZED)]
    );
}

#[test]
fn packet_ids_are_unique_across_publish_subscribe_and_unsubscribe() {
    let (mut state, now) = v5();
    let q1 = Message::new("a", "x").qos(QoS::AtLeastOnce);
    state.publish(S0, q1.clone(), now).unwrap();
    state
        .subscribe(S0, Subscription::new().filter("x/#", QoS::AtLeastOnce), now)
        .unwrap();
    state
        .unsubscribe(S0, vec!["y".into()], Properties::default(), now)
        .unwrap();
    let ids: Vec<u16> = transmits(&mut state)
        .into_iter()
        .map(|(_, p)| match p {
            Packet::Publish(p) => p.packet_id.unwrap(),
            Packet::Subscribe(s) => s.packet_id,
            Packet::Unsubscribe(u) => u.packet_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(state.ids.in_use(), 3);
    state
        .handle_packet(S0, Packet::PubAck(ack(1)), now)
        .unwrap();
    assert_eq!(state.ids.in_use(), 2);
    state.publish(S0, q1, now).unwrap();
    assert_eq!(sent_publish(&mut state).packet_id, Some(4));
}

#[test]
fn suback_and_unsuback_complete_with_their_codes() {
    let (mut state, now) = v5();
    let sub = Subscription::new()
        .filter("a/#", QoS::ExactlyOnce)
        .filter("b", QoS::AtMostOnce)
        .id(7);
    let op = state.subscribe(S0, sub, now).unwrap();
    let sent = transmits(&mut state);
    let [(_, Packet::Subscribe(s))] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(s.properties.subscription_identifiers, vec![7]);
    let codes = vec![ReasonCode::GRANTED_QOS_2, ReasonCode::TOPIC_FILTER_INVALID];
    let suback = SubAck {
        packet_id: s.packet_id,
        properties: Properties::default(),
        codes: codes.clone(),
    };
    state
        .handle_packet(S0, Packet::SubAck(suback), now)
        .unwrap();
    let expected = Acknowledged {
        codes,
        properties: Properties::default(),
    };
    assert_eq!(
        events(&mut state),
        vec![Event::Completed {
            op,
            result: Ok(Completion::Subscribed(expected))
        }]
    );

    // A SUBACK with the wrong number of codes is a protocol error [MQTT-3.9.3-1].
    let op = state
        .subscribe(S0, Subscription::new().filter("c", QoS::AtMostOnce), now)
        .unwrap();
    let _ = op;
    let id = match transmits(&mut state).as_slice() {
        [(_, Packet::Subscribe(s))] => s.packet_id,
        other => panic!("{other:?}"),
    };
    let bad = SubAck {
        packet_id: id,
        properties: Properties::default(),
        codes: vec![],
    };
    assert!(matches!(
        state.handle_packet(S0, Packet::SubAck(bad), now),
        Err(ClientError::Protocol { .. })
    ));
}

#[test]
fn v3_unsuback_means_success_for_every_filter() {
    let (mut state, now) = connected(ProtocolVersion::V3_1_1, Properties::default());
    let op = state
        .unsubscribe(
            S0,
            vec!["a".into(), "b/+".into()],
            Properties::default(),
            now,
        )
        .unwrap();
    let id = match transmits(&mut state).as_slice() {
        [(_, Packet::Unsubscribe(u))] => u.packet_id,
        other => panic!("{other:?}"),
    };
    let unsuback = UnsubAck {
        packet_id: id,
        properties: Properties::default(),
        codes: vec![],
    };
    state
        .handle_packet(S0, Packet::UnsubAck(unsuback), now)
        .unwrap();
    let expected = Acknowledged {
        codes: vec![ReasonCode::SUCCESS; 2],
        properties: Properties::default(),
    };
    assert_eq!(
        events(&mut state),
        vec![Event::Completed {
            op,
            result: Ok(Completion::Unsubscribed(expected))
        }]
    );
}

#[test]
fn the_servers_receive_maximum_holds_publishes_back() {
    let server = Properties::from(crate::codec::PropertyValues {
        receive_maximum: Some(2),
        ..crate::codec::PropertyValues::default()
    });
    let (mut state, now) = connected(ProtocolVersion::V5, server);
    let msg = Message::new("a", "x").qos(QoS::AtLeastOnce);
    let ops: Vec<OpId> = (0..3)
        .map(|_| state.publish(S0, msg.clone(), now).unwrap().unwrap())
        .collect();
    // [MQTT-3.3.4-7] only two are sent.
    assert_eq!(transmits(&mut state).len(), 2);
    assert_eq!(state.unacknowledged(), 3);
    // QoS 0 is not limited.
    state.publish(S0, Message::new("a", "q0"), now).unwrap();
    assert_eq!(transmits(&mut state).len(), 1);
    state
        .handle_packet(S0, Packet::PubAck(ack(1)), now)
        .unwrap();
    assert_eq!(
        events(&mut state),
        vec![published(ops[0], 1, ReasonCode::SUCCESS)]
    );
    let third = sent_publish(&mut state);
    assert_eq!(third.packet_id, Some(3));
}

#[test]
fn requests_beyond_the_servers_limits_are_refused_locally() {
    let server = Properties::from(crate::codec::PropertyValues {
        maximum_qos: Some(1),
        retain_available: Some(0),
        maximum_packet_size: Some(64),
        subscription_identifier_available: Some(0),
        ..crate::codec::PropertyValues::default()
    });
    let (mut state, now) = connected(ProtocolVersion::V5, server);
    let refuse = |state: &mut ClientState, msg: Message| {
        let error = state.publish(S0, msg, now).unwrap_err();
        assert!(matches!(error, ClientError::InvalidRequest(_)), "{error}");
        error.to_string()
    };
    let text = refuse(&mut state, Message::new("a", "x").qos(QoS::ExactlyOnce));
    assert!(text.contains("maximum QoS 1"), "{text}");
    refuse(&mut state, Message::new("a", "x").retain(true));
    let text = refuse(&mut state, Message::new("a", vec![0u8; 100]));
    assert!(text.contains("maximum packet size of 64"), "{text}");
    refuse(&mut state, Message::new("a/+", "x"));
    refuse(&mut state, Message::new("", "x"));
    refuse(&mut state, Message::new("a", vec![0xFFu8]).utf8_payload());
    let sub = Subscription::new().filter("a", QoS::AtMostOnce).id(3);
    assert!(state.subscribe(S0, sub, now).is_err());
    let bad = Subscription::new().filter("a/#/b", QoS::AtMostOnce);
    assert!(state.subscribe(S0, bad, now).is_err());
    assert!(state.subscribe(S0, Subscription::new(), now).is_err());
    assert!(transmits(&mut state).is_empty());
}

/// Connects a fresh or resumed session again after `connection_lost`.
fn reconnect(
    state: &mut ClientState,
    session_present: bool,
    now: Instant,
) -> Vec<(StreamKey, Packet)> {
    state.begin_connect(false, now);
    let sent = transmits(state);
    assert!(matches!(sent.as_slice(), [(_, Packet::Connect(c))] if !c.clean_start));
    state
        .handle_packet(S0, connack(session_present, Properties::default()), now)
        .unwrap();
    transmits(state)
}

#[test]
fn a_resumed_session_resends_inflight_with_dup_in_order() {
    let (mut state, now) = v5();
    let op1 = state
        .publish(S0, Message::new("one", "1").qos(QoS::ExactlyOnce), now)
        .unwrap()
        .unwrap();
    let op2 = state
        .publish(S0, Message::new("two", "2").qos(QoS::AtLeastOnce), now)
        .unwrap()
        .unwrap();
    let op3 = state
        .publish(S0, Message::new("three", "3").qos(QoS::ExactlyOnce), now)
        .unwrap()
        .unwrap();
    let sub = state
        .subscribe(S0, Subscription::new().filter("s", QoS::AtMostOnce), now)
        .unwrap();
    transmits(&mut state);
    // The first QoS 2 message reached PUBREL.
    state
        .handle_packet(S0, Packet::PubRec(ack(1)), now)
        .unwrap();
    transmits(&mut state);

    state.connection_lost();
    let failed: Vec<OpId> = events(&mut state)
        .into_iter()
        .map(|e| match e {
            Event::Completed {
                op,
                result: Err(Failure::ConnectionLost),
            } => op,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(failed.len(), 4);
    for op in [op1, op2, op3, sub] {
        assert!(failed.contains(&op));
    }
    assert_eq!(
        state.unacknowledged(),
        3,
        "the messages stay in the session"
    );

    // [MQTT-4.4.0-1] PUBREL for 1, PUBLISH with DUP for 2 and 3, original identifiers.
    let resent = reconnect(&mut state, true, now);
    let expected_ids = [1u16, 2, 3];
    assert_eq!(resent.len(), 3);
    assert_eq!(resent[0], (S0, Packet::PubRel(ack(1))));
    for ((_, packet), id) in resent.iter().skip(1).zip(&expected_ids[1..]) {
        match packet {
            Packet::Publish(p) => {
                assert!(p.dup, "DUP set on retransmission [MQTT-3.3.1-1]");
                assert_eq!(p.packet_id, Some(*id));
            }
            other => panic!("{other:?}"),
        }
    }
    // Completing them reports nothing: nobody waits any more.
    state
        .handle_packet(S0, Packet::PubComp(ack(1)), now)
        .unwrap();
    state
        .handle_packet(S0, Packet::PubAck(ack(2)), now)
        .unwrap();
    assert!(matches!(events(&mut state).as_slice(), [Event::Connected(c)] if c.session_present));
    assert_eq!(state.unacknowledged(), 1);
}

#[test]
fn a_session_the_server_lost_is_discarded() {
    let (mut state, now) = v5();
    state
        .publish(S0, Message::new("a", "x").qos(QoS::AtLeastOnce), now)
        .unwrap();
    transmits(&mut state);
    state.connection_lost();
    events(&mut state);
    // [MQTT-3.2.2-5] Session Present 0: nothing is resent.
    assert!(reconnect(&mut state, false, now).is_empty());
    assert_eq!(state.unacknowledged(), 0);
}

#[test]
fn without_session_expiry_the_session_ends_with_the_connection() {
    let now = Instant::now();
    let mut connect = connect_packet(ProtocolVersion::V5);
    connect.properties.session_expiry_interval = None;
    let mut state = ClientState::new(connect, now);
    state.begin_connect(true, now);
    state
        .handle_packet(S0, connack(false, Properties::default()), now)
        .unwrap();
    state
        .publish(S0, Message::new("a", "x").qos(QoS::AtLeastOnce), now)
        .unwrap();
    state.connection_lost();
    assert_eq!(state.unacknowledged(), 0);

    // 3.1.1 with clean session 0 keeps it.
    let (mut v3, now) = connected(ProtocolVersion::V3_1_1, Properties::default());
    v3.connection_lost();
    v3.begin_connect(false, now);
    v3.handle_packet(S0, connack(false, Properties::default()), now)
        .unwrap();
    v3.publish(S0, Message::new("a", "x").qos(QoS::AtLeastOnce), now)
        .unwrap();
    v3.connection_lost();
    assert_eq!(v3.unacknowledged(), 1);
}

#[test]
fn the_server_may_lower_the_session_expiry() {
    let server = Properties::from(crate::codec::PropertyValues {
        session_expiry_interval: Some(0),
        ..crate::codec::PropertyValues::default()
    });
    let (mut state, now) = connected(ProtocolVersion::V5, server);
    state
        .publish(S0, Message::new("a", "x").qos(QoS::AtLeastOnce), now)
        .unwrap();
    state.connection_lost();
    assert_eq!(state.unacknowledged(), 0);
}

#[test]
fn incoming_qos1_is_acknowledged_once_queued() {
    let (mut state, now) = v5();
    let publish = incoming("t", QoS::AtLeastOnce, Some(5));
    state
        .handle_packet(S0, Packet::Publish(publish.clone()), now)
        .unwrap();
    let (message, token) = message_event(&mut state);
    assert_eq!(
        (&*message.topic, &message.payload[..]),
        ("t", &b"hello"[..])
    );
    assert!(
        transmits(&mut state).is_empty(),
        "no PUBACK before the application has it"
    );
    // A retransmission before that is not delivered twice.
    state
        .handle_packet(S0, Packet::Publish(publish), now)
        .unwrap();
    assert!(events(&mut state).is_empty());
    state.acknowledge(token.unwrap(), now);
    assert_eq!(transmits(&mut state), vec![(S0, Packet::PubAck(ack(5)))]);
    // Acknowledging twice sends nothing more.
    state.acknowledge(token.unwrap(), now);
    assert!(transmits(&mut state).is_empty());
}

#[test]
fn incoming_qos2_is_delivered_once() {
    let (mut state, now) = v5();
    let publish = incoming("t", QoS::ExactlyOnce, Some(9));
    state
        .handle_packet(S0, Packet::Publish(publish.clone()), now)
        .unwrap();
    let (_, token) = message_event(&mut state);
    state.acknowledge(token.unwrap(), now);
    assert_eq!(transmits(&mut state), vec![(S0, Packet::PubRec(ack(9)))]);
    // [MQTT-4.3.3-10] a retransmission is acknowledged again but not delivered.
    let mut dup = publish.clone();
    dup.dup = true;
    state.handle_packet(S0, Packet::Publish(dup), now).unwrap();
    assert!(events(&mut state).is_empty());
    assert_eq!(transmits(&mut state), vec![(S0, Packet::PubRec(ack(9)))]);
    // [MQTT-4.3.3-11] PUBREL -> PUBCOMP; then the identifier names a new message.
    state
        .handle_packet(S0, Packet::PubRel(ack(9)), now)
        .unwrap();
    assert_eq!(transmits(&mut state), vec![(S0, Packet::PubComp(ack(9)))]);
    state
        .handle_packet(S0, Packet::Publish(publish), now)
        .unwrap();
    assert_eq!(message_event(&mut state).0.topic, "t");
    // PUBREL for an unknown identifier: PUBCOMP 0x92.
    state
        .handle_packet(S0, Packet::PubRel(ack(40)), now)
        .unwrap();
    assert_eq!(
        transmits(&mut state),
        vec![(
            S0,
            Packet::PubComp(ack_with(40, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND))
        )]
    );
}

#[test]
fn a_qos2_awaiting_pubrel_survives_reconnection() {
    let (mut state, now) = v5();
    state
        .handle_packet(
            S0,
            Packet::Publish(incoming("t", QoS::ExactlyOnce, Some(3))),
            now,
        )
        .unwrap();
    let (_, token) = message_event(&mut state);
    state.acknowledge(token.unwrap(), now);
    // A QoS 1 not yet acknowledged when the connection drops is forgotten, to be delivered
    // again; its stale token must not acknowledge the retransmission's successor.
    state
        .handle_packet(
            S0,
            Packet::Publish(incoming("u", QoS::AtLeastOnce, Some(4))),
            now,
        )
        .unwrap();
    let (_, stale) = message_event(&mut state);
    transmits(&mut state);
    state.connection_lost();
    reconnect(&mut state, true, now);
    events(&mut state);
    state.acknowledge(stale.unwrap(), now);
    assert!(transmits(&mut state).is_empty());
    let mut dup = incoming("t", QoS::ExactlyOnce, Some(3));
    dup.dup = true;
    state.handle_packet(S0, Packet::Publish(dup), now).unwrap();
    assert!(events(&mut state).is_empty(), "not delivered twice");
    state
        .handle_packet(
            S0,
            Packet::Publish(incoming("u", QoS::AtLeastOnce, Some(4))),
            now,
        )
        .unwrap();
    assert_eq!(message_event(&mut state).0.topic, "u");
}

#[test]
fn topic_aliases_from_the_server_are_resolved() {
    let (mut state, now) = v5();
    let mut first = incoming("long/topic/name", QoS::AtMostOnce, None);
    first.properties.topic_alias = Some(2);
    state
        .handle_packet(S0, Packet::Publish(first), now)
        .unwrap();
    let (message, _) = message_event(&mut state);
    assert_eq!(message.topic, "long/topic/name");
    assert_eq!(message.properties.topic_alias, None, "the alias is per hop");
    let mut alias_only = incoming("", QoS::AtMostOnce, None);
    alias_only.properties.topic_alias = Some(2);
    state
        .handle_packet(S0, Packet::Publish(alias_only.clone()), now)
        .unwrap();
    assert_eq!(message_event(&mut state).0.topic, "long/topic/name");
    // Re-mapping an alias.
    let mut remap = incoming("other", QoS::AtMostOnce, None);
    remap.properties.topic_alias = Some(2);
    state
        .handle_packet(S0, Packet::Publish(remap), now)
        .unwrap();
    events(&mut state);
    state
        .handle_packet(S0, Packet::Publish(alias_only), now)
        .unwrap();
    assert_eq!(message_event(&mut state).0.topic, "other");

    // An alias never set is a protocol error.
    let mut unknown = incoming("", QoS::AtMostOnce, None);
    unknown.properties.topic_alias = Some(3);
    let error = state
        .handle_packet(S0, Packet::Publish(unknown), now)
        .unwrap_err();
    assert!(matches!(
        error,
        ClientError::Protocol {
            code: ReasonCode::PROTOCOL_ERROR,
            ..
        }
    ));
}

#[test]
fn aliases_above_our_maximum_are_refused_and_forgotten_on_reconnect() {
    let (mut state, now) = v5();
    let mut too_big = incoming("t", QoS::AtMostOnce, None);
    too_big.properties.topic_alias = Some(9);
    let error = state
        .handle_packet(S0, Packet::Publish(too_big), now)
        .unwrap_err();
    assert!(matches!(
        error,
        ClientError::Protocol {
            code: ReasonCode::TOPIC_ALIAS_INVALID,
            ..
        }
    ));
    assert!(matches!(
        transmits(&mut state).as_slice(),
        [(_, Packet::Disconnect(d))] if d.code == ReasonCode::TOPIC_ALIAS_INVALID
    ));

    let (mut state, now) = v5();
    let mut set = incoming("t", QoS::AtMostOnce, None);
    set.properties.topic_alias = Some(1);
    state.handle_packet(S0, Packet::Publish(set), now).unwrap();
    state.connection_lost();
    reconnect(&mut state, true, now);
    events(&mut state);
    let mut use_it = incoming("", QoS::AtMostOnce, None);
    use_it.properties.topic_alias = Some(1);
    // 3.3.2.3.4: aliases do not outlive the connection.
    assert!(state
        .handle_packet(S0, Packet::Publish(use_it), now)
        .is_err());
}

#[test]
fn the_server_may_not_exceed_our_receive_maximum() {
    let (mut state, now) = v5();
    for id in 1..=4 {
        let p = incoming("t", QoS::AtLeastOnce, Some(id));
        state.handle_packet(S0, Packet::Publish(p), now).unwrap();
    }
    let p = incoming("t", QoS::AtLeastOnce, Some(5));
    let error = state
        .handle_packet(S0, Packet::Publish(p), now)
        .unwrap_err();
    assert!(matches!(
        error,
        ClientError::Protocol {
            code: ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
            ..
        }
    ));
}

#[test]
fn keep_alive_sends_pingreq_and_detects_a_silent_server() {
    let (mut state, start) = v5();
    let ten = Duration::from_secs(10);
    assert_eq!(state.poll_timeout(), Some(start + ten));
    // Sending anything moves the deadline [MQTT-3.1.2-23].
    let t5 = start + Duration::from_secs(5);
    state.publish(S0, Message::new("a", "x"), t5).unwrap();
    transmits(&mut state);
    assert_eq!(state.poll_timeout(), Some(t5 + ten));
    // Early calls do nothing.
    state.handle_timeout(t5 + Duration::from_secs(9)).unwrap();
    assert!(transmits(&mut state).is_empty());
    let t15 = t5 + ten;
    state.handle_timeout(t15).unwrap();
    assert_eq!(transmits(&mut state), vec![(S0, Packet::PingReq)]);
    // PINGRESP: the next PINGREQ a keep alive later.
    state.handle_packet(S0, Packet::PingResp, t15).unwrap();
    assert_eq!(state.poll_timeout(), Some(t15 + ten));
    let t25 = t15 + ten;
    state.handle_timeout(t25).unwrap();
    assert_eq!(transmits(&mut state), vec![(S0, Packet::PingReq)]);
    // No answer within another keep alive: the server is gone.
    assert_eq!(state.poll_timeout(), Some(t25 + ten));
    let error = state.handle_timeout(t25 + ten).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the server did not answer PINGREQ within 10s"
    );
    assert!(!state.is_connected());
}

#[test]
fn keep_alive_zero_sends_nothing() {
    let now = Instant::now();
    let mut connect = connect_packet(ProtocolVersion::V3_1_1);
    connect.keep_alive = 0;
    let mut state = ClientState::new(connect, now);
    state.begin_connect(true, now);
    state
        .handle_packet(S0, connack(false, Properties::default()), now)
        .unwrap();
    assert_eq!(state.poll_timeout(), None);
}

#[test]
fn server_disconnect_ends_the_connection_with_its_reason() {
    let (mut state, now) = v5();
    let mut d = crate::codec::Disconnect::new(ReasonCode::SESSION_TAKEN_OVER);
    d.properties.reason_string = Some(ByteString::from_static("another client"));
    let error = state
        .handle_packet(S0, Packet::Disconnect(d), now)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "server closed the connection: 0x8E session taken over (another client)"
    );
    assert!(!state.is_connected());
    // Late packets are ignored.
    state.handle_packet(S0, Packet::PingResp, now).unwrap();
}

#[test]
fn unexpected_packets_are_protocol_errors() {
    let (mut state, now) = v5();
    let error = state
        .handle_packet(S0, connack(false, Properties::default()), now)
        .unwrap_err();
    assert!(matches!(error, ClientError::Protocol { .. }), "{error}");
}

#[test]
fn disconnect_queues_disconnect_and_stops() {
    let (mut state, now) = v5();
    state.disconnect(now);
    assert!(matches!(
        transmits(&mut state).as_slice(),
        [(_, Packet::Disconnect(d))] if d.code == ReasonCode::NORMAL_DISCONNECTION
    ));
    assert!(matches!(
        state.publish(S0, Message::new("a", "b"), now),
        Err(ClientError::NotConnected)
    ));
}

#[test]
fn data_streams_carry_their_own_packets() {
    let (mut state, now) = v5();
    let s1 = StreamKey(1);
    state.open_stream(s1).unwrap();
    let sub = state
        .subscribe(s1, Subscription::new().filter("a", QoS::AtLeastOnce), now)
        .unwrap();
    let op = state
        .publish(s1, Message::new("a", "x").qos(QoS::AtLeastOnce), now)
        .unwrap()
        .unwrap();
    let sent = transmits(&mut state);
    assert!(sent.iter().all(|(stream, _)| *stream == s1), "{sent:?}");
    // A message received on a stream is acknowledged on it.
    state
        .handle_packet(
            s1,
            Packet::Publish(incoming("a", QoS::AtLeastOnce, Some(1))),
            now,
        )
        .unwrap();
    let (_, token) = message_event(&mut state);
    state.acknowledge(token.unwrap(), now);
    assert_eq!(transmits(&mut state), vec![(s1, Packet::PubAck(ack(1)))]);
    // Keep alive stays on the control stream.
    state.handle_timeout(now + Duration::from_secs(10)).unwrap();
    assert_eq!(transmits(&mut state), vec![(S0, Packet::PingReq)]);

    // The stream closes: the SUBSCRIBE fails, the PUBLISH moves to the control stream (DUP).
    state.stream_closed(s1, now);
    assert_eq!(
        events(&mut state),
        vec![Event::Completed {
            op: sub,
            result: Err(Failure::StreamClosed)
        }]
    );
    let moved = transmits(&mut state);
    assert!(
        matches!(moved.as_slice(), [(S0, Packet::Publish(p))] if p.dup && p.packet_id == Some(2))
    );
    state
        .handle_packet(S0, Packet::PubAck(ack(2)), now)
        .unwrap();
    assert_eq!(
        events(&mut state),
        vec![published(op, 2, ReasonCode::SUCCESS)]
    );
    // Requests on a closed stream go to the control stream.
    state.publish(s1, Message::new("a", "x"), now).unwrap();
    assert!(matches!(
        transmits(&mut state).as_slice(),
        [(S0, Packet::Publish(_))]
    ));
}

#[test]
fn an_assigned_client_id_is_used_to_resume() {
    let now = Instant::now();
    let mut connect = connect_packet(ProtocolVersion::V5);
    connect.client_id = ByteString::new();
    let mut state = ClientState::new(connect, now);
    state.begin_connect(true, now);
    transmits(&mut state);
    let server = Properties::from(crate::codec::PropertyValues {
        assigned_client_identifier: Some("mqttd-1".into()),
        ..crate::codec::PropertyValues::default()
    });
    state
        .handle_packet(S0, connack(false, server), now)
        .unwrap();
    assert!(matches!(
        state.poll_event(),
        Some(Event::Connected(c)) if c.assigned_client_id && c.client_id == "mqttd-1"
    ));
    state.connection_lost();
    state.begin_connect(false, now);
    assert!(matches!(
        state.poll_transmit(),
        Some((_, Packet::Connect(c))) if c.client_id == "mqttd-1"
    ));
}

#[path = "tests_pipelined.rs"]
mod pipelined;

#[path = "tests_quic_ext.rs"]
mod quic_ext;

#[path = "tests_bridge.rs"]
mod bridge;
