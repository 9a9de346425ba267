//! The broker's side of a cluster (cluster.rs), deterministically: what goes to the other
//! nodes, what comes back, and when a publisher is acknowledged.

use super::*;

fn clustered() -> Harness {
    let mut h = Harness::new();
    h.broker.enable_cluster("n1");
    h
}

fn forwarded(h: &mut Harness) -> Vec<(String, Option<ClusterAck>)> {
    h.cluster
        .drain(..)
        .filter_map(|o| match o {
            ClusterOutput::Publish { message, ack } => Some((message.topic.to_string(), ack)),
            _ => None,
        })
        .collect()
}

/// Nothing but claims went to the cluster (messages and retained changes did not).
fn nothing_sent(h: &Harness) -> bool {
    h.cluster
        .iter()
        .all(|o| matches!(o, ClusterOutput::Claim { .. }))
}

fn acks(packets: &[Packet]) -> Vec<(u16, ReasonCode)> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) | Packet::PubRec(a) => Some((a.packet_id, a.code)),
            _ => None,
        })
        .collect()
}

fn remote(topic: &str, payload: &str, qos: QoS, retain: bool) -> Message {
    Message {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain,
        properties: Properties::default(),
        expires_at: None,
        origin: Some("elsewhere".into()),
        received_at: None,
        cluster_seq: None,
    }
}

#[test]
fn alone_nothing_goes_to_a_cluster() {
    let mut h = Harness::new();
    let p = h.connect("p", ProtocolVersion::V5);
    h.publish(p, "a/b", "x", QoS::AtLeastOnce, true);
    assert!(h.cluster.is_empty());
    assert_eq!(acks(&h.recv(p)).len(), 1, "acknowledged at once");
}

#[test]
fn qos0_goes_out_and_is_delivered_locally_at_once() {
    let mut h = clustered();
    let s = h.connect("s", ProtocolVersion::V5);
    h.subscribe(s, "a/#", QoS::AtMostOnce);
    let p = h.connect("p", ProtocolVersion::V5);
    h.publish(p, "a/b", "x", QoS::AtMostOnce, false);
    assert_eq!(forwarded(&mut h), vec![("a/b".to_string(), None)]);
    assert_eq!(publishes(&h.recv(s)).len(), 1);
}

#[test]
fn sys_topics_stay_on_their_node() {
    let mut h = clustered();
    let p = h.connect("p", ProtocolVersion::V5);
    h.publish(p, "$SYS/x", "x", QoS::AtMostOnce, true);
    assert!(nothing_sent(&h));
    let before = h.broker.retained_count();
    h.broker
        .cluster_message(remote("$SYS/y", "y", QoS::AtMostOnce, false), h.now);
    h.broker.cluster_retained(
        "$SYS/z".into(),
        Some(remote("$SYS/z", "z", QoS::AtMostOnce, true)),
        h.now,
    );
    assert_eq!(h.broker.retained_count(), before);
}

#[test]
fn acknowledgements_wait_for_the_stream_and_leave_in_order() {
    let mut h = clustered();
    let p = h.connect("p", ProtocolVersion::V5);
    h.recv(p);
    h.publish(p, "a/1", "1", QoS::AtLeastOnce, false);
    h.publish(p, "a/2", "2", QoS::ExactlyOnce, false);
    h.publish(p, "a/3", "3", QoS::AtLeastOnce, false);
    let sent = forwarded(&mut h);
    assert_eq!(sent.len(), 3);
    assert!(
        acks(&h.recv(p)).is_empty(),
        "nothing acknowledged before JetStream"
    );
    let ids: Vec<ClusterAck> = sent.iter().map(|(_, a)| a.unwrap()).collect();
    // The third is stored first: it waits behind the first two.
    h.broker.cluster_stored(ids[2], true, h.now);
    h.pump();
    assert!(acks(&h.recv(p)).is_empty());
    h.broker.cluster_stored(ids[0], true, h.now);
    h.pump();
    let first = h.recv(p);
    assert_eq!(acks(&first).len(), 1);
    assert!(matches!(first[0], Packet::PubAck(_)));
    h.broker.cluster_stored(ids[1], true, h.now);
    h.pump();
    let rest = h.recv(p);
    assert!(matches!(rest[0], Packet::PubRec(_)), "{rest:?}");
    assert!(matches!(rest[1], Packet::PubAck(_)), "{rest:?}");
    assert!(acks(&rest).iter().all(|(_, c)| *c == ReasonCode::SUCCESS));
}

