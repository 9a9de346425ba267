//! SIGKILL under load: a QoS 1 and a QoS 2 publisher feed a persistent subscriber session while
//! the broker is killed at random moments and restarted on the same data directory. Every
//! message whose PUBACK (QoS 1) or PUBCOMP (QoS 2) the publisher received must reach the
//! subscriber; QoS 2 messages exactly once (QoS 1 may come twice).
//!
//! All three clients keep persistent sessions and behave as the spec asks on reconnection:
//! publishers resend unacknowledged PUBLISH packets with DUP and PUBREL for those past PUBREC
//! [MQTT-4.4.0-1]; the subscriber remembers QoS 2 packet ids it answered with PUBREC until
//! PUBREL, and does not deliver a PUBLISH with such an id again (4.3.3, Method B).
//! Rounds alternate `--durability batched` and `fsync`. The seed of the kill moments is
//! printed; `MQTTD_CRASH_SEED=N` replays one.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "persistence/support.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqttd::codec::{Ack, Disconnect, Packet, Publish, QoS, ReasonCode};
use support::*;

const ROUNDS: usize = 4;
/// Publishes each publisher keeps unacknowledged.
const WINDOW: usize = 16;

#[derive(Default)]
struct Shared {
    addr: Mutex<Option<SocketAddr>>,
    stop_publishing: AtomicBool,
    stop_all: AtomicBool,
    subscribed: AtomicBool,
    /// Payload -> times the subscriber's application got it.
    received: Mutex<HashMap<String, u32>>,
    /// Reconnections that found no session (must stay 0).
    sessions_lost: Mutex<Vec<String>>,
}

impl Shared {
    fn addr(&self) -> Option<SocketAddr> {
        *self.addr.lock().unwrap()
    }
}

/// What one publisher saw acknowledged.
struct Acked {
    name: String,
    acked: Vec<u64>,
}

async fn publisher(name: &'static str, qos: QoS, shared: Arc<Shared>) -> Acked {
    let mut next_seq = 0u64;
    let mut next_pid = 0u16;
    // packet id -> (sequence number, PUBREC received)
    let mut outstanding: BTreeMap<u16, (u64, bool)> = BTreeMap::new();
    let mut acked = Vec::new();
    let mut first = true;
    'connection: loop {
        let Some(mut raw) = connect_persistent(&shared, name, &mut first).await else {
            break;
        };
        for (&pid, &(seq, released)) in &outstanding {
            let packet = if released {
                Packet::PubRel(Ack::new(pid))
            } else {
                message(name, seq, qos, pid, true)
            };
            if raw.send(&packet).await.is_err() {
                continue 'connection;
            }
        }
        loop {
            while !shared.stop_publishing.load(Ordering::SeqCst) && outstanding.len() < WINDOW {
                next_pid = loop {
                    next_pid = next_pid % u16::MAX + 1;
                    if !outstanding.contains_key(&next_pid) {
                        break next_pid;
                    }
                };
                let seq = next_seq;
                next_seq += 1;
                outstanding.insert(next_pid, (seq, false));
                if raw
                    .send(&message(name, seq, qos, next_pid, false))
                    .await
                    .is_err()
                {
                    continue 'connection;
                }
            }
            if shared.stop_publishing.load(Ordering::SeqCst) && outstanding.is_empty() {
                let _ = raw
                    .send(&Packet::Disconnect(Disconnect::new(
                        ReasonCode::NORMAL_DISCONNECTION,
                    )))
                    .await;
                break 'connection;
            }
            match raw.read(Duration::from_millis(200)).await {
                Read::Packet(Packet::PubAck(a)) if qos == QoS::AtLeastOnce => {
                    if let Some((seq, _)) = outstanding.remove(&a.packet_id) {
                        acked.push(seq);
                    }
                }
                Read::Packet(Packet::PubRec(a)) if qos == QoS::ExactlyOnce => {
                    if let Some(entry) = outstanding.get_mut(&a.packet_id) {
                        entry.1 = true;
                    }
                    if raw
                        .send(&Packet::PubRel(Ack::new(a.packet_id)))
                        .await
                        .is_err()
                    {
                        continue 'connection;
                    }
                }
                Read::Packet(Packet::PubComp(a)) if qos == QoS::ExactlyOnce => {
                    if let Some((seq, true)) = outstanding.get(&a.packet_id).copied() {
                        outstanding.remove(&a.packet_id);
                        acked.push(seq);
                    }
                }
                Read::Packet(other) => panic!("{name}: unexpected {other:?}"),
                Read::Closed => continue 'connection,
                Read::Timeout => {}
            }
        }
    }
    Acked {
        name: name.into(),
        acked,
    }
}

