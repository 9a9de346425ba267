//! Sessions moving between nodes (cluster_session.rs), deterministically: two brokers in one
//! test stand for two nodes, the test carries what the cluster actor would.

use super::*;
use std::time::SystemTime;

fn node(name: &str) -> Harness {
    let mut h = Harness::new();
    h.broker.enable_cluster(name);
    h
}

/// A QoS 1/2 message as the stream brings it: with its sequence number.
fn streamed(topic: &str, payload: &str, seq: u64, origin: &str) -> Message {
    Message {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
        expires_at: None,
        origin: Some(origin.into()),
        received_at: None,
        cluster_seq: Some(seq),
    }
}

fn persistent_connect(client_id: &str) -> Connect {
    let mut c = connect_packet(client_id, ProtocolVersion::V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(3600);
    c
}

/// Sends a Clean Start 0 CONNECT, checks it waits for a fetch, and answers the fetch with
/// `state`; returns the connection and the replay asked for, if any.
fn connect_fetched(
    h: &mut Harness,
    connect: Connect,
    state: Option<Vec<u8>>,
) -> (ConnId, Option<(u64, u64)>) {
    let client_id = connect.client_id.clone();
    let conn = h.open();
    h.send(conn, Packet::Connect(Box::new(connect)));
    assert!(h.recv(conn).is_empty(), "the CONNECT waits for the fetch");
    let fetch = h.cluster.drain(..).find_map(|o| match o {
        ClusterOutput::Fetch {
            conn: c, client_id, ..
        } if c == conn => Some(client_id),
        _ => None,
    });
    assert_eq!(fetch.as_deref(), Some(&*client_id), "a fetch went out");
    h.broker
        .cluster_fetched(conn, client_id, Ok(state), h.now, SystemTime::now());
    h.pump();
    let replay = h.cluster.iter().find_map(|o| match o {
        ClusterOutput::Replay { from, to, .. } => Some((*from, *to)),
        _ => None,
    });
    (conn, replay)
}

fn last_state(h: &mut Harness, client_id: &str) -> Option<Vec<u8>> {
    h.broker.take_changes(h.now, SystemTime::now());
    h.pump();
    h.cluster.drain(..).rev().find_map(|o| match o {
        ClusterOutput::State {
            client_id: c,
            state,
        } if &c[..] == client_id => Some(state),
        _ => None,
    })
}

#[test]
fn qos1_reaches_local_subscribers_from_the_stream_in_its_order() {
    let mut h = node("a");
    let s = h.connect("s", ProtocolVersion::V5);
    h.subscribe(s, "t/#", QoS::AtLeastOnce);
    let p = h.connect("p", ProtocolVersion::V5);
    h.publish(p, "t/1", "x", QoS::AtLeastOnce, false);
    assert!(publishes(&h.recv(s)).is_empty(), "not routed at once");
    assert!(h.cluster.iter().any(
        |o| matches!(o, ClusterOutput::Publish { message, .. } if &message.topic[..] == "t/1")
    ));
    h.broker
        .cluster_message(streamed("t/1", "x", 5, "p"), h.now);
    h.pump();
    let got = h.recv(s);
    assert_eq!(publishes(&got).len(), 1, "{got:?}");
    // QoS 0 still goes at once.
    h.publish(p, "t/0", "y", QoS::AtMostOnce, false);
    assert_eq!(publishes(&h.recv(s)).len(), 1);
}

#[test]
fn no_local_holds_for_messages_back_from_the_stream() {
    let mut h = node("a");
    let s = h.connect("s", ProtocolVersion::V5);
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        ..Default::default()
    };
    h.subscribe_with(s, "t", options, Properties::default());
    h.broker
        .cluster_message(streamed("t", "own", 1, "s"), h.now);
    h.pump();
    assert!(publishes(&h.recv(s)).is_empty(), "[MQTT-3.8.3-3]");
    h.broker
        .cluster_message(streamed("t", "other", 2, "q"), h.now);
    h.pump();
    assert_eq!(publishes(&h.recv(s)).len(), 1);
}

