//! Backpressure from a subscriber that is behind to its publishers (`throttle.rs`): the
//! publisher's reads pause instead of QoS 0 being dropped, resume when the subscriber catches
//! up, and a subscriber that stays behind cannot stall publishers longer than the limit.

use super::*;

/// A 5.0 subscriber on `t` at `qos` and a publisher; the subscriber's writes are never
/// reported, so it falls behind once the soft limit (2 MiB) of unwritten bytes is passed.
fn setup(pause_ms: u64, qos: QoS) -> (Harness, ConnId, ConnId) {
    let mut config = Config::default();
    config.limits.max_publisher_pause_ms = pause_ms;
    let mut h = Harness::with_config(config);
    let sub = h.connect("sub", V5);
    h.subscribe(sub, "t", qos);
    let publ = h.connect("pub", V5);
    (h, sub, publ)
}

/// Publishes `n` QoS 0 messages of 600 KiB without reporting writes; returns the outputs.
fn flood(h: &mut Harness, publ: ConnId, n: usize) -> Vec<Output> {
    let big = "x".repeat(600 * 1024);
    let mut outputs = Vec::new();
    for _ in 0..n {
        h.broker.handle_packet(
            publ,
            StreamId::CONTROL,
            Packet::Publish(publish("t", &big, QoS::AtMostOnce, false, None)),
            h.now,
        );
        outputs.extend(h.broker.take_outputs());
    }
    outputs
}

fn pauses(outputs: &[Output], conn: ConnId) -> Vec<bool> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::PauseReading { conn: c, paused } if *c == conn => Some(*paused),
            _ => None,
        })
        .collect()
}

fn delivered(outputs: &[Output], conn: ConnId) -> usize {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Transmit(t) if t.conn == conn => Some(publishes(&t.packets()).len()),
            _ => None,
        })
        .sum()
}

#[test]
fn a_subscriber_behind_pauses_the_publisher_instead_of_dropping_qos0() {
    let (mut h, sub, publ) = setup(1000, QoS::AtMostOnce);
    let outputs = flood(&mut h, publ, 6);
    assert_eq!(
        pauses(&outputs, publ),
        [true],
        "paused once, not per message"
    );
    assert_eq!(
        delivered(&outputs, sub),
        6,
        "below the hard limit nothing is dropped"
    );
    assert_eq!(h.broker.metrics().dropped_qos0, 0);
    assert_eq!(h.broker.metrics().publisher_pauses, 1);
    // The subscriber catches up: the publisher is read again.
    h.broker.handle_written(sub, usize::MAX / 2, h.now);
    assert_eq!(pauses(&h.broker.take_outputs(), publ), [false]);
}

#[test]
fn past_the_hard_limit_qos0_is_dropped_even_while_the_publisher_is_paused() {
    let (mut h, sub, publ) = setup(1000, QoS::AtMostOnce);
    // 16 x 2 MiB hard limit: 54 x 600 KiB fit, later ones are dropped.
    let outputs = flood(&mut h, publ, 70);
    let got = delivered(&outputs, sub);
    assert!((53..70).contains(&got), "delivered {got}");
    assert_eq!(h.broker.metrics().dropped_qos0, 70 - got as u64);
}

#[test]
fn a_subscriber_that_stays_behind_cannot_stall_publishers_past_the_limit() {
    let (mut h, sub, publ) = setup(500, QoS::AtMostOnce);
    let outputs = flood(&mut h, publ, 5);
    assert_eq!(pauses(&outputs, publ), [true]);
    // Not yet: the timer fires at 500 ms.
    h.now += Duration::from_millis(499);
    h.broker.handle_timeout(h.now);
    assert!(pauses(&h.broker.take_outputs(), publ).is_empty());
    h.now += Duration::from_millis(1);
    h.broker.handle_timeout(h.now);
    assert_eq!(pauses(&h.broker.take_outputs(), publ), [false]);
    assert_eq!(h.broker.metrics().stuck_subscribers, 1);
    // Stuck: it holds no one any more, and QoS 0 to it is dropped as before.
    let outputs = flood(&mut h, publ, 2);
    assert!(pauses(&outputs, publ).is_empty());
    assert_eq!(delivered(&outputs, sub), 0);
    assert_eq!(h.broker.metrics().dropped_qos0, 2);
    // Once it catches up it may hold publishers again.
    h.broker.handle_written(sub, usize::MAX / 2, h.now);
    h.broker.take_outputs();
    let outputs = flood(&mut h, publ, 5);
    assert_eq!(pauses(&outputs, publ), [true]);
}

#[test]
fn qos1_to_a_subscriber_behind_pauses_the_publisher_and_queues() {
    let (mut h, sub, publ) = setup(1000, QoS::AtLeastOnce);
    let big = "x".repeat(600 * 1024);
    let mut outputs = Vec::new();
    for i in 0..8u16 {
        h.broker.handle_packet(
            publ,
            StreamId::CONTROL,
            Packet::Publish(publish("t", &big, QoS::AtLeastOnce, false, Some(i + 1))),
            h.now,
        );
        outputs.extend(h.broker.take_outputs());
    }
    assert_eq!(pauses(&outputs, publ), [true]);
    let sent = delivered(&outputs, sub);
    assert!(
        sent < 8,
        "QoS 1 waits in the queue while behind, sent {sent}"
    );
    h.broker.handle_written(sub, usize::MAX / 2, h.now);
    let outputs = h.broker.take_outputs();
    assert_eq!(pauses(&outputs, publ), [false]);
    assert!(delivered(&outputs, sub) > 0, "the queue drains");
}

#[test]
fn a_paused_publisher_that_goes_away_is_forgotten_and_no_one_holds_a_gone_subscriber() {
    let (mut h, sub, publ) = setup(1000, QoS::AtMostOnce);
    flood(&mut h, publ, 5);
    h.lose(publ);
    h.broker.take_outputs();
    // The subscriber catching up resumes nobody (the publisher is gone).
    h.broker.handle_written(sub, usize::MAX / 2, h.now);
    assert!(pauses(&h.broker.take_outputs(), publ).is_empty());
    // A new publisher paused by the subscriber is resumed when the subscriber goes away.
    let publ2 = h.connect("pub2", V5);
    let outputs = flood(&mut h, publ2, 5);
    assert_eq!(pauses(&outputs, publ2), [true]);
    h.broker.connection_lost(sub, h.now);
    let outputs = h.broker.take_outputs();
    assert_eq!(pauses(&outputs, publ2), [false]);
    h.now += Duration::from_secs(2);
    h.broker.handle_timeout(h.now);
    assert!(pauses(&h.broker.take_outputs(), publ2).is_empty());
}

#[test]
fn a_client_subscribed_to_its_own_topic_is_never_paused_by_itself() {
    let mut config = Config::default();
    config.limits.max_publisher_pause_ms = 1000;
    let mut h = Harness::with_config(config);
    let c = h.connect("self", V5);
    h.subscribe(c, "t", QoS::AtMostOnce);
    let outputs = flood(&mut h, c, 6);
    assert!(pauses(&outputs, c).is_empty());
}
