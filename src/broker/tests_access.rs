//! Login verdicts and ACL checks (`access.rs`): CONNACK codes, SUBACK/PUBACK/PUBREC codes,
//! filtering of deliveries and retained messages, in both protocol versions.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::auth::{Acl, Login};

const ACL: &str = "\
topic read public/#
pattern readwrite devices/%c/#
user alice
topic readwrite alice/#
topic deny alice/secret/#
topic write public/#
user bob
topic read alice/#
topic read $SYS/#
";

fn with_acl(text: &str) -> Harness {
    let mut h = Harness::new();
    h.broker
        .set_acl(Some(Arc::new(Acl::parse(text, Path::new("acl")).unwrap())));
    h
}

/// Opens a connection, hands the broker `login`, then CONNECT.
fn login_connect(h: &mut Harness, connect: Connect, login: Login) -> (ConnId, ConnAck) {
    let conn = h.open();
    h.broker.set_login(conn, login);
    h.send(conn, Packet::Connect(Box::new(connect)));
    match h.recv(conn).first() {
        Some(Packet::ConnAck(ack)) => (conn, ack.clone()),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn as_user(
    h: &mut Harness,
    client_id: &str,
    user: Option<&str>,
    version: ProtocolVersion,
) -> ConnId {
    let login = Login::Accepted {
        username: user.map(ByteString::from),
    };
    let (conn, ack) = login_connect(h, connect_packet(client_id, version), login);
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    conn
}

fn acks(packets: &[Packet]) -> Vec<(u8, ReasonCode)> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) => Some((4, a.code)),
            Packet::PubRec(a) => Some((5, a.code)),
            Packet::PubComp(a) => Some((7, a.code)),
            _ => None,
        })
        .collect()
}