#[test]
fn packets_after_a_parked_connect_wait_for_it() {
    let mut h = node("a");
    let conn = h.open();
    h.send(conn, Packet::Connect(Box::new(persistent_connect("s"))));
    let sub = Subscribe {
        packet_id: 3,
        properties: Properties::default(),
        filters: vec![("t".into(), SubscriptionOptions::default())],
    };
    h.send(conn, Packet::Subscribe(sub));
    assert!(h.recv(conn).is_empty());
    h.broker
        .cluster_fetched(conn, "s".into(), Ok(None), h.now, SystemTime::now());
    h.pump();
    let got = h.recv(conn);
    assert!(
        matches!(&got[..], [Packet::ConnAck(a), Packet::SubAck(_)] if !a.session_present),
        "{got:?}"
    );
    // The fetch made the claim: none again at CONNECT.
    assert!(h
        .cluster
        .iter()
        .all(|o| !matches!(o, ClusterOutput::Claim { .. })));
}

#[test]
fn a_fetch_nats_cannot_answer_refuses_the_connect_with_0x88() {
    let mut h = node("a");
    let conn = h.open();
    h.send(conn, Packet::Connect(Box::new(persistent_connect("s"))));
    h.broker
        .cluster_fetched(conn, "s".into(), Err(()), h.now, SystemTime::now());
    h.pump();
    let got = h.recv(conn);
    assert!(
        matches!(&got[..], [Packet::ConnAck(a)] if a.code == ReasonCode::SERVER_UNAVAILABLE),
        "{got:?}"
    );
    assert!(h.closed.contains(&conn));
}

#[test]
fn a_session_moves_to_another_node_with_its_inflight_and_queued_messages() {
    // Node a: the session subscribes and gets three messages; the client acknowledges the
    // first only, then goes away; a fourth arrives while it is away.
    let mut a = node("a");
    let (s, _) = connect_fetched(&mut a, persistent_connect("s"), None);
    a.recv(s);
    a.subscribe(s, "t/#", QoS::AtLeastOnce);
    for seq in 1..=3 {
        a.broker
            .cluster_message(streamed(&format!("t/{seq}"), "m", seq, "p"), a.now);
    }
    a.pump();
    let sent: Vec<(String, u16)> = publishes(&a.recv(s))
        .iter()
        .map(|p| (p.topic.to_string(), p.packet_id.unwrap_or(0)))
        .collect();
    assert_eq!(sent.len(), 3);
    a.send(s, Packet::PubAck(Ack::new(sent[0].1)));
    a.lose(s);
    a.broker
        .cluster_message(streamed("t/4", "m", 4, "p"), a.now);
    a.broker
        .cluster_message(streamed("u/5", "m", 5, "p"), a.now);
    let state = last_state(&mut a, "s").expect("a state went out");
    let rec = StateRecord::decode(&state).unwrap();
    assert_eq!(rec.position, 5);
    assert_eq!(rec.queued_from, Some(4));
    assert_eq!(
        rec.inflight,
        vec![(sent[1].1, 2), (sent[2].1, 3)],
        "inflight by packet id and sequence"
    );

    // Node b saw the same stream (position 5) and gets the client.
    let mut b = node("b");
    for seq in 1..=5 {
        b.broker
            .cluster_message(streamed(&format!("x/{seq}"), "m", seq, "p"), b.now);
    }
    let (s2, replay) = connect_fetched(&mut b, persistent_connect("s"), Some(state));
    assert_eq!(
        replay,
        Some((2, 5)),
        "from the oldest inflight to b's position"
    );
    assert!(b.recv(s2).is_empty(), "no CONNACK before the replay");
    // A message arrives live during the replay; one the replay covers is not taken twice.
    b.broker
        .cluster_message(streamed("t/6", "m", 6, "p"), b.now);
    b.broker
        .cluster_message(streamed("t/4", "m", 4, "p"), b.now);
    b.pump();
    assert!(b.recv(s2).is_empty());
    let replayed = (2..=5)
        .map(|seq| {
            let topic = if seq == 5 {
                "u/5".to_string()
            } else {
                format!("t/{seq}")
            };
            streamed(&topic, "m", seq, "p")
        })
        .collect();
    b.broker.cluster_replayed("s", replayed, true, b.now);
    b.pump();
    let got = b.recv(s2);
    let Some(Packet::ConnAck(ack)) = got.first() else {
        panic!("expected CONNACK, got {got:?}");
    };
    assert!(ack.session_present, "[MQTT-3.1.2-5]");
    let order: Vec<(String, Option<u16>, bool)> = publishes(&got)
        .iter()
        .map(|p| (p.topic.to_string(), p.packet_id, p.dup))
        .collect();
    assert_eq!(order.len(), 4, "{order:?}");
    // [MQTT-4.4.0-1] the unacknowledged ones again, with DUP and their packet ids.
    assert_eq!(order[0], ("t/2".into(), Some(sent[1].1), true));
    assert_eq!(order[1], ("t/3".into(), Some(sent[2].1), true));
    assert_eq!(&order[2].0, "t/4");
    assert!(!order[2].2);
    assert_eq!(&order[3].0, "t/6");
}