fn message(name: &str, seq: u64, qos: QoS, pid: u16, dup: bool) -> Packet {
    let Packet::Publish(mut p) = publish(
        &format!("load/{name}"),
        &format!("{name}/{seq}"),
        qos,
        false,
        Some(pid),
    ) else {
        unreachable!()
    };
    p.dup = dup;
    Packet::Publish(p)
}

/// Connects `name` with its persistent session (clean start only the first time), retrying
/// while the broker is down; records a session the broker lost. `None` once the test stops.
async fn connect_persistent(shared: &Shared, name: &str, first: &mut bool) -> Option<Raw> {
    loop {
        if shared.stop_all.load(Ordering::SeqCst) {
            return None;
        }
        let Some(addr) = shared.addr() else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let mut connect = persistent(name, 3600);
        connect.clean_start = *first;
        let Ok((raw, ack)) = Raw::connect(addr, connect).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if !*first && !ack.session_present {
            shared.sessions_lost.lock().unwrap().push(name.into());
        }
        *first = false;
        return Some(raw);
    }
}

async fn subscriber(shared: Arc<Shared>) {
    let name = "crash-sub";
    // QoS 2 packet ids answered with PUBREC, awaiting PUBREL: kept across reconnections.
    let mut awaiting_pubrel: HashSet<u16> = HashSet::new();
    let mut first = true;
    'connection: loop {
        let Some(mut raw) = connect_persistent(&shared, name, &mut first).await else {
            return;
        };
        if !shared.subscribed.load(Ordering::SeqCst) {
            if raw
                .send(&subscribe("load/#", QoS::ExactlyOnce))
                .await
                .is_err()
            {
                continue;
            }
            match raw.read(Duration::from_secs(3)).await {
                Read::Packet(Packet::SubAck(_)) => shared.subscribed.store(true, Ordering::SeqCst),
                _ => continue,
            }
        }
        loop {
            let answer = match raw.read(Duration::from_millis(100)).await {
                Read::Packet(Packet::Publish(p)) => on_publish(&p, &mut awaiting_pubrel, &shared),
                Read::Packet(Packet::PubRel(a)) => {
                    awaiting_pubrel.remove(&a.packet_id);
                    Packet::PubComp(Ack::new(a.packet_id))
                }
                Read::Packet(other) => panic!("subscriber: unexpected {other:?}"),
                Read::Closed => continue 'connection,
                Read::Timeout => {
                    if shared.stop_all.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
            };
            if raw.send(&answer).await.is_err() {
                continue 'connection;
            }
        }
    }
}

/// Delivers to the "application" (the `received` counts) and returns the acknowledgement.
fn on_publish(p: &Publish, awaiting_pubrel: &mut HashSet<u16>, shared: &Shared) -> Packet {
    let id = p.packet_id.expect("QoS 1/2 delivery");
    let deliver = match p.qos {
        QoS::ExactlyOnce => awaiting_pubrel.insert(id),
        _ => true,
    };
    if deliver {
        *shared
            .received
            .lock()
            .unwrap()
            .entry(payload(p))
            .or_default() += 1;
    }
    match p.qos {
        QoS::ExactlyOnce => Packet::PubRec(Ack::new(id)),
        _ => Packet::PubAck(Ack::new(id)),
    }
}

/// xorshift64*: enough randomness for kill moments, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