#[test]
fn a_refusal_is_0x80_in_v5_and_a_disconnect_in_v311() {
    let mut h = clustered();
    let p5 = h.connect("p5", ProtocolVersion::V5);
    let p3 = h.connect("p3", ProtocolVersion::V3_1_1);
    h.recv(p5);
    h.recv(p3);
    h.publish(p5, "a", "x", QoS::ExactlyOnce, false);
    h.publish(p3, "a", "x", QoS::AtLeastOnce, false);
    let sent = forwarded(&mut h);
    h.broker.cluster_stored(sent[0].1.unwrap(), false, h.now);
    h.broker.cluster_stored(sent[1].1.unwrap(), false, h.now);
    h.pump();
    assert_eq!(acks(&h.recv(p5))[0].1, ReasonCode::UNSPECIFIED_ERROR);
    assert!(
        h.closed.contains(&p3),
        "3.1.1 has no code: the connection is closed"
    );
    // The QoS 2 flow ended: the same packet id is a new message.
    h.send(
        p5,
        Packet::Publish(publish(
            "a",
            "again",
            QoS::ExactlyOnce,
            false,
            Some(sent_id(&h)),
        )),
    );
    assert_eq!(forwarded(&mut h).len(), 1);
}

fn sent_id(h: &Harness) -> u16 {
    h.next_packet_id - 1
}

#[test]
fn a_qos2_retransmission_while_waiting_is_not_sent_twice() {
    let mut h = clustered();
    let p = h.connect("p", ProtocolVersion::V5);
    h.recv(p);
    let mut first = publish("a", "x", QoS::ExactlyOnce, false, Some(7));
    h.send(p, Packet::Publish(first.clone()));
    first.dup = true;
    h.send(p, Packet::Publish(first));
    let sent = forwarded(&mut h);
    assert_eq!(sent.len(), 1, "the duplicate is not forwarded");
    assert!(
        acks(&h.recv(p)).is_empty(),
        "no PUBREC before the stream has it"
    );
    h.broker.cluster_stored(sent[0].1.unwrap(), true, h.now);
    h.pump();
    assert_eq!(acks(&h.recv(p)), vec![(7, ReasonCode::SUCCESS)]);
}

#[test]
fn a_denied_publish_is_answered_behind_the_waiting_ones() {
    let mut h = clustered();
    let p = h.connect("p", ProtocolVersion::V5);
    h.recv(p);
    h.publish(p, "a", "1", QoS::AtLeastOnce, false);
    // An invalid UTF-8 payload marked as UTF-8: refused with 0x99, but in order.
    let mut bad = publish("b", "", QoS::AtLeastOnce, false, Some(500));
    bad.payload = Bytes::from_static(&[0xff]);
    bad.properties.payload_format_indicator = Some(1);
    h.send(p, Packet::Publish(bad));
    assert!(
        acks(&h.recv(p)).is_empty(),
        "the refusal waits behind the first"
    );
    let sent = forwarded(&mut h);
    h.broker.cluster_stored(sent[0].1.unwrap(), true, h.now);
    h.pump();
    let got = acks(&h.recv(p));
    assert_eq!(got.len(), 2);
    assert_eq!(got[1], (500, ReasonCode::PAYLOAD_FORMAT_INVALID));
}

#[test]
fn messages_from_other_nodes_are_routed_not_forwarded_not_retained() {
    let mut h = clustered();
    let s = h.connect("s", ProtocolVersion::V5);
    h.subscribe_with(
        s,
        "r/#",
        SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: false,
            retain_as_published: true,
            retain_handling: 0,
        },
        Properties::default(),
    );
    h.recv(s);
    h.broker
        .cluster_message(remote("r/1", "x", QoS::ExactlyOnce, true), h.now);
    h.pump();
    let got = h.recv(s);
    let p = publishes(&got);
    assert_eq!(p.len(), 1);
    assert!(p[0].retain && p[0].qos == QoS::ExactlyOnce);
    assert!(nothing_sent(&h), "never sent out again");
    assert_eq!(
        h.broker.retained_count(),
        0,
        "the bucket, not the stream, sets retained"
    );
}

