//! What a bridge needs of the client: manual acknowledgements that outlive a connection,
//! publishes that outlive a connection, and publishes with a given packet identifier.

use super::*;

/// Events other than `Connected`.
fn outcomes(state: &mut ClientState) -> Vec<Event> {
    events(state)
        .into_iter()
        .filter(|e| !matches!(e, Event::Connected(_)))
        .collect()
}

fn manual() -> (ClientState, Instant) {
    let now = Instant::now();
    let mut state = ClientState::new(connect_packet(ProtocolVersion::V5), now);
    state.set_manual_acks(true);
    state.set_resume_operations(true);
    state.begin_connect(true, now);
    transmits(&mut state);
    state
        .handle_packet(S0, connack(false, Properties::default()), now)
        .unwrap();
    events(&mut state);
    (state, now)
}

#[test]
fn a_manual_ack_made_while_disconnected_answers_the_retransmission() {
    let (mut state, now) = manual();
    let p1 = incoming("a", QoS::AtLeastOnce, Some(7));
    let p2 = incoming("b", QoS::ExactlyOnce, Some(8));
    state
        .handle_packet(S0, Packet::Publish(p1.clone()), now)
        .unwrap();
    state
        .handle_packet(S0, Packet::Publish(p2.clone()), now)
        .unwrap();
    let tokens: Vec<AckToken> = events(&mut state)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } => message.ack,
            _ => None,
        })
        .collect();
    assert_eq!(tokens.len(), 2);
    assert!(
        transmits(&mut state).is_empty(),
        "nothing acknowledged by itself"
    );
    state.connection_lost();
    // The application finishes with both while the connection is down.
    for t in &tokens {
        state.acknowledge(*t, now);
    }
    assert!(transmits(&mut state).is_empty());
    reconnect(&mut state, true, now);
    // The server resends both (DUP): answered, not delivered again.
    for p in [p1, p2] {
        let dup = Publish { dup: true, ..p };
        state.handle_packet(S0, Packet::Publish(dup), now).unwrap();
    }
    assert!(outcomes(&mut state).is_empty(), "not delivered twice");
    assert_eq!(
        transmits(&mut state),
        vec![(S0, Packet::PubAck(ack(7))), (S0, Packet::PubRec(ack(8)))]
    );
    state
        .handle_packet(S0, Packet::PubRel(ack(8)), now)
        .unwrap();
    assert_eq!(transmits(&mut state), vec![(S0, Packet::PubComp(ack(8)))]);
}

#[test]
fn a_manual_ack_after_reconnection_goes_on_the_new_connection_and_not_after_session_loss() {
    let (mut state, now) = manual();
    let p = incoming("a", QoS::AtLeastOnce, Some(3));
    state
        .handle_packet(S0, Packet::Publish(p.clone()), now)
        .unwrap();
    let (message, _) = message_event(&mut state);
    let token = message.ack.expect("QoS 1 owes an acknowledgement");
    state.connection_lost();
    reconnect(&mut state, true, now);
    let dup = Publish {
        dup: true,
        ..p.clone()
    };
    state.handle_packet(S0, Packet::Publish(dup), now).unwrap();
    assert!(
        outcomes(&mut state).is_empty(),
        "still owed, not delivered again"
    );
    state.acknowledge(token, now);
    assert_eq!(transmits(&mut state), vec![(S0, Packet::PubAck(ack(3)))]);

    // A session the server lost: old tokens acknowledge nothing.
    state.handle_packet(S0, Packet::Publish(p), now).unwrap();
    let (message, _) = message_event(&mut state);
    state.connection_lost();
    reconnect(&mut state, false, now);
    state.acknowledge(message.ack.unwrap(), now);
    assert!(transmits(&mut state).is_empty());
}