async fn start(data: &std::path::Path, log: &std::path::Path, durability: &str) -> BrokerProcess {
    let (data, log, durability) = (data.to_owned(), log.to_owned(), durability.to_owned());
    tokio::task::spawn_blocking(move || {
        BrokerProcess::start(&data, &log, &["--durability", &durability])
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn sigkill_under_qos1_and_qos2_load_loses_no_acknowledged_message() {
    let seed = std::env::var("MQTTD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed {seed} (MQTTD_CRASH_SEED={seed} replays the kill moments)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("broker.log");
    let modes = ["batched", "fsync"];

    let shared = Arc::new(Shared::default());
    let mut broker = start(&data, &log, modes[0]).await;
    *shared.addr.lock().unwrap() = Some(broker.addr);
    let sub = tokio::spawn(subscriber(shared.clone()));
    for _ in 0..100 {
        if shared.subscribed.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(shared.subscribed.load(Ordering::SeqCst), "subscribed");
    let pubs = [
        tokio::spawn(publisher("q1", QoS::AtLeastOnce, shared.clone())),
        tokio::spawn(publisher("q2", QoS::ExactlyOnce, shared.clone())),
    ];

    let mut kills = Vec::new();
    for round in 0..ROUNDS {
        let after = Duration::from_millis(500 + rng.below(800));
        tokio::time::sleep(after).await;
        let delivered: u32 = shared.received.lock().unwrap().values().sum();
        let b = broker;
        tokio::task::spawn_blocking(move || b.kill9())
            .await
            .unwrap();
        *shared.addr.lock().unwrap() = None;
        kills.push((after, modes[round % 2], delivered));
        broker = start(&data, &log, modes[(round + 1) % 2]).await;
        *shared.addr.lock().unwrap() = Some(broker.addr);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    shared.stop_publishing.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for p in pubs {
        acked.push(
            tokio::time::timeout(Duration::from_secs(20), p)
                .await
                .expect("publishers finish their outstanding messages")
                .unwrap(),
        );
    }
    // Wait until the subscriber has everything acknowledged (or give up after 10 s).
    let expected: Vec<String> = acked
        .iter()
        .flat_map(|a| a.acked.iter().map(move |seq| format!("{}/{seq}", a.name)))
        .collect();
    for _ in 0..100 {
        let complete = {
            let received = shared.received.lock().unwrap();
            expected.iter().all(|m| received.contains_key(m))
        };
        if complete {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Anything still to come (a duplicate) has a moment to arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    shared.stop_all.store(true, Ordering::SeqCst);
    let _ = tokio::time::timeout(Duration::from_secs(5), sub).await;
    let log_tail = broker.log_tail(30);
    tokio::task::spawn_blocking(move || broker.stop())
        .await
        .unwrap();

    let received = shared.received.lock().unwrap().clone();
    let q1_dups = received
        .iter()
        .filter(|(m, n)| m.starts_with("q1/") && **n > 1)
        .count();
    eprintln!(
        "kills (after, durability, delivered so far): {kills:?}; acknowledged: q1 {} q2 {}; \
         received {} distinct, {q1_dups} QoS 1 duplicates",
        acked[0].acked.len(),
        acked[1].acked.len(),
        received.len()
    );
    assert!(
        shared.sessions_lost.lock().unwrap().is_empty(),
        "a reconnection found no session: {:?}",
        shared.sessions_lost.lock().unwrap()
    );
    // The test means something only if traffic flowed between the kills.
    for pair in kills.windows(2) {
        assert!(
            pair[1].2 > pair[0].2,
            "no delivery between kills: {kills:?}"
        );
    }
    assert!(acked.iter().all(|a| a.acked.len() > 50), "too little load");
    let missing: Vec<&String> = expected
        .iter()
        .filter(|m| !received.contains_key(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages never reached the subscriber, e.g. {:?} (seed {seed}); broker log:\n{log_tail}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let q2_dups: Vec<_> = received
        .iter()
        .filter(|(m, n)| m.starts_with("q2/") && **n > 1)
        .collect();
    assert!(
        q2_dups.is_empty(),
        "QoS 2 delivered more than once: {q2_dups:?} (seed {seed})"
    );
}
