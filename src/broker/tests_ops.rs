//! Operations in memory: the `$SYS` tree on the broker's own timer, the admin API's queries
//! and actions (kick, subscribe on behalf, retained delete), and the counters behind
//! `/metrics`.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::auth::{Acl, Login};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn with_sys(interval: u64) -> Harness {
    let mut config = Config::default();
    config.admin.sys_interval = interval;
    let mut h = Harness::with_config(config);
    h.broker.start_sys(h.now);
    h
}

/// (topic, payload) of the PUBLISH packets received.
fn topics_and_payloads(packets: &[Packet]) -> Vec<(String, String)> {
    publishes(packets)
        .iter()
        .map(|p| {
            (
                p.topic.to_string(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            )
        })
        .collect()
}

#[test]
fn sys_is_retained_published_on_change_and_follows_the_clients() {
    let mut h = with_sys(10);
    h.advance(Duration::ZERO);
    let watcher = h.connect("watcher", V5);
    h.subscribe(watcher, "$SYS/broker/#", QoS::AtMostOnce);
    let first = topics_and_payloads(&h.recv(watcher));
    // Retained: everything arrives at once on subscribing, with mosquitto's names.
    let value = |list: &[(String, String)], topic: &str| {
        list.iter()
            .find(|(t, _)| t == topic)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        value(&first, "$SYS/broker/version").as_deref(),
        Some(concat!("mqttd ", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(
        value(&first, "$SYS/broker/uptime").as_deref(),
        Some("0 seconds")
    );
    assert_eq!(
        value(&first, "$SYS/broker/clients/connected").as_deref(),
        Some("0")
    );
    assert_eq!(
        value(&first, "$SYS/broker/load/messages/received/1min").as_deref(),
        Some("0.00")
    );
    assert!(first.len() > 50, "{}", first.len());

    // Nothing before the interval; then only what changed.
    h.advance(Duration::from_secs(9));
    assert!(h.recv(watcher).is_empty());
    h.advance(Duration::from_secs(1));
    let update = topics_and_payloads(&h.recv(watcher));
    assert_eq!(
        value(&update, "$SYS/broker/uptime").as_deref(),
        Some("10 seconds")
    );
    assert_eq!(
        value(&update, "$SYS/broker/clients/connected").as_deref(),
        Some("1")
    );
    assert_eq!(
        value(&update, "$SYS/broker/clients/maximum").as_deref(),
        Some("1")
    );
    assert_eq!(
        value(&update, "$SYS/broker/version"),
        None,
        "unchanged, not sent again"
    );
    assert!(update.len() < first.len());

    // 60 QoS 0 messages over the next interval: 360 a minute, folded into the load averages
    // with mosquitto's formula (1 - e^(-10/60) of the way for the 1 min average).
    let publisher = h.connect("pub", V4);
    for _ in 0..60 {
        h.publish(publisher, "x", "1", QoS::AtMostOnce, false);
    }
    h.recv(watcher);
    h.advance(Duration::from_secs(10));
    let update = topics_and_payloads(&h.recv(watcher));
    let expected = 360.0 * (1.0 - (-10.0f64 / 60.0).exp());
    assert_eq!(
        value(&update, "$SYS/broker/load/publish/received/1min"),
        Some(format!("{expected:.2}"))
    );
    assert_eq!(
        value(&update, "$SYS/broker/publish/messages/received").as_deref(),
        Some("60")
    );
    assert_eq!(
        value(&update, "$SYS/broker/publish/messages/dropped").as_deref(),
        Some("60"),
        "nobody subscribed to x"
    );
    // $SYS topics live in the retained store but are never persisted, and their own
    // publishing drops nothing.
    assert_eq!(h.broker.metrics().dropped_no_subscribers, 60);
}

#[test]
fn sys_off_publishes_nothing_and_wildcards_never_match_it() {
    let mut h = with_sys(0);
    h.advance(Duration::from_secs(60));
    assert_eq!(h.broker.retained_count(), 0);

    let mut h = with_sys(5);
    h.advance(Duration::ZERO);
    let all = h.connect("all", V5);
    h.subscribe(all, "#", QoS::AtMostOnce);
    h.subscribe(all, "+/broker/#", QoS::AtMostOnce);
    h.advance(Duration::from_secs(5));
    // [MQTT-4.7.2-1]
    assert!(h.recv(all).is_empty());
}

#[test]
fn sys_is_readable_according_to_the_acl() {
    let mut config = Config::default();
    config.admin.sys_interval = 10;
    let mut h = Harness::with_config(config);
    let acl = "user ops\ntopic read $SYS/#\nuser app\ntopic read app/#\n";
    h.broker
        .set_acl(Some(Arc::new(Acl::parse(acl, Path::new("acl")).unwrap())));
    h.broker.start_sys(h.now);
    h.advance(Duration::ZERO);
    let login = |user: &str| Login::Accepted {
        username: Some(ByteString::from(user)),
    };
    let connect_as = |h: &mut Harness, id: &str, user: &str| {
        let conn = h.open();
        h.broker.set_login(conn, login(user));
        h.send(conn, Packet::Connect(Box::new(connect_packet(id, V5))));
        h.recv(conn);
        conn
    };
    let ops = connect_as(&mut h, "ops", "ops");
    let app = connect_as(&mut h, "app", "app");
    assert_eq!(
        h.subscribe(ops, "$SYS/broker/uptime", QoS::AtMostOnce),
        vec![ReasonCode(0)]
    );
    assert_eq!(
        h.subscribe(app, "$SYS/broker/uptime", QoS::AtMostOnce),
        vec![ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(topics_and_payloads(&h.recv(ops)).len(), 1);
    h.advance(Duration::from_secs(10));
    assert_eq!(topics_and_payloads(&h.recv(ops)).len(), 1);
    assert!(h.recv(app).is_empty());
}

#[test]
fn kick_sends_0x98_to_v5_discards_the_session_and_unknown_clients_are_errors() {
    let mut h = Harness::new();
    let five = h.connect("five", V5);
    let four = h.connect("four", V4);
    assert_eq!(
        h.broker.kick("nobody", h.now),
        Err(AdminError::UnknownClient("nobody".into()))
    );
    h.broker.kick("five", h.now).unwrap();
    h.broker.kick("four", h.now).unwrap();
    assert_eq!(
        disconnect_code(&h.recv(five)),
        Some(ReasonCode::ADMINISTRATIVE_ACTION)
    );
    assert!(h.recv(four).is_empty(), "3.1.1 has no server DISCONNECT");
    assert!(h.closed.contains(&five) && h.closed.contains(&four));
    assert_eq!(h.broker.metrics().sessions, 0);
    assert_eq!(h.broker.metrics().server_disconnects.0[0x98], 2);
}

#[test]
fn subscribing_on_behalf_of_a_client_delivers_retained_and_live_messages() {
    let mut h = Harness::new();
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "s/1", "old", QoS::AtLeastOnce, true);
    let client = h.connect("c", V5);
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    assert_eq!(
        h.broker.admin_subscribe("c", "s/#", options, h.now),
        Ok(QoS::AtLeastOnce)
    );
    assert_eq!(
        topics_and_payloads(&h.recv(client)),
        vec![("s/1".into(), "old".into())]
    );
    let subs = h.broker.subscriptions_info(Some("c")).unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!((subs[0].filter.as_str(), subs[0].qos), ("s/#", 1));
    assert_eq!(h.broker.topics(), vec![("s/#".to_string(), 1)]);
    h.publish(publisher, "s/2", "new", QoS::AtMostOnce, false);
    assert_eq!(
        topics_and_payloads(&h.recv(client)),
        vec![("s/2".into(), "new".into())]
    );

    // Bad input changes nothing.
    assert_eq!(
        h.broker.admin_subscribe("c", "s/#/x", options, h.now),
        Err(AdminError::InvalidFilter("s/#/x".into()))
    );
    assert_eq!(
        h.broker.admin_subscribe("ghost", "s/#", options, h.now),
        Err(AdminError::UnknownClient("ghost".into()))
    );
    assert_eq!(
        h.broker.admin_unsubscribe("c", "t/#"),
        Err(AdminError::NoSubscription("c".into(), "t/#".into()))
    );
    assert_eq!(h.broker.subscriptions_info(None).unwrap().len(), 1);

    h.broker.admin_unsubscribe("c", "s/#").unwrap();
    h.publish(publisher, "s/3", "gone", QoS::AtMostOnce, false);
    assert!(h.recv(client).is_empty());
    assert!(h.broker.topics().is_empty());
}

#[test]
fn retained_messages_are_listed_and_deleted_without_a_publish() {
    let mut h = Harness::new();
    let publisher = h.connect("pub", V5);
    h.publish(publisher, "r/a", "1", QoS::AtMostOnce, true);
    h.publish(publisher, "r/b", "2", QoS::AtMostOnce, true);
    let watcher = h.connect("w", V5);
    h.subscribe(watcher, "r/#", QoS::AtMostOnce);
    h.recv(watcher);
    let list = h.broker.retained_matching("#").unwrap();
    assert_eq!(
        list.iter().map(|m| m.topic.to_string()).collect::<Vec<_>>(),
        ["r/a", "r/b"]
    );
    assert_eq!(h.broker.delete_retained("r/a"), Ok(true));
    assert_eq!(h.broker.delete_retained("r/a"), Ok(false));
    assert!(h.broker.delete_retained("r/+").is_err());
    assert!(h.recv(watcher).is_empty(), "deleting publishes nothing");
    assert_eq!(h.broker.retained_count(), 1);
    assert_eq!(h.broker.metrics().retained_messages, 1);
}

#[test]
fn metrics_count_packets_connects_sessions_and_latency() {
    let mut h = Harness::new();
    let sub = h.connect("sub", V4);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = h.connect("pub", V4);
    h.publish(publisher, "t", "hello", QoS::AtLeastOnce, false);
    h.recv(sub);
    h.recv(publisher);
    let m = h.broker.metrics();
    assert_eq!(m.received.packets[1], 2, "CONNECT");
    assert_eq!(m.received.packets[3], 1, "PUBLISH");
    // 1 + 1 + (2 + 1) + 2 + 5: fixed header, length, topic, packet id, payload.
    assert_eq!(m.received.bytes[3], 12);
    assert_eq!(m.sent.packets[3], 1);
    assert_eq!(m.sent.bytes[3], 12);
    assert_eq!(m.sent.packets[4], 1, "PUBACK to the publisher");
    assert_eq!(m.connacks.0[0], 2);
    assert_eq!(m.sessions_created, 2);
    assert_eq!(m.delivery_latency.count, 1);
    assert_eq!(
        m.delivery_latency.sum_us, 0,
        "delivered in the batch that received it"
    );
    assert_eq!(m.connections_by_transport, vec![("test".to_string(), 2)]);
    assert_eq!((m.subscriptions, m.sessions_connected), (1, 2));

    // A takeover of a clean session creates a new one; a persistent one is resumed.
    let mut persistent = connect_packet("sub", V4);
    persistent.clean_start = false;
    let (again, ack) = h.connect_with(persistent.clone());
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    let m = h.broker.metrics();
    assert_eq!(
        (
            m.sessions_taken_over,
            m.sessions_created,
            m.sessions_resumed
        ),
        (1, 3, 0)
    );
    assert_eq!(m.server_disconnects.0[0x8E], 1);
    h.lose(again);
    let (_, ack) = h.connect_with(persistent);
    assert!(ack.session_present);
    let m = h.broker.metrics();
    assert_eq!((m.sessions_resumed, m.connections_lost), (1, 1));
}