#[test]
fn publishes_outlive_a_lost_connection_and_wait_while_disconnected() {
    let (mut state, now) = manual();
    let op1 = state
        .publish(S0, Message::new("a", "1").qos(QoS::AtLeastOnce), now)
        .unwrap()
        .unwrap();
    let first = sent_publish(&mut state);
    state.connection_lost();
    assert!(events(&mut state).is_empty(), "the publish keeps waiting");
    // Made while disconnected: waits for the connection.
    let op2 = state
        .publish(S0, Message::new("b", "2").qos(QoS::AtLeastOnce), now)
        .unwrap()
        .unwrap();
    // QoS 0 cannot wait.
    assert!(matches!(
        state.publish(S0, Message::new("c", "3"), now),
        Err(ClientError::NotConnected)
    ));
    let sent = reconnect(&mut state, true, now);
    let ids: Vec<(u16, bool)> = sent
        .iter()
        .filter_map(|(_, p)| match p {
            Packet::Publish(p) => Some((p.packet_id.unwrap(), p.dup)),
            _ => None,
        })
        .collect();
    assert_eq!(
        ids[0],
        (first.packet_id.unwrap(), true),
        "resent with DUP first"
    );
    assert_eq!(ids.len(), 2);
    state
        .handle_packet(S0, Packet::PubAck(ack(ids[0].0)), now)
        .unwrap();
    state
        .handle_packet(S0, Packet::PubAck(ack(ids[1].0)), now)
        .unwrap();
    let completed = outcomes(&mut state);
    assert_eq!(
        completed,
        vec![
            published(op1, ids[0].0, ReasonCode::SUCCESS),
            published(op2, ids[1].0, ReasonCode::SUCCESS)
        ]
    );
}

#[test]
fn after_session_loss_sent_publishes_fail_and_unsent_ones_go_on_the_new_session() {
    let (mut state, now) = manual();
    let op1 = state
        .publish(S0, Message::new("a", "1").qos(QoS::AtLeastOnce), now)
        .unwrap()
        .unwrap();
    transmits(&mut state);
    state.connection_lost();
    let op2 = state
        .publish(
            S0,
            Message::new("b", "2").qos(QoS::AtLeastOnce).packet_id(40),
            now,
        )
        .unwrap()
        .unwrap();
    let sent = reconnect(&mut state, false, now);
    assert!(events(&mut state).contains(&Event::Completed {
        op: op1,
        result: Err(Failure::SessionLost)
    }));
    match sent.as_slice() {
        [(_, Packet::Publish(p))] => assert_eq!((p.packet_id, p.dup), (Some(40), false)),
        other => panic!("expected the unsent publish, got {other:?}"),
    }
    state
        .handle_packet(S0, Packet::PubAck(ack(40)), now)
        .unwrap();
    assert_eq!(
        events(&mut state),
        vec![published(op2, 40, ReasonCode::SUCCESS)]
    );
}

#[test]
fn a_given_packet_id_is_used_and_must_be_free() {
    let (mut state, now) = v5();
    let op = state
        .publish(
            S0,
            Message::new("a", "1").qos(QoS::ExactlyOnce).packet_id(500),
            now,
        )
        .unwrap()
        .unwrap();
    assert_eq!(sent_publish(&mut state).packet_id, Some(500));
    assert!(matches!(
        state.publish(
            S0,
            Message::new("a", "2").qos(QoS::AtLeastOnce).packet_id(500),
            now
        ),
        Err(ClientError::PacketIdInUse(500))
    ));
    assert!(matches!(
        state.publish(
            S0,
            Message::new("a", "2").qos(QoS::AtLeastOnce).packet_id(0),
            now
        ),
        Err(ClientError::InvalidRequest(_))
    ));
    // Ids the client picks skip it.
    let sub = state
        .subscribe(S0, Subscription::new().filter("x", QoS::AtMostOnce), now)
        .unwrap();
    let _ = sub;
    state
        .handle_packet(S0, Packet::PubRec(ack(500)), now)
        .unwrap();
    assert_eq!(
        transmits(&mut state).last(),
        Some(&(S0, Packet::PubRel(ack(500))))
    );
    state
        .handle_packet(S0, Packet::PubComp(ack(500)), now)
        .unwrap();
    assert!(events(&mut state).contains(&published(op, 500, ReasonCode::SUCCESS)));
}

#[test]
fn backoff_doubles_up_to_the_cap_with_jitter_and_cycles_servers() {
    let r = crate::client::Reconnect {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(1000),
        alternates: vec!["b:1".into(), "c:1".into()],
    };
    assert_eq!(r.delay(0, 1.0), Duration::from_millis(100));
    assert_eq!(r.delay(3, 1.0), Duration::from_millis(800));
    assert_eq!(r.delay(4, 1.0), Duration::from_millis(1000));
    assert_eq!(r.delay(40, 0.5), Duration::from_millis(500));
    let j = crate::client::jitter();
    assert!((0.5..=1.0).contains(&j));
    let order: Vec<&str> = (0..4).map(|i| r.server_for("a:1", i)).collect();
    assert_eq!(order, ["a:1", "b:1", "c:1", "a:1"]);
}