#[test]
fn refused_logins_answer_with_their_code_in_each_version() {
    let mut h = Harness::new();
    for (version, bad, unauthorized) in [(V5, 0x86, 0x87), (V4, 0x86, 0x87)] {
        let (conn, ack) = login_connect(
            &mut h,
            connect_packet("c", version),
            Login::Refused(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        );
        assert_eq!(ack.code.0, bad);
        assert!(h.closed.contains(&conn));
        let (_, ack) = login_connect(
            &mut h,
            connect_packet("c", version),
            Login::Refused(ReasonCode::NOT_AUTHORIZED),
        );
        assert_eq!(ack.code.0, unauthorized);
    }
    // On the wire a 3.1.1 CONNACK carries return codes 4 and 5.
    let mut buf = bytes::BytesMut::new();
    let connack = |code| {
        Packet::ConnAck(ConnAck {
            session_present: false,
            code,
            properties: Properties::default(),
        })
    };
    crate::codec::encode(
        &connack(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        V4,
        &mut buf,
    );
    crate::codec::encode(&connack(ReasonCode::NOT_AUTHORIZED), V4, &mut buf);
    assert_eq!(&buf[..], &[0x20, 2, 0, 4, 0x20, 2, 0, 5]);
}

#[test]
fn a_required_login_without_a_verdict_is_refused() {
    let mut h = Harness::new();
    h.broker.require_login();
    let (conn, ack) = h.connect_with(connect_packet("c", V5));
    assert_eq!(ack.code, ReasonCode::NOT_AUTHORIZED);
    assert!(h.closed.contains(&conn));
    // A verdict is used once: a second connection needs its own.
    let c = as_user(&mut h, "c", Some("alice"), V5);
    assert!(!h.closed.contains(&c));
}

#[test]
fn denied_subscriptions_get_0x87_in_v5_and_0x80_in_v311() {
    let mut h = with_acl(ACL);
    let alice = as_user(&mut h, "a1", Some("alice"), V5);
    assert_eq!(
        h.subscribe(alice, "alice/#", QoS::AtLeastOnce),
        [ReasonCode(1)]
    );
    assert_eq!(
        h.subscribe(alice, "public/+", QoS::AtMostOnce),
        [ReasonCode(0)]
    );
    assert_eq!(
        h.subscribe(alice, "alice/secret/#", QoS::AtLeastOnce),
        [ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        h.subscribe(alice, "#", QoS::AtMostOnce),
        [ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        h.subscribe(alice, "$share/g/bob/#", QoS::AtMostOnce),
        [ReasonCode::NOT_AUTHORIZED]
    );
    let anon = as_user(&mut h, "anon", None, V4);
    assert_eq!(
        h.subscribe(anon, "public/#", QoS::AtLeastOnce),
        [ReasonCode(1)]
    );
    // 3.1.1 has one failure code: 0x80 on the wire.
    assert_eq!(
        h.subscribe(anon, "alice/#", QoS::AtLeastOnce),
        [ReasonCode::UNSPECIFIED_ERROR]
    );
    // The 3.1.1 encoding of a refused subscription is 0x80.
    h.send(
        anon,
        Packet::Subscribe(Subscribe {
            packet_id: 9,
            properties: Properties::default(),
            filters: vec![("alice/x".into(), SubscriptionOptions::default())],
        }),
    );
    let suback = h.recv(anon).remove(0);
    let mut buf = bytes::BytesMut::new();
    crate::codec::encode(&suback, V4, &mut buf);
    assert_eq!(&buf[..], &[0x90, 3, 0, 9, 0x80]);
    assert_eq!(h.broker.metrics().acl_denied, 5);
}

#[test]
fn denied_publishes_are_0x87_in_v5_acknowledged_and_dropped_in_v311() {
    let mut h = with_acl(ACL);
    let bob = as_user(&mut h, "b1", Some("bob"), V5);
    assert_eq!(
        h.subscribe(bob, "alice/#", QoS::ExactlyOnce),
        [ReasonCode(2)]
    );
    // v5: PUBACK / PUBREC 0x87, QoS 0 silently dropped; nothing reaches bob.
    let anon5 = as_user(&mut h, "x5", None, V5);
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        h.publish(anon5, "alice/a", "forged", qos, false);
    }
    assert_eq!(
        acks(&h.recv(anon5)),
        [
            (4, ReasonCode::NOT_AUTHORIZED),
            (5, ReasonCode::NOT_AUTHORIZED)
        ]
    );
    // 3.1.1: acknowledged as usual (the QoS 2 flow completes), still dropped.
    let anon4 = as_user(&mut h, "x4", None, V4);
    h.publish(anon4, "alice/a", "forged", QoS::AtLeastOnce, false);
    h.publish(anon4, "alice/a", "forged", QoS::ExactlyOnce, false);
    let packet_id = h.next_packet_id;
    h.send(anon4, Packet::PubRel(Ack::new(packet_id)));
    assert_eq!(
        acks(&h.recv(anon4)),
        [
            (4, ReasonCode::SUCCESS),
            (5, ReasonCode::SUCCESS),
            (7, ReasonCode::SUCCESS)
        ]
    );
    assert!(publishes(&h.recv(bob)).is_empty());
    // A retained message a client may not write is not stored either.
    h.publish(anon5, "alice/r", "forged", QoS::AtLeastOnce, true);
    assert_eq!(h.broker.retained_count(), 0);
    // Alice may publish; bob receives.
    let alice = as_user(&mut h, "a1", Some("alice"), V5);
    h.publish(alice, "alice/a", "real", QoS::AtLeastOnce, false);
    assert_eq!(acks(&h.recv(alice)), [(4, ReasonCode::SUCCESS)]);
    let got = h.recv(bob);
    assert_eq!(publishes(&got).len(), 1);
    assert_eq!(&publishes(&got)[0].payload[..], b"real");
}

#[test]
fn deliveries_and_retained_messages_are_checked_per_topic() {
    let mut h = with_acl("topic readwrite #\ntopic deny private/#\ntopic write private/#\n");
    let publisher = as_user(&mut h, "p", None, V5);
    // Deny wins over both `readwrite #` and `write private/#`, in both directions.
    h.publish(publisher, "private/x", "p", QoS::AtLeastOnce, true);
    assert_eq!(acks(&h.recv(publisher)), [(4, ReasonCode::NOT_AUTHORIZED)]);

    let mut h = with_acl(ACL);
    let alice = as_user(&mut h, "a1", Some("alice"), V5);
    // Alice writes retained messages into her tree and public/.
    h.publish(alice, "alice/open", "o", QoS::AtLeastOnce, true);
    h.publish(alice, "public/news", "n", QoS::AtLeastOnce, true);
    h.recv(alice);
    assert_eq!(h.broker.retained_count(), 2);
    // Bob may read alice/#: his wildcard subscription gets both retained messages it matches.
    let bob = as_user(&mut h, "b1", Some("bob"), V5);
    assert_eq!(
        h.subscribe(bob, "+/#", QoS::AtMostOnce),
        [ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        h.subscribe(bob, "alice/#", QoS::AtMostOnce),
        [ReasonCode(0)]
    );
    let got = h.recv(bob);
    assert_eq!(publishes(&got).len(), 1);
    // A device gets its own tree through the %c pattern, and no other device's.
    let dev = as_user(&mut h, "dev1", None, V4);
    assert_eq!(
        h.subscribe(dev, "devices/dev1/#", QoS::AtMostOnce),
        [ReasonCode(0)]
    );
    // 3.1.1 has one failure code: 0x80 on the wire.
    assert_eq!(
        h.subscribe(dev, "devices/dev2/#", QoS::AtMostOnce),
        [ReasonCode::UNSPECIFIED_ERROR]
    );
    h.publish(dev, "devices/dev1/t", "21", QoS::AtMostOnce, false);
    assert_eq!(publishes(&h.recv(dev)).len(), 1);

    // `deny alice/secret/#` takes writing away from alice too.
    h.publish(alice, "alice/secret/k", "s", QoS::AtLeastOnce, true);
    assert_eq!(acks(&h.recv(alice)), [(4, ReasonCode::NOT_AUTHORIZED)]);
}

#[test]
fn a_wide_subscription_does_not_deliver_denied_topics_live_or_retained() {
    // Readers may subscribe to sensors/# but not read sensors/secret; a writer fills both.
    let text = "user reader\ntopic read sensors/#\ntopic deny sensors/secret\nuser writer\ntopic write sensors/#\n";
    let mut h = with_acl(text);
    let writer = as_user(&mut h, "w", Some("writer"), V5);
    h.publish(writer, "sensors/secret", "s1", QoS::AtLeastOnce, true);
    h.publish(writer, "sensors/temp", "t1", QoS::AtLeastOnce, true);
    h.recv(writer);
    let reader = as_user(&mut h, "r", Some("reader"), V4);
    assert_eq!(
        h.subscribe(reader, "sensors/#", QoS::AtLeastOnce),
        [ReasonCode(1)]
    );
    let retained = h.recv(reader);
    let topics: Vec<&str> = publishes(&retained).iter().map(|p| &*p.topic).collect();
    assert_eq!(
        topics,
        ["sensors/temp"],
        "never a retained message it may not read"
    );
    let before = h.broker.metrics().acl_denied;
    h.publish(writer, "sensors/secret", "s2", QoS::AtLeastOnce, false);
    h.publish(writer, "sensors/temp", "t2", QoS::AtLeastOnce, false);
    let live = h.recv(reader);
    let topics: Vec<&str> = publishes(&live).iter().map(|p| &*p.topic).collect();
    assert_eq!(topics, ["sensors/temp"]);
    assert_eq!(h.broker.metrics().acl_denied, before + 1);
    // Shared subscriptions: only members that may read take part.
    let other = as_user(&mut h, "o", Some("writer"), V5);
    assert_eq!(
        h.subscribe(other, "$share/g/sensors/#", QoS::AtMostOnce),
        [ReasonCode::NOT_AUTHORIZED],
        "the writer has no read access"
    );
}

#[test]
fn a_will_on_a_forbidden_topic_refuses_the_connect() {
    let mut h = with_acl(ACL);
    let mut connect = connect_packet("a1", V5);
    connect.will = Some(Will {
        topic: "bob/status".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let alice = Login::Accepted {
        username: Some("alice".into()),
    };
    let (_, ack) = login_connect(&mut h, connect.clone(), alice.clone());
    assert_eq!(ack.code, ReasonCode::NOT_AUTHORIZED);
    connect.will.as_mut().unwrap().topic = "alice/status".into();
    let (_, ack) = login_connect(&mut h, connect, alice);
    assert_eq!(ack.code, ReasonCode::SUCCESS);
}

#[test]
fn datagram_publishes_are_checked_too() {
    let mut h = with_acl(ACL);
    let bob = as_user(&mut h, "b1", Some("bob"), V5);
    h.subscribe(bob, "alice/#", QoS::AtMostOnce);
    let anon = h.open();
    h.broker.set_quic_caps(
        anon,
        QuicCaps {
            datagram_max: Some(1200),
            mqtt_next: false,
        },
    );
    h.broker.set_login(anon, Login::Accepted { username: None });
    h.send(anon, Packet::Connect(Box::new(connect_packet("x", V5))));
    h.recv(anon);
    let before = h.broker.metrics();
    h.send_on(
        anon,
        StreamId::DATAGRAM,
        Packet::Publish(publish("alice/a", "forged", QoS::AtMostOnce, false, None)),
    );
    let after = h.broker.metrics();
    assert_eq!(after.datagrams_received, before.datagrams_received + 1);
    assert_eq!(after.acl_denied, before.acl_denied + 1);
    assert!(publishes(&h.recv(bob)).is_empty());
    assert!(h.recv(anon).is_empty(), "no answer to a QoS 0 datagram");
}

#[test]
fn reloading_the_acl_applies_to_existing_sessions() {
    // The same topic each time: decisions cached per connection must not outlive the ACL.
    let mut h = with_acl("topic read a/#\ntopic write a/#\n");
    let sub = as_user(&mut h, "s", None, V5);
    h.subscribe(sub, "a/#", QoS::AtMostOnce);
    let publisher = as_user(&mut h, "p", None, V5);
    h.publish(publisher, "a/1", "x", QoS::AtMostOnce, false);
    assert_eq!(publishes(&h.recv(sub)).len(), 1);
    h.broker.set_acl(Some(Arc::new(
        Acl::parse("topic write a/#\ntopic read b/#\n", Path::new("acl")).unwrap(),
    )));
    h.publish(publisher, "a/1", "x", QoS::AtMostOnce, false);
    assert!(publishes(&h.recv(sub)).is_empty());
    // Writing is cached too: taking it away takes effect at once.
    h.broker.set_acl(Some(Arc::new(
        Acl::parse("topic read a/#\n", Path::new("acl")).unwrap(),
    )));
    h.publish(publisher, "a/1", "x", QoS::AtLeastOnce, false);
    assert_eq!(acks(&h.recv(publisher)), [(4, ReasonCode::NOT_AUTHORIZED)]);
    assert!(publishes(&h.recv(sub)).is_empty());
    h.broker.set_acl(None);
    h.publish(publisher, "a/1", "x", QoS::AtMostOnce, false);
    assert_eq!(publishes(&h.recv(sub)).len(), 1);
}

#[test]
fn a_restored_session_queues_until_its_user_is_known_then_filters() {
    for (user, expected) in [("bob", 1), ("eve", 0)] {
        let mut h = with_acl(ACL);
        let mut connect = connect_packet("b1", V5);
        connect.clean_start = false;
        connect.properties.session_expiry_interval = Some(3600);
        let bob = Login::Accepted {
            username: Some("bob".into()),
        };
        let (conn, _) = login_connect(&mut h, connect.clone(), bob);
        assert_eq!(
            h.subscribe(conn, "alice/#", QoS::AtLeastOnce),
            [ReasonCode(1)]
        );
        h.lose(conn);
        // As after a restart: the store keeps no user name, so no rules yet.
        let sid = h.broker.client_ids[&ByteString::from("b1")];
        let session = h.broker.sessions.get_mut(&sid).unwrap();
        session.rules = None;
        session.username = None;
        let alice = as_user(&mut h, "a1", Some("alice"), V5);
        h.publish(alice, "alice/news", "queued", QoS::AtLeastOnce, false);
        h.recv(alice);
        assert_eq!(h.broker.sessions.get(&sid).unwrap().queue.len(), 1);
        // The user who comes back decides what of the queue it gets.
        let login = Login::Accepted {
            username: Some(user.into()),
        };
        let conn = h.open();
        h.broker.set_login(conn, login);
        h.send(conn, Packet::Connect(Box::new(connect)));
        let got = h.recv(conn);
        assert!(matches!(&got[0], Packet::ConnAck(a) if a.session_present));
        assert_eq!(publishes(&got).len(), expected, "{user}");
    }
}

#[test]
fn data_streams_and_server_streams_follow_the_same_rules() {
    let mut h = with_acl(ACL);
    let alice = as_user(&mut h, "a1", Some("alice"), V5);
    h.broker.stream_opened(alice, S4);
    // SUBSCRIBE and PUBLISH on a data stream: answered there, with the same codes.
    sub_on(&mut h, alice, S4, "bob/#", QoS::AtLeastOnce);
    sub_on(&mut h, alice, S4, "alice/#", QoS::AtLeastOnce);
    h.send_on(
        alice,
        S4,
        Packet::Publish(publish("bob/x", "no", QoS::AtLeastOnce, false, Some(11))),
    );
    let got = h.recv_streams(alice);
    let answers: Vec<(StreamId, Option<ReasonCode>)> = got
        .iter()
        .map(|(s, p)| match p {
            Packet::SubAck(a) => (*s, a.codes.first().copied()),
            Packet::PubAck(a) => (*s, Some(a.code)),
            _ => (*s, None),
        })
        .collect();
    assert_eq!(
        answers,
        [
            (S4, Some(ReasonCode::NOT_AUTHORIZED)),
            (S4, Some(ReasonCode(1))),
            (S4, Some(ReasonCode::NOT_AUTHORIZED)),
        ]
    );
    // Deliveries on per-topic server streams (MQTT-next flows) are checked like any other.
    let mut connect = connect_packet("b1", V5);
    connect
        .properties
        .user_properties
        .push(("quic-stream-mapping".into(), "topic".into()));
    let bob_conn = h.open();
    h.broker.set_quic_caps(
        bob_conn,
        QuicCaps {
            datagram_max: None,
            mqtt_next: true,
        },
    );
    h.broker.set_login(
        bob_conn,
        Login::Accepted {
            username: Some("bob".into()),
        },
    );
    h.send(bob_conn, Packet::Connect(Box::new(connect)));
    h.recv(bob_conn);
    assert_eq!(
        h.subscribe(bob_conn, "alice/#", QoS::AtMostOnce),
        [ReasonCode(0)]
    );
    // Bob may read alice/#: alice's message reaches him on a server stream; once a rule
    // denies him alice/news, alice still publishes there but bob gets only the other topic.
    h.publish(alice, "alice/news", "n", QoS::AtMostOnce, false);
    let got = h.recv_streams(bob_conn);
    assert_eq!(
        publishes(&got.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>()).len(),
        1
    );
    assert!(got.iter().all(|(s, _)| *s != StreamId::CONTROL), "{got:?}");
    h.broker.set_acl(Some(Arc::new(
        Acl::parse(
            &format!("{ACL}user bob\ntopic deny alice/news\n"),
            Path::new("acl"),
        )
        .unwrap(),
    )));
    h.publish(alice, "alice/other", "o", QoS::AtMostOnce, false);
    h.publish(alice, "alice/news", "n2", QoS::AtMostOnce, false);
    let got = h.recv_streams(bob_conn);
    let topics: Vec<String> = got
        .iter()
        .filter_map(|(_, p)| match p {
            Packet::Publish(p) => Some(p.topic.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(topics, ["alice/other"]);
}
