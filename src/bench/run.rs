//! The message scenarios (pub, sub, fan-in, fan-out, pairs): connect every client, subscribe,
//! publish, wait for the deliveries, disconnect; and the connection phase they share with
//! `conn`.
//!
//! Each publisher and subscriber is its own tokio task, so the multi-thread runtime spreads
//! them over the cores. A publisher keeps up to `--inflight` publishes going at once in one
//! `FuturesUnordered`. Each is polled once as soon as it is made, outside tokio's cooperative
//! budget, so publishes reach the connection in sequence order (tokio's channels are FIFO) and
//! the order a subscriber sees is the order the broker kept. With `--rate` a publisher sends
//! message k at start + k/rate (catching up after a stall, never faster on average).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::codec::QoS;

use super::args::{Plan, Scenario};
use super::clients::{publish_loop, subscribe_loop, Ctx, Received};
use super::lane::{self, Lane};
use super::monitor::Counters;
use super::procstat::{self, Sample};
use super::report::{
    BrokerStats, ConnectionStats, DeliveryStats, GeneratorStats, PublishStats, Report,
};
use super::report::{QuicExtStats, TopicLatency};
use super::stats::{histogram, micros, rate, round3, Percentiles, Recorder, Shards};
use super::tracker::Tally;

/// A client to open: its role letter, index, and the filter a subscriber subscribes to.
pub struct Spec {
    pub role: char,
    pub index: usize,
    pub filter: Option<String>,
}

/// The outcome of the connection phase.
pub struct Opened {
    /// By spec order; `None` where connecting or subscribing failed.
    pub lanes: Vec<Option<Lane>>,
    pub setups: Vec<Duration>,
    pub began: Instant,
    /// When the last client was ready.
    pub finished: Instant,
}

impl Opened {
    pub fn stats(&self) -> ConnectionStats {
        let attempted = self.lanes.len() as u64;
        let established = self.lanes.iter().filter(|l| l.is_some()).count() as u64;
        let elapsed = self.finished.duration_since(self.began);
        ConnectionStats {
            attempted,
            established,
            failed: attempted - established,
            elapsed_s: round3(elapsed.as_secs_f64()),
            rate_per_s: rate(established, elapsed),
            setup_us: Percentiles::of_durations(&self.setups),
        }
    }
}

/// Opens the clients of `specs`, `--concurrency` at a time; with `per_second`, attempt k
/// starts no earlier than k / per_second after the first.
pub async fn connect_all(ctx: &Arc<Ctx>, specs: Vec<Spec>, per_second: Option<f64>) -> Opened {
    let semaphore = Arc::new(Semaphore::new(ctx.plan.concurrency));
    let began = Instant::now();
    let mut tasks = JoinSet::new();
    let count = specs.len();
    for (k, spec) in specs.into_iter().enumerate() {
        let ctx = ctx.clone();
        let semaphore = semaphore.clone();
        tasks.spawn(async move {
            if let Some(r) = per_second {
                let at = began + Duration::from_secs_f64(k as f64 / r);
                tokio::time::sleep_until(at.into()).await;
            }
            let _permit = semaphore.acquire_owned().await;
            let plan = &ctx.plan;
            let id = plan.client_id(spec.role, spec.index);
            let server = plan.server_for(spec.role, spec.index);
            let opened = match lane::open(plan, server, id, spec.filter.is_some()).await {
                Err(e) => Err(("connect", e)),
                Ok((lane, setup)) => match spec.filter {
                    None => Ok((lane, setup)),
                    Some(filter) => match lane.subscribe(filter, plan.qos).await {
                        Ok(_) => Ok((lane, setup)),
                        Err(e) => {
                            let _ = lane.close().await;
                            Err(("subscribe", e))
                        }
                    },
                },
            };
            let opened = match opened {
                Ok(ok) => {
                    Counters::add(&ctx.counters.connected, 1);
                    Some(ok)
                }
                Err((what, e)) => {
                    ctx.errors.record(&ctx.counters, what, e);
                    None
                }
            };
            (k, opened, Instant::now())
        });
    }
    let mut lanes: Vec<Option<Lane>> = (0..count).map(|_| None).collect();
    let mut setups = Vec::with_capacity(count);
    let mut finished = began;
    while let Some(joined) = tasks.join_next().await {
        let Ok((k, opened, at)) = joined else {
            continue;
        };
        if let Some((lane, setup)) = opened {
            if let Some(slot) = lanes.get_mut(k) {
                *slot = Some(lane);
            }
            setups.push(setup);
            finished = finished.max(at);
        }
    }
    Opened {
        lanes,
        setups,
        began,
        finished,
    }
}

