//! Order across connections (issue: Paho's `test_subscribe_options`): client B sends
//! SUBSCRIBE, a little later client A sends a matching QoS 1 PUBLISH; B must get it. Both
//! clients are connected and idle before each round, so the broker's thread is asleep and
//! wakes to find both connections readable at once: the broker must act in the order the
//! data arrived, not in the order its scheduler happens to run the two readers.
//!
//! Runs against the `mqttd` binary (its own runtime, the one users get), over TCP and QUIC,
//! 200 rounds each with a 100 µs gap between the two sends and no wait for the SUBACK.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::raw::{self, QuicClient, StreamClient, Transport};
use common::TestBroker;
use mqttd::codec::{Packet, ProtocolVersion, QoS};

const ROUNDS: usize = 200;
const GAP: Duration = Duration::from_micros(100);
/// Quiet time before each round: long enough for the broker's thread to go to sleep.
const IDLE: Duration = Duration::from_millis(5);
/// How long B waits for a message that should come (a miss costs this much).
const PATIENCE: Duration = Duration::from_millis(500);
/// Stop counting after this many misses (the answer is known by then).
const ENOUGH_MISSES: usize = 5;

fn spin(gap: Duration) {
    let start = Instant::now();
    while start.elapsed() < gap {
        std::hint::spin_loop();
    }
}

/// The two sides of a round, whatever the transport.
trait Side {
    /// Sends `packet`; returns when it is on the wire.
    fn put(&mut self, packet: &Packet);
    fn take(&mut self, patience: Duration) -> Option<Packet>;
}

impl<S: Transport> Side for StreamClient<S> {
    fn put(&mut self, packet: &Packet) {
        self.send(packet).expect("write");
    }
    fn take(&mut self, patience: Duration) -> Option<Packet> {
        self.next(patience).packet()
    }
}

impl Side for QuicClient {
    fn put(&mut self, packet: &Packet) {
        self.send_now(packet);
    }
    fn take(&mut self, patience: Duration) -> Option<Packet> {
        self.next(patience).packet()
    }
}

/// Waits for the delivery on `topic` (acknowledging QoS 1 deliveries); false if it does not
/// come.
fn delivered(b: &mut dyn Side, topic: &str) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(packet) = b.take(left) else {
            return false;
        };
        if let Some(ack) = raw::ack_for(&packet) {
            b.put(&ack);
        }
        if matches!(&packet, Packet::Publish(p) if p.topic == topic) {
            return true;
        }
    }
    false
}

/// `ROUNDS` rounds of: quiet, B subscribes, 100 µs, A publishes; B must get the message.
/// Returns the rounds B missed.
fn rounds(name: &str, b: &mut dyn Side, a: &mut dyn Side) -> Vec<usize> {
    let mut misses = Vec::new();
    for round in 0..ROUNDS {
        let topic = format!("order/{name}/{round}");
        let id = (round % 60_000) as u16 + 1;
        std::thread::sleep(IDLE);
        b.put(&raw::subscribe(&topic, QoS::AtLeastOnce, id));
        spin(GAP);
        a.put(&raw::publish(
            &topic,
            QoS::AtLeastOnce,
            Some(id),
            bytes::Bytes::from_static(b"in order"),
        ));
        if !delivered(b, &topic) {
            misses.push(round);
            if misses.len() >= ENOUGH_MISSES {
                break;
            }
        }
        assert!(
            matches!(a.take(PATIENCE), Some(Packet::PubAck(_))),
            "{name} round {round}: PUBACK to the publisher"
        );
    }
    misses
}

fn tcp_rounds(version: ProtocolVersion) {
    let broker = TestBroker::start();
    let mut b = StreamClient::tcp(broker.addr, &common::unique("order-b"), version);
    let mut a = StreamClient::tcp(broker.addr, &common::unique("order-a"), version);
    let misses = rounds("tcp", &mut b, &mut a);
    assert!(
        misses.is_empty(),
        "{version:?} over TCP: B missed the message published 100 µs after its SUBSCRIBE in \
         rounds {misses:?}"
    );
}

#[test]
fn subscribe_then_publish_from_another_tcp_connection_v311() {
    tcp_rounds(ProtocolVersion::V3_1_1);
}

#[test]
fn subscribe_then_publish_from_another_tcp_connection_v5() {
    tcp_rounds(ProtocolVersion::V5);
}

#[test]
fn subscribe_then_publish_from_another_quic_connection() {
    let broker = TestBroker::start();
    let (addr, ca) = (broker.quic_addr.unwrap(), broker.cert_path.clone().unwrap());
    let v = ProtocolVersion::V5;
    let mut b = QuicClient::connect(addr, &ca, &common::unique("order-qb"), v);
    let mut a = QuicClient::connect(addr, &ca, &common::unique("order-qa"), v);
    let misses = rounds("quic", &mut b, &mut a);
    assert!(
        misses.is_empty(),
        "QUIC: B missed the message published 100 µs after its SUBSCRIBE in rounds {misses:?}"
    );
}