#[test]
fn retained_changes_go_out_and_come_back_without_echo() {
    let mut h = clustered();
    let p = h.connect("p", ProtocolVersion::V5);
    h.publish(p, "r/a", "v", QoS::AtMostOnce, true);
    h.publish(p, "r/a", "", QoS::AtMostOnce, true);
    let retains: Vec<(String, bool)> = h
        .cluster
        .drain(..)
        .filter_map(|o| match o {
            ClusterOutput::Retain { topic, message } => {
                Some((topic.to_string(), message.is_some()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(retains, vec![("r/a".into(), true), ("r/a".into(), false)]);
    h.broker.cluster_retained(
        "r/b".into(),
        Some(remote("r/b", "w", QoS::AtLeastOnce, true)),
        h.now,
    );
    h.pump();
    assert_eq!(h.broker.retained_count(), 1);
    assert!(nothing_sent(&h), "a remote change is not sent out again");
    h.broker.cluster_retained("r/b".into(), None, h.now);
    assert_eq!(h.broker.retained_count(), 0);
}

#[test]
fn wire_form_round_trips() {
    let now = Instant::now();
    let wall = std::time::SystemTime::now();
    let mut m = remote("a/b", "payload", QoS::ExactlyOnce, true);
    m.properties.content_type = Some("text/plain".into());
    m.expires_at = Some(now + Duration::from_secs(30));
    let back = decode_message(&encode_message(&m, now, wall), now, wall).unwrap();
    assert_eq!(back.topic, m.topic);
    assert_eq!(back.payload, m.payload);
    assert_eq!(back.properties.content_type, m.properties.content_type);
    assert_eq!(back.origin, m.origin);
    assert_eq!(back.remaining_expiry(now), Some(30));
    assert!(decode_message(b"junk", now, wall).is_err());
}

/// The example record in proto-ext/cluster.md is what a node writes.
#[test]
fn the_documented_record_example_holds() {
    let now = Instant::now();
    let wall = std::time::SystemTime::now();
    let mut m = remote("a", "hi", QoS::AtLeastOnce, false);
    m.origin = Some("c".into());
    let hex: String = encode_message(&m, now, wall)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let doc = include_str!("../../proto-ext/cluster.md");
    let shown = "02 03 00000001 61 00000002 6869 01 00 00 01 00000001 63 00 00 00 00 00000000";
    assert!(doc.contains(shown));
    assert_eq!(hex, shown.replace(' ', ""));
}

fn claims(h: &mut Harness) -> Vec<(String, u64)> {
    h.cluster
        .drain(..)
        .filter_map(|o| match o {
            ClusterOutput::Claim { client_id, claim } => Some((client_id.to_string(), claim)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_connection_claims_its_client_id_and_a_takeover_elsewhere_closes_it_with_0x8e() {
    let mut h = clustered();
    let mut c = connect_packet("x", ProtocolVersion::V5);
    c.will = Some(Will {
        topic: "will/x".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let (x, _) = h.connect_with(c);
    let w = h.connect("watcher", ProtocolVersion::V5);
    h.subscribe(w, "will/#", QoS::AtMostOnce);
    h.recv(w);
    let made = claims(&mut h);
    assert_eq!(made[0].0, "x");
    h.broker
        .cluster_taken_over("x", made[0].1, None, h.now, std::time::SystemTime::now());
    h.pump();
    let got = h.recv(x);
    assert!(
        matches!(got.last(), Some(Packet::Disconnect(d)) if d.code == ReasonCode::SESSION_TAKEN_OVER),
        "{got:?}"
    );
    assert!(h.closed.contains(&x));
    assert!(
        publishes(&h.recv(w)).is_empty(),
        "no will: the client lives on another node"
    );
    assert!(
        h.broker
            .sessions
            .iter()
            .all(|(_, s)| &s.client_id[..] != "x"),
        "session gone here"
    );
    // Its claim was the other node's to take: nothing released.
    assert!(h
        .cluster
        .iter()
        .all(|o| !matches!(o, ClusterOutput::Release { .. })));
}

#[test]
fn a_stale_takeover_does_not_close_a_newer_connection() {
    let mut h = clustered();
    let first = h.connect("x", ProtocolVersion::V5);
    let old_claim = claims(&mut h)[0].1;
    // The client reconnects here before the actor learnt of the other node's claim.
    h.lose(first);
    let second = h.connect("x", ProtocolVersion::V5);
    h.recv(second);
    h.broker
        .cluster_taken_over("x", old_claim, None, h.now, std::time::SystemTime::now());
    h.pump();
    assert!(!h.closed.contains(&second), "the newer connection stays");
}

#[test]
fn an_ended_session_releases_its_claim() {
    let mut h = clustered();
    let x = h.connect("x", ProtocolVersion::V5);
    h.send(x, Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)));
    let released: Vec<String> = h
        .cluster
        .drain(..)
        .filter_map(|o| match o {
            ClusterOutput::Release { client_id } => Some(client_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(released, vec!["x".to_string()]);
}

#[test]
fn assigned_client_ids_carry_the_node_name() {
    let mut h = clustered();
    let mut c = connect_packet("", ProtocolVersion::V5);
    c.clean_start = true;
    let (_, ack) = h.connect_with(c);
    let id = ack.properties.assigned_client_identifier.clone().unwrap();
    assert!(id.starts_with("mqttd-n1-"), "{id}");
}
