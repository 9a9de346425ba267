//! Shared subscriptions in a cluster (cluster_shared.rs), deterministically: when a node
//! serves a group, how a message NATS gave it reaches one member, and when it is answered.

use super::*;

fn clustered() -> Harness {
    let mut h = Harness::new();
    h.broker.enable_cluster("n1");
    h
}

/// Takes the shared-subscription outputs out of the harness.
fn take_shared(h: &mut Harness) -> Vec<SharedOutput> {
    h.pump();
    let (shared, rest): (Vec<ClusterOutput>, Vec<ClusterOutput>) = h
        .cluster
        .drain(..)
        .partition(|o| matches!(o, ClusterOutput::Shared(_)));
    h.cluster = rest;
    shared
        .into_iter()
        .filter_map(|o| match o {
            ClusterOutput::Shared(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn join(group: &str, filter: &str) -> SharedOutput {
    SharedOutput::Join {
        group: group.into(),
        filter: filter.into(),
        after: 0,
    }
}

fn leave(group: &str, filter: &str) -> SharedOutput {
    SharedOutput::Leave {
        group: group.into(),
        filter: filter.into(),
    }
}

fn done(token: u64, ack: bool) -> SharedOutput {
    SharedOutput::Done {
        token: SharedToken(token),
        ack,
    }
}

fn message(topic: &str, payload: &str, qos: QoS) -> Message {
    Message {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain: false,
        properties: Properties::default(),
        expires_at: None,
        origin: Some("elsewhere".into()),
        received_at: None,
        cluster_seq: None,
    }
}

/// NATS hands the node a message for `$share/group/filter`.
fn from_nats(h: &mut Harness, group: &str, filter: &str, msg: Message, token: Option<u64>) {
    let now = h.now;
    h.broker
        .cluster_shared_message(group, filter, msg, token.map(SharedToken), now);
    h.pump();
}

/// Connects with Clean Start 0 and a session that outlives the connection; when the node
/// asks the cluster for the session (it does not hold the client id), there is none.
fn connect_persistent(h: &mut Harness, client_id: &str) -> (ConnId, ConnAck) {
    let mut c = connect_packet(client_id, V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(300);
    let conn = h.open();
    h.send(conn, Packet::Connect(Box::new(c)));
    let fetch = h
        .cluster
        .iter()
        .any(|o| matches!(o, ClusterOutput::Fetch { conn: f, .. } if *f == conn));
    if fetch {
        h.cluster
            .retain(|o| !matches!(o, ClusterOutput::Fetch { .. }));
        let now = h.now;
        h.broker.cluster_fetched(
            conn,
            client_id.into(),
            Ok(None),
            now,
            std::time::SystemTime::now(),
        );
    }
    let mut packets = h.recv(conn);
    match packets.first() {
        Some(Packet::ConnAck(ack)) => {
            let ack = ack.clone();
            packets.remove(0);
            h.inbox.insert(conn, packets);
            (conn, ack)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[test]
fn a_node_serves_a_group_while_it_has_a_connected_member() {
    let mut h = clustered();
    let (m1, _) = connect_persistent(&mut h, "m1");
    h.subscribe(m1, "$share/g/a/#", QoS::AtLeastOnce);
    assert_eq!(take_shared(&mut h), vec![join("g", "a/#")]);
    // A second member changes nothing; a plain subscription is no group.
    let m2 = h.connect("m2", V5);
    h.subscribe(m2, "$share/g/a/#", QoS::AtLeastOnce);
    h.subscribe(m2, "a/#", QoS::AtLeastOnce);
    assert_eq!(take_shared(&mut h), vec![]);
    // m2's session ends; m1 is still there.
    h.lose(m2);
    assert_eq!(take_shared(&mut h), vec![]);
    // m1 loses its connection (its session stays): no connected member, the node leaves.
    h.lose(m1);
    assert_eq!(take_shared(&mut h), vec![leave("g", "a/#")]);
    // m1 comes back with its session and its subscription: served again.
    let (m1, ack) = connect_persistent(&mut h, "m1");
    assert!(ack.session_present);
    assert_eq!(take_shared(&mut h), vec![join("g", "a/#")]);
    // Unsubscribed: left.
    h.send(
        m1,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 9,
            properties: Properties::default(),
            filters: vec!["$share/g/a/#".into()],
        }),
    );
    assert_eq!(take_shared(&mut h), vec![leave("g", "a/#")]);
}

#[test]
fn in_a_cluster_shared_subscriptions_are_not_served_by_the_local_route() {
    let mut h = clustered();
    let m = h.connect("m", V5);
    h.subscribe(m, "$share/g/a/+", QoS::AtLeastOnce);
    let p = h.connect("p", V5);
    h.publish(p, "a/b", "x", QoS::AtLeastOnce, false);
    h.publish(p, "a/b", "y", QoS::AtMostOnce, false);
    assert!(
        publishes(&h.recv(m)).is_empty(),
        "NATS decides, not the route"
    );
    // Both went to NATS, from which the group gets them.
    let forwarded = h
        .cluster
        .iter()
        .filter(|o| matches!(o, ClusterOutput::Publish { .. }))
        .count();
    assert_eq!(forwarded, 2);
    assert_eq!(take_shared(&mut h), vec![join("g", "a/+")]);
    // `$SYS` never leaves the node: its shared subscriptions stay local, NATS is not asked.
    h.subscribe(m, "$share/g/$SYS/x", QoS::AtMostOnce);
    assert!(take_shared(&mut h).is_empty());
    h.publish(p, "$SYS/x", "s", QoS::AtMostOnce, false);
    assert_eq!(publishes(&h.recv(m)).len(), 1);
}

#[test]
fn alone_shared_subscriptions_stay_local() {
    let mut h = Harness::new();
    let m = h.connect("m", V5);
    h.subscribe(m, "$share/g/a/+", QoS::AtLeastOnce);
    let p = h.connect("p", V5);
    h.publish(p, "a/b", "x", QoS::AtLeastOnce, false);
    assert_eq!(publishes(&h.recv(m)).len(), 1);
    assert!(h.cluster.is_empty());
}

#[test]
fn each_message_goes_to_one_member_and_is_acked_once_the_member_acked() {
    let mut h = clustered();
    let m1 = h.connect("m1", V5);
    let m2 = h.connect("m2", V5);
    h.subscribe(m1, "$share/g/a/#", QoS::AtLeastOnce);
    h.subscribe(m2, "$share/g/a/#", QoS::AtLeastOnce);
    take_shared(&mut h);
    for i in 0..4u64 {
        from_nats(
            &mut h,
            "g",
            "a/#",
            message("a/b", &i.to_string(), QoS::AtLeastOnce),
            Some(i + 1),
        );
    }
    let (got1, got2) = (h.recv(m1), h.recv(m2));
    let (got1, got2) = (publishes(&got1), publishes(&got2));
    assert_eq!((got1.len(), got2.len()), (2, 2), "round robin, once each");
    assert!(
        take_shared(&mut h).is_empty(),
        "nothing acked before the members"
    );
    let mut acked = Vec::new();
    for (conn, got) in [(m1, &got1), (m2, &got2)] {
        for p in got.iter() {
            assert_eq!(p.qos, QoS::AtLeastOnce);
            h.send(conn, Packet::PubAck(Ack::new(p.packet_id.unwrap())));
            acked.extend(take_shared(&mut h));
        }
    }
    acked.sort_by_key(|d| format!("{d:?}"));
    assert_eq!(
        acked,
        vec![done(1, true), done(2, true), done(3, true), done(4, true)]
    );
    // A duplicate PUBACK acks nothing twice.
    let id = got1[0].packet_id.unwrap();
    h.send(m1, Packet::PubAck(Ack::new(id)));
    assert!(take_shared(&mut h).is_empty());
}

#[test]
fn qos2_is_acked_at_pubrec() {
    let mut h = clustered();
    let m = h.connect("m", V5);
    h.subscribe(m, "$share/g/t", QoS::ExactlyOnce);
    take_shared(&mut h);
    from_nats(
        &mut h,
        "g",
        "t",
        message("t", "x", QoS::ExactlyOnce),
        Some(7),
    );
    let got = h.recv(m);
    let p = publishes(&got)[0];
    assert_eq!(p.qos, QoS::ExactlyOnce);
    h.send(m, Packet::PubRec(Ack::new(p.packet_id.unwrap())));
    assert_eq!(take_shared(&mut h), vec![done(7, true)]);
    assert!(matches!(h.recv(m)[..], [Packet::PubRel(_)]));
}

#[test]
fn without_a_connected_member_the_message_goes_back_to_the_group() {
    let mut h = clustered();
    let (m, _) = connect_persistent(&mut h, "m");
    h.subscribe(m, "$share/g/t", QoS::AtLeastOnce);
    h.lose(m);
    take_shared(&mut h);
    from_nats(
        &mut h,
        "g",
        "t",
        message("t", "x", QoS::AtLeastOnce),
        Some(3),
    );
    assert_eq!(take_shared(&mut h), vec![done(3, false)]);
    // Nor is it queued in the offline session: another node's member takes it.
    let (m, _) = connect_persistent(&mut h, "m");
    assert!(publishes(&h.recv(m)).is_empty());
    // No member at all (a message that crossed the Leave): back too.
    from_nats(
        &mut h,
        "g",
        "other",
        message("other", "x", QoS::AtLeastOnce),
        Some(4),
    );
    assert_eq!(take_shared(&mut h), vec![join("g", "t"), done(4, false)]);
}

#[test]
fn a_lost_connection_hands_its_unacknowledged_messages_back() {
    let mut h = clustered();
    let m1 = h.connect("m1", V5);
    h.subscribe(m1, "$share/g/t", QoS::AtLeastOnce);
    take_shared(&mut h);
    from_nats(
        &mut h,
        "g",
        "t",
        message("t", "x", QoS::AtLeastOnce),
        Some(5),
    );
    assert_eq!(publishes(&h.recv(m1)).len(), 1);
    h.lose(m1);
    assert_eq!(
        take_shared(&mut h),
        vec![done(5, false), leave("g", "t")],
        "back to the group at once, not after JetStream's ack wait"
    );
}

#[test]
fn mqtt_rules_apply_to_messages_from_the_group() {
    let mut h = clustered();
    let m = h.connect("m", V5);
    h.subscribe_with(
        m,
        "$share/g/#",
        SubscriptionOptions {
            qos: QoS::AtMostOnce,
            retain_as_published: true,
            ..Default::default()
        },
        Properties::from(crate::codec::PropertyValues {
            subscription_identifiers: vec![42],
            ..Default::default()
        }),
    );
    take_shared(&mut h);
    // [MQTT-4.7.2-1] NATS's `>` matched a `$` topic; MQTT's `#` does not: dropped, acked.
    from_nats(
        &mut h,
        "g",
        "#",
        message("$app/x", "d", QoS::AtLeastOnce),
        Some(1),
    );
    assert!(publishes(&h.recv(m)).is_empty());
    assert_eq!(take_shared(&mut h), vec![done(1, true)]);
    // Granted QoS 0: downgraded, done once sent; identifier and Retain As Published kept.
    let mut retained = message("a/b", "r", QoS::AtLeastOnce);
    retained.retain = true;
    from_nats(&mut h, "g", "#", retained, Some(2));
    let got = h.recv(m);
    let p = publishes(&got)[0];
    assert_eq!(p.qos, QoS::AtMostOnce);
    assert!(p.retain);
    assert_eq!(p.properties.subscription_identifiers, vec![42]);
    assert_eq!(take_shared(&mut h), vec![done(2, true)]);
    // QoS 0 from the queue subscription: no token, nothing to answer.
    from_nats(&mut h, "g", "#", message("a/c", "z", QoS::AtMostOnce), None);
    assert_eq!(publishes(&h.recv(m)).len(), 1);
    assert!(take_shared(&mut h).is_empty());
    // [MQTT-3.3.2-5] expired: not delivered, acked.
    let mut expired = message("a/d", "old", QoS::AtLeastOnce);
    expired.expires_at = Some(h.now);
    from_nats(&mut h, "g", "#", expired, Some(3));
    assert!(publishes(&h.recv(m)).is_empty());
    assert_eq!(take_shared(&mut h), vec![done(3, true)]);
}

#[test]
fn a_new_group_starts_after_the_last_stream_message_routed_here() {
    let mut h = clustered();
    let mut streamed = message("x/y", "s", QoS::AtLeastOnce);
    streamed.cluster_seq = Some(42);
    let now = h.now;
    h.broker.cluster_message(streamed, now);
    let m = h.connect("m", V5);
    h.subscribe(m, "$share/g/t", QoS::AtLeastOnce);
    assert_eq!(
        take_shared(&mut h),
        vec![SharedOutput::Join {
            group: "g".into(),
            filter: "t".into(),
            after: 42,
        }],
        "nothing published after the SUBACK can be before it in the stream"
    );
}