#[test]
fn a_takeover_notice_hands_over_the_final_state_then_answers() {
    let mut h = node("a");
    let mut c = connect_packet("s", ProtocolVersion::V5);
    c.properties.session_expiry_interval = Some(3600);
    let (s, _) = h.connect_with(c);
    h.subscribe(s, "t/#", QoS::AtLeastOnce);
    let claim = h
        .cluster
        .iter()
        .find_map(|o| match o {
            ClusterOutput::Claim { claim, .. } => Some(*claim),
            _ => None,
        })
        .unwrap();
    h.cluster.clear();
    h.broker
        .cluster_taken_over("s", claim, Some("reply.1".into()), h.now, SystemTime::now());
    h.pump();
    let kinds: Vec<&str> = h
        .cluster
        .iter()
        .map(|o| match o {
            ClusterOutput::State { .. } => "state",
            ClusterOutput::HandedOver { .. } => "answer",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, vec!["state", "answer"]);
    let ClusterOutput::State { state, .. } = &h.cluster[0] else {
        unreachable!()
    };
    let rec = StateRecord::decode(state).unwrap();
    assert_eq!(rec.session.subscriptions.len(), 1);
    assert!(h.closed.contains(&s));
}

#[test]
fn a_client_gone_during_the_replay_leaves_its_session_here_expiring() {
    let mut a = node("a");
    let (s, _) = connect_fetched(&mut a, persistent_connect("s"), None);
    a.recv(s);
    a.subscribe(s, "t/#", QoS::AtLeastOnce);
    a.broker
        .cluster_message(streamed("t/1", "m", 1, "p"), a.now);
    a.pump();
    a.recv(s);
    let state = last_state(&mut a, "s").unwrap();

    let mut b = node("b");
    let (s2, replay) = connect_fetched(&mut b, persistent_connect("s"), Some(state));
    assert_eq!(replay, Some((1, 1)));
    b.lose(s2);
    b.broker
        .cluster_replayed("s", vec![streamed("t/1", "m", 1, "p")], true, b.now);
    b.pump();
    let session = b
        .broker
        .sessions
        .iter()
        .find(|(_, s)| &s.client_id[..] == "s")
        .map(|(_, s)| (s.conn, s.expires_at, s.inflight.len()));
    let (conn, expires_at, inflight) = session.expect("the session stays on b");
    assert_eq!(conn, None);
    assert!(expires_at.is_some(), "its expiry runs");
    assert_eq!(inflight, 1, "with its inflight message");
}

#[test]
fn of_two_connections_fetching_the_same_session_the_later_wins() {
    let mut b = node("b");
    let first = b.open();
    b.send(first, Packet::Connect(Box::new(persistent_connect("s"))));
    let (second, _) = connect_fetched(&mut b, persistent_connect("s"), None);
    b.broker
        .cluster_fetched(first, "s".into(), Ok(None), b.now, SystemTime::now());
    b.pump();
    assert!(
        b.closed.contains(&first),
        "[MQTT-3.1.4-3] the earlier one is taken over"
    );
    assert!(!b.closed.contains(&second));
    let got = b.recv(second);
    assert!(matches!(got.first(), Some(Packet::ConnAck(a)) if a.code == ReasonCode::SUCCESS));
}
