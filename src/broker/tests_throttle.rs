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

/// Fan-in QoS 1 beyond the subscriber's window, played round by round: each publisher that is
/// not paused publishes `burst` messages per round (and `lag` more after a pause: what was read
/// before it), the subscriber acknowledges up to `acks` of its inflight messages per round, and
/// every write is reported at once (the subscriber's connection never falls behind). Returns
/// each publisher's payloads as received in order, the pauses seen, and the longest queue.
struct FanIn {
    h: Harness,
    sub: ConnId,
    publishers: Vec<ConnId>,
    paused: Vec<bool>,
    /// Messages a paused publisher still gets in (read before its pause took effect).
    lag_left: Vec<usize>,
    next: Vec<u32>,
    received: Vec<Vec<u32>>,
    unacked: Vec<u16>,
    pauses: usize,
    resumes: usize,
    longest_queue: usize,
}

impl FanIn {
    fn new(max_queued: usize, window: u16, publishers: usize) -> FanIn {
        let mut config = Config::default();
        config.limits.max_queued_messages = max_queued;
        let mut h = Harness::with_config(config);
        let mut c = connect_packet("sub", V5);
        c.properties.receive_maximum = Some(window);
        let (sub, _) = h.connect_with(c);
        h.subscribe(sub, "t/#", QoS::AtLeastOnce);
        let publishers: Vec<ConnId> = (0..publishers)
            .map(|i| h.connect(&format!("pub{i}"), V5))
            .collect();
        h.broker.take_outputs();
        let n = publishers.len();
        FanIn {
            h,
            sub,
            publishers,
            paused: vec![false; n],
            lag_left: vec![0; n],
            next: vec![0; n],
            received: vec![Vec::new(); n],
            unacked: Vec::new(),
            pauses: 0,
            resumes: 0,
            longest_queue: 0,
        }
    }

    fn drain(&mut self) {
        for output in self.h.broker.take_outputs() {
            match output {
                Output::Transmit(t) => {
                    if t.conn == self.sub {
                        for p in publishes(&t.packets()) {
                            let text = std::str::from_utf8(&p.payload).unwrap();
                            let (i, seq) = text.split_once(':').unwrap();
                            self.received[i.parse::<usize>().unwrap()].push(seq.parse().unwrap());
                            self.unacked.push(p.packet_id.unwrap());
                        }
                    }
                    self.h
                        .broker
                        .handle_written(t.conn, t.accounted, self.h.now);
                }
                Output::PauseReading { conn, paused } => {
                    let i = self.publishers.iter().position(|p| *p == conn).unwrap();
                    assert_ne!(self.paused[i], paused, "pause and resume alternate");
                    self.paused[i] = paused;
                    if paused {
                        self.pauses += 1;
                        self.lag_left[i] = 24;
                    } else {
                        self.resumes += 1;
                    }
                }
                _ => {}
            }
        }
        let sid = self.h.broker.conns[&self.sub].session.unwrap();
        let queued = self.h.broker.sessions.get(&sid).unwrap().queue.len();
        self.longest_queue = self.longest_queue.max(queued);
    }

    /// One round: publishers in turn, then the subscriber's acknowledgements.
    fn round(&mut self, burst: usize, acks: usize, total: u32) {
        for i in 0..self.publishers.len() {
            for _ in 0..burst {
                if self.next[i] >= total {
                    break;
                }
                if self.paused[i] {
                    if self.lag_left[i] == 0 {
                        break;
                    }
                    self.lag_left[i] -= 1;
                }
                let payload = format!("{i}:{}", self.next[i]);
                let id = (self.next[i] % 1000 + 1) as u16;
                self.next[i] += 1;
                let p = publish("t/x", &payload, QoS::AtLeastOnce, false, Some(id));
                self.h.broker.handle_packet(
                    self.publishers[i],
                    StreamId::CONTROL,
                    Packet::Publish(p),
                    self.h.now,
                );
                self.drain();
            }
        }
        let n = acks.min(self.unacked.len());
        for id in self.unacked.drain(..n).collect::<Vec<_>>() {
            self.h.broker.handle_packet(
                self.sub,
                StreamId::CONTROL,
                Packet::PubAck(Ack::new(id)),
                self.h.now,
            );
            self.drain();
        }
    }
}

#[test]
fn a_full_window_pauses_the_publishers_so_fan_in_qos1_loses_nothing() {
    // 4 publishers, 8 messages a round each, against a subscriber that acknowledges 8 a round
    // with a window of 10: without the pause its queue (1,000) would overflow within rounds.
    let mut f = FanIn::new(1000, 10, 4);
    let total = 2000;
    for _ in 0..5000 {
        f.round(8, 8, total);
        if f.received.iter().all(|r| r.len() == total as usize) {
            break;
        }
    }
    let m = f.h.broker.metrics();
    assert_eq!(m.dropped_queue_full, 0, "nothing dropped");
    for (i, got) in f.received.iter().enumerate() {
        assert_eq!(
            *got,
            (0..total).collect::<Vec<_>>(),
            "publisher {i}: all, in order, once"
        );
    }
    assert!(f.pauses > 0, "the publishers were paused");
    assert_eq!(f.pauses, f.resumes, "and every pause ended");
    // High mark 256 (four windows of 10, at least 256) plus what each publisher still had in
    // flight when paused.
    assert!(
        f.longest_queue <= 256 + 4 * 24 + 4 * 8,
        "queue peaked at {}",
        f.longest_queue
    );
    assert!(
        f.longest_queue >= 256,
        "paused at the high mark, not before"
    );
    assert_eq!(m.stuck_subscribers, 0);
}

#[test]
fn a_window_that_never_opens_holds_publishers_no_longer_than_the_pause_limit() {
    let mut f = FanIn::new(1000, 10, 1);
    // No acknowledgements at all: paused once the queue reaches 256.
    for _ in 0..40 {
        f.round(8, 0, 10_000);
    }
    assert_eq!((f.pauses, f.resumes), (1, 0));
    let sent = f.next[0];
    f.h.now += Duration::from_millis(1000);
    f.h.broker.handle_timeout(f.h.now);
    f.drain();
    assert_eq!(
        (f.pauses, f.resumes),
        (1, 1),
        "released after max_publisher_pause_ms"
    );
    assert_eq!(f.h.broker.metrics().stuck_subscribers, 1);
    // Stuck: the publisher goes on unpaused however long the queue gets.
    for _ in 0..20 {
        f.round(8, 0, 10_000);
    }
    assert_eq!(f.next[0], sent + 160);
    assert_eq!(f.pauses, 1);
    // Once it acknowledges down to its low mark it may hold publishers again.
    for _ in 0..100 {
        f.round(0, 10, 10_000);
    }
    for _ in 0..60 {
        f.round(8, 0, 10_000);
    }
    assert_eq!(f.pauses, 2);
}