/// Disconnects every lane at once.
pub async fn close_all(lanes: impl IntoIterator<Item = Lane>) {
    let mut tasks = JoinSet::new();
    for lane in lanes {
        tasks.spawn(async move {
            let _ = lane.close().await;
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// A broker reading, if there is a broker to read.
pub fn broker_sample(plan: &Plan) -> Option<Sample> {
    plan.broker_pid
        .and_then(|pid| procstat::sample(&pid.to_string()).ok())
}

/// This process's CPU time.
pub fn own_cpu() -> Duration {
    procstat::sample("self").map(|s| s.cpu).unwrap_or_default()
}

/// The wait for deliveries after the publishers finished also ends when none arrived for this
/// long (lost messages never do).
const QUIET: Duration = Duration::from_secs(2);

/// Runs pub, sub, fan-in, fan-out or pairs.
pub async fn run_messages(
    ctx: Arc<Ctx>,
    broker_rss_peak: impl Fn() -> u64,
) -> Result<Report, String> {
    let plan = &ctx.plan;
    let run_start = Instant::now();
    let broker_before = broker_sample(plan);

    let specs = (0..plan.subscribers)
        .map(|j| Spec {
            role: 's',
            index: j,
            filter: Some(plan.subscriber_filter(j)),
        })
        .chain((0..plan.publishers).map(|i| Spec {
            role: 'p',
            index: i,
            filter: None,
        }))
        .collect();
    let mut opened = connect_all(&ctx, specs, None).await;
    let connections = opened.stats();
    let mut lanes = std::mem::take(&mut opened.lanes).into_iter();
    let sub_lanes: Vec<Option<Lane>> = lanes.by_ref().take(plan.subscribers).collect();
    let pub_lanes: Vec<Option<Lane>> = lanes.collect();
    let no_one = |lanes: &[Option<Lane>]| !lanes.is_empty() && lanes.iter().all(Option::is_none);
    if no_one(&sub_lanes) || no_one(&pub_lanes) {
        close_all(sub_lanes.into_iter().chain(pub_lanes).flatten()).await;
        let why = ctx
            .errors
            .summary()
            .first()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        return Err(format!(
            "no client could connect to {}: {why}",
            plan.servers_text()
        ));
    }

    // The measured phase.
    let broker_start = broker_sample(plan);
    let own_start = own_cpu();
    let latency = Shards::new(8);
    let acks = Shards::new(8);
    let done = CancellationToken::new();
    let start = Instant::now();
    let mut subscribers = JoinSet::new();
    let mut unique_counts = Vec::new();
    for (j, lane) in sub_lanes.into_iter().enumerate() {
        let Some(lane) = lane else { continue };
        let unique = Arc::new(AtomicU64::new(0));
        unique_counts.push((j, unique.clone()));
        let subscriber = subscribe_loop(
            ctx.clone(),
            j,
            lane,
            Recorder::new(latency.clone(), j),
            unique,
            done.clone(),
        );
        // Unconstrained: a subscriber reads everything its queue holds before it yields, so
        // on a busy machine the publishers do not starve it (its queueing would count as
        // delivery latency, and a full queue drops QoS 0 on our side).
        subscribers.spawn(tokio::task::unconstrained(subscriber));
    }
    let mut publishers = JoinSet::new();
    for (i, lane) in pub_lanes.into_iter().enumerate() {
        let Some(lane) = lane else { continue };
        let recorder = (plan.qos != QoS::AtMostOnce).then(|| Recorder::new(acks.clone(), i));
        // Unconstrained: with tokio's cooperative budget, a publish started when the budget is
        // spent waits without taking its place in the queue, and a later one can overtake it.
        // The loop yields by itself instead (every YIELD_EVERY publishes, and whenever its
        // window is full and nothing completed).
        let publisher = publish_loop(ctx.clone(), i, lane, start, recorder);
        publishers.spawn(tokio::task::unconstrained(publisher));
    }
    let mut published = Vec::new();
    while let Some(joined) = publishers.join_next().await {
        if let Ok(p) = joined {
            published.push(p);
        }
    }
    published.sort_by_key(|p| p.index);
    let publish_end = published.iter().map(|p| p.last).max().unwrap_or(start);

    // Let the deliveries arrive.
    let mut received = Vec::new();
    if plan.scenario == Scenario::Sub {
        let deadline = plan.duration.map(|d| start + d);
        while !subscribers.is_empty() && deadline.is_none_or(|d| Instant::now() < d) {
            tokio::select! {
                Some(joined) = subscribers.join_next() => received.extend(joined.ok()),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    } else {
        let ok: Vec<(usize, u64)> = published.iter().map(|p| (p.index, p.ok)).collect();
        let deadline = Instant::now() + plan.drain;
        let (mut total, mut moved) = (u64::MAX, Instant::now());
        while Instant::now() < deadline && moved.elapsed() < QUIET {
            let now_total: u64 = unique_counts
                .iter()
                .map(|(_, u)| u.load(Ordering::Relaxed))
                .sum();
            if now_total != total {
                (total, moved) = (now_total, Instant::now());
            }
            let all_in = unique_counts.iter().all(|(j, unique)| {
                let expected: u64 = ok
                    .iter()
                    .filter(|(i, _)| plan.delivers(*i, *j))
                    .map(|(_, n)| n)
                    .sum();
                unique.load(Ordering::Relaxed) >= expected
            });
            if all_in {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    done.cancel();
    while let Some(joined) = subscribers.join_next().await {
        if let Ok(r) = joined {
            received.push(r);
        }
    }
    received.sort_by_key(|r| r.index);
    let broker_end = broker_sample(plan);
    let own_end = own_cpu();

    // The numbers, then goodbye.
    let delivery = (plan.subscribers > 0).then(|| {
        let ok: Vec<(usize, u32, u64)> = published
            .iter()
            .map(|p| (p.index, plan.publisher_id(p.index), p.ok))
            .collect();
        let tallies: Vec<(usize, &Tally)> = received.iter().map(|r| (r.index, &r.tally)).collect();
        let last = received
            .iter()
            .filter_map(|r| r.last)
            .max()
            .unwrap_or(start);
        // Publishers elsewhere started at some unknown time: count from the first message.
        let first = match plan.scenario {
            Scenario::Sub => received
                .iter()
                .filter_map(|r| r.first)
                .min()
                .unwrap_or(last),
            _ => start,
        };
        let mut d = delivery_stats(plan, &ok, &tallies, last.duration_since(first));
        d.latency_us = Percentiles::of(&latency.merged());
        if plan.per_topic {
            d.per_topic = Some(per_topic_latency(plan, &received));
        }
        d
    });
    let publish = (plan.publishers > 0).then(|| {
        let completed = published.iter().map(|p| p.ok).sum();
        let elapsed = publish_end.duration_since(start);
        PublishStats {
            sent: published.iter().map(|p| p.sent).sum(),
            completed,
            errors: published.iter().map(|p| p.errors).sum(),
            elapsed_s: round3(elapsed.as_secs_f64()),
            rate_per_s: rate(completed, elapsed),
            ack_latency_us: Percentiles::of(&acks.merged()),
        }
    });
    let messages = match (&delivery, &publish) {
        (Some(d), _) => d.unique,
        (None, Some(p)) => p.completed,
        (None, None) => 0,
    };
    let mut report = Report::new(
        plan,
        connections,
        GeneratorStats {
            cpu_s: round3(own_end.saturating_sub(own_start).as_secs_f64()),
        },
    );
    report.broker = broker_stats(
        plan,
        [broker_before, broker_start, broker_end],
        broker_rss_peak(),
        |cpu| (messages > 0).then(|| round3(micros(cpu) as f64 / messages as f64)),
    );
    report.publish = publish;
    report.delivery = delivery;
    if plan.quic_mode.is_some() {
        let lanes = published
            .iter()
            .map(|p| &p.lane)
            .chain(received.iter().map(|r| &r.lane));
        report.quic = Some(QuicExtStats::sum(lanes.map(super::lane::quic_stats)));
    }
    close_all(
        published
            .into_iter()
            .map(|p| p.lane)
            .chain(received.into_iter().map(|r| r.lane)),
    )
    .await;
    report.elapsed_s = round3(run_start.elapsed().as_secs_f64());
    report.errors = ctx.errors.summary();
    Ok(report)
}

/// Delivery latency per publisher (its topic), over every subscriber.
fn per_topic_latency(plan: &Plan, received: &[Received]) -> Vec<TopicLatency> {
    let ids: Vec<u32> = if plan.scenario == Scenario::Sub {
        // Publishers of another process: the ones heard from, by index.
        let mut ids: Vec<u32> = received
            .iter()
            .flat_map(|r| r.per_topic.keys().copied())
            .collect();
        ids.sort_by_key(|id| (id & 0xFFFF, *id));
        ids.dedup();
        ids
    } else {
        (0..plan.publishers).map(|i| plan.publisher_id(i)).collect()
    };
    ids.into_iter()
        .map(|id| {
            let i = (id & 0xFFFF) as usize;
            let mut h = histogram();
            for r in received {
                if let Some(mine) = r.per_topic.get(&id) {
                    // Same bounds everywhere, so adding cannot fail.
                    let _ = h.add(mine);
                }
            }
            TopicLatency {
                topic: plan.publisher_topic(i),
                latency_us: Percentiles::of(&h),
            }
        })
        .collect()
}

/// Broker figures from three samples (before connecting, start and end of the measured
/// phase); `per` turns the measured CPU time into a per-message figure.
pub fn broker_stats(
    plan: &Plan,
    [before, start, end]: [Option<Sample>; 3],
    sampled_peak: u64,
    per: impl FnOnce(Duration) -> Option<f64>,
) -> Option<BrokerStats> {
    let (pid, before, start, end) = (plan.broker_pid?, before?, start?, end?);
    let cpu = end.cpu.saturating_sub(start.cpu);
    Some(BrokerStats {
        pid,
        cpu_s: round3(cpu.as_secs_f64()),
        cpu_us_per_msg: per(cpu),
        cpu_us_per_connection: None,
        rss_before_kib: before.rss_kib,
        rss_after_kib: end.rss_kib,
        rss_peak_kib: sampled_peak.max(before.rss_kib).max(end.rss_kib),
        hwm_kib: end.hwm_kib,
    })
}

/// Deliveries against what was published: `published` is (publisher index, publisher id,
/// completed publishes), `tallies` (subscriber index, what it received).
pub fn delivery_stats(
    plan: &Plan,
    published: &[(usize, u32, u64)],
    tallies: &[(usize, &Tally)],
    elapsed: Duration,
) -> DeliveryStats {
    let unique: u64 = tallies.iter().map(|(_, t)| t.unique()).sum();
    let known = plan.scenario != Scenario::Sub;
    let (mut expected, mut lost) = (0, 0);
    for &(j, tally) in tallies {
        for &(i, id, ok) in published {
            if plan.delivers(i, j) {
                expected += ok;
                lost += ok.saturating_sub(tally.unique_from(id));
            }
        }
    }
    DeliveryStats {
        expected: known.then_some(expected),
        received: tallies.iter().map(|(_, t)| t.received).sum(),
        unique,
        lost: known.then_some(lost),
        gaps: tallies.iter().map(|(_, t)| t.gaps()).sum(),
        duplicates: tallies.iter().map(|(_, t)| t.duplicates()).sum(),
        reordered: tallies.iter().map(|(_, t)| t.reordered()).sum(),
        foreign: tallies.iter().map(|(_, t)| t.foreign).sum(),
        elapsed_s: round3(elapsed.as_secs_f64()),
        rate_per_s: rate(unique, elapsed),
        latency_us: None,
        per_topic: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::args::{BenchArgs, Plan};
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Harness {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn plan(line: &[&str]) -> Plan {
        let args = Harness::try_parse_from(std::iter::once("bench").chain(line.iter().copied()))
            .unwrap()
            .args;
        Plan::new(&args, 7).unwrap()
    }

    #[test]
    fn fan_in_expects_everything_once() {
        let p = plan(&["fan-in", "-c", "3"]);
        let published = [
            (0, p.publisher_id(0), 10),
            (1, p.publisher_id(1), 10),
            (2, p.publisher_id(2), 5),
        ];
        let mut tally = Tally::default();
        for seq in 0..10 {
            tally.observe(p.publisher_id(0), seq);
        }
        for seq in (0..10).filter(|s| s % 2 == 0) {
            tally.observe(p.publisher_id(1), seq);
        }
        tally.observe(p.publisher_id(1), 4);
        for seq in 0..6 {
            // One more than its publisher completed (a publish that failed yet arrived).
            tally.observe(p.publisher_id(2), seq);
        }
        let d = delivery_stats(&p, &published, &[(0, &tally)], Duration::from_secs(2));
        assert_eq!(d.expected, Some(25));
        assert_eq!(d.unique, 21);
        assert_eq!(
            d.lost,
            Some(5),
            "5 missing from publisher 1; publisher 2's extra one does not offset it"
        );
        assert_eq!(
            (d.received, d.duplicates, d.reordered, d.gaps),
            (22, 1, 0, 4)
        );
        assert_eq!(d.rate_per_s, 10.5);
    }

    #[test]
    fn pairs_and_fan_out_expectations() {
        let p = plan(&["pairs", "-c", "2"]);
        let published = [(0, p.publisher_id(0), 4), (1, p.publisher_id(1), 4)];
        let (mut a, mut b) = (Tally::default(), Tally::default());
        for seq in 0..4 {
            a.observe(p.publisher_id(0), seq);
        }
        for seq in [0, 1, 3] {
            b.observe(p.publisher_id(1), seq);
        }
        let d = delivery_stats(&p, &published, &[(0, &a), (1, &b)], Duration::from_secs(1));
        assert_eq!((d.expected, d.lost, d.unique), (Some(8), Some(1), 7));

        let p = plan(&["fan-out", "-c", "3"]);
        let published = [(0, p.publisher_id(0), 4)];
        let d = delivery_stats(
            &p,
            &published,
            &[(0, &a), (1, &a), (2, &Tally::default())],
            Duration::ZERO,
        );
        assert_eq!((d.expected, d.lost, d.unique), (Some(12), Some(4), 8));
        assert_eq!(d.rate_per_s, 0.0);

        let p = plan(&["sub"]);
        let d = delivery_stats(&p, &[], &[(0, &b)], Duration::from_secs(1));
        assert_eq!((d.expected, d.lost, d.unique, d.gaps), (None, None, 3, 1));
    }

    #[test]
    fn broker_figures_need_every_sample() {
        let p = plan(&["fan-in", "--broker-pid", "1"]);
        let s = |cpu_ms, rss| Sample {
            cpu: Duration::from_millis(cpu_ms),
            rss_kib: rss,
            hwm_kib: 9000,
        };
        let b = broker_stats(
            &p,
            [Some(s(0, 1000)), Some(s(500, 1200)), Some(s(2500, 3000))],
            4000,
            |cpu| Some(micros(cpu) as f64 / 1000.0),
        )
        .unwrap();
        assert_eq!((b.pid, b.cpu_s, b.cpu_us_per_msg), (1, 2.0, Some(2000.0)));
        assert_eq!(
            (b.rss_before_kib, b.rss_after_kib, b.rss_peak_kib, b.hwm_kib),
            (1000, 3000, 4000, 9000)
        );
        assert!(broker_stats(&p, [None, Some(s(0, 1)), Some(s(0, 1))], 0, |_| None).is_none());
        let no_pid = plan(&["fan-in"]);
        assert!(broker_stats(&no_pid, [Some(s(0, 1)); 3], 0, |_| None).is_none());
    }
}
