//! The two kinds of client task of a message scenario: a publisher (`publish_loop`: up to
//! `--inflight` publishes at once, in sequence order, at `--rate` or as fast as acknowledged)
//! and a subscriber (`subscribe_loop`: takes deliveries in batches, tracks loss, duplicates,
//! order and latency per publisher). `run` starts them and adds up what they return.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytestring::ByteString;
use futures_util::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientError, Message, PublishOutcome};

use super::args::Plan;
use super::args::Scenario;
use super::lane::Lane;
use super::monitor::{Counters, ErrorLog};
use super::payload::{self, Clock, Header};
use super::stats::{histogram, micros, Recorder};
use super::tracker::{Seen, Tally};

/// What every task of a run shares.
pub struct Ctx {
    pub plan: Plan,
    pub clock: Clock,
    pub counters: Arc<Counters>,
    pub errors: ErrorLog,
}

/// A publisher yields to the other tasks after starting this many publishes in a row.
const YIELD_EVERY: u32 = 32;

pub(super) struct Published {
    pub(super) index: usize,
    pub(super) lane: Lane,
    pub(super) sent: u64,
    pub(super) ok: u64,
    pub(super) errors: u64,
    pub(super) last: Instant,
}

pub(super) struct Received {
    pub(super) index: usize,
    pub(super) lane: Lane,
    pub(super) tally: Tally,
    /// With --per-topic: latency by publisher id.
    pub(super) per_topic: AHashMap<u32, Histogram<u64>>,
    pub(super) first: Option<Instant>,
    pub(super) last: Option<Instant>,
}

/// What a publisher's completed publishes add up to.
struct Outcome {
    ok: u64,
    errors: u64,
    /// The connection failed: stop publishing.
    fatal: bool,
    last: Instant,
}

impl Outcome {
    fn handle(
        &mut self,
        ctx: &Ctx,
        (begun, result): (Instant, Result<PublishOutcome, ClientError>),
        recorder: &mut Option<Recorder>,
    ) {
        match result {
            Ok(_) => {
                let now = Instant::now();
                self.ok += 1;
                self.last = now;
                Counters::add(&ctx.counters.acked, 1);
                if let Some(r) = recorder {
                    r.record(micros(now.duration_since(begun)));
                }
            }
            Err(e) => {
                self.errors += 1;
                // A refusal concerns one message; anything else, the connection.
                self.fatal |= !matches!(e, ClientError::Rejected { .. });
                ctx.errors.record(&ctx.counters, "publish", e);
            }
        }
    }
}

pub(super) async fn publish_loop(
    ctx: Arc<Ctx>,
    index: usize,
    lane: Lane,
    start: Instant,
    mut recorder: Option<Recorder>,
) -> Published {
    let plan = &ctx.plan;
    let topic = ByteString::from(plan.publisher_topic(index));
    let id = plan.publisher_id(index);
    let deadline = plan.duration.map(|d| start + d);
    let mut out = Outcome {
        ok: 0,
        errors: 0,
        fatal: false,
        last: start,
    };
    let mut sent: u64 = 0;
    let mut streak = 0;
    {
        let lane = &lane;
        let mut window = FuturesUnordered::new();
        loop {
            if out.fatal || plan.count.is_some_and(|n| sent >= n) {
                break;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            if window.len() >= plan.inflight {
                if let Some(done) = window.next().await {
                    out.handle(&ctx, done, &mut recorder);
                }
                continue;
            }
            if let Some(per_second) = plan.rate {
                // Publishers take turns within each period rather than all sending at once:
                // independent sources are not in lockstep (and lockstep would pack every
                // topic's message into one QUIC packet, one loss delaying them all).
                let phase = index as f64 / plan.publishers.max(1) as f64;
                let due = start + Duration::from_secs_f64((sent as f64 + phase) / per_second);
                if due > now {
                    let wake = deadline.map_or(due, |d| d.min(due));
                    tokio::select! {
                        _ = tokio::time::sleep_until(wake.into()) => {}
                        Some(done) = window.next(), if !window.is_empty() => {
                            out.handle(&ctx, done, &mut recorder);
                        }
                    }
                    continue;
                }
            }
            streak += 1;
            if streak >= YIELD_EVERY {
                streak = 0;
                tokio::task::yield_now().await;
            }
            let header = Header {
                sent_nanos: ctx.clock.now_nanos(),
                publisher: id,
                seq: sent as u32,
            };
            let message =
                Message::new(topic.clone(), payload::encode(header, plan.size)).qos(plan.qos);
            let mut publish = Box::pin(async move {
                let begun = Instant::now();
                (begun, lane.publish(message).await)
            });
            // Start it now, before the next one exists: its request enters the connection's
            // FIFO queue (or the FIFO wait for room in it) in sequence order.
            match std::future::poll_fn(|cx| Poll::Ready(publish.as_mut().poll(cx))).await {
                Poll::Ready(done) => out.handle(&ctx, done, &mut recorder),
                Poll::Pending => window.push(publish),
            }
            sent += 1;
            Counters::add(&ctx.counters.sent, 1);
        }
        while let Some(done) = window.next().await {
            out.handle(&ctx, done, &mut recorder);
        }
    }
    Published {
        index,
        lane,
        sent,
        ok: out.ok,
        errors: out.errors,
        last: out.last,
    }
}

/// Messages a subscriber takes from its queue at once.
const RECV_BATCH: usize = 256;

pub(super) async fn subscribe_loop(
    ctx: Arc<Ctx>,
    index: usize,
    lane: Lane,
    mut latency: Recorder,
    unique: Arc<AtomicU64>,
    done: CancellationToken,
) -> Received {
    let plan = &ctx.plan;
    // `sub` stops by itself after --count messages.
    let target = plan.count.filter(|_| plan.scenario == Scenario::Sub);
    let mut tally = Tally::default();
    let mut per_topic: AHashMap<u32, Histogram<u64>> = AHashMap::new();
    let (mut first, mut last) = (None, None);
    let mut batch = Vec::with_capacity(RECV_BATCH);
    let cancelled = done.cancelled();
    tokio::pin!(cancelled);
    loop {
        tokio::select! {
            biased;
            _ = &mut cancelled => break,
            _ = lane.recv_many(&mut batch, RECV_BATCH) => {}
        };
        // One clock reading per batch: the messages in it arrived together.
        let now = Instant::now();
        let now_nanos = ctx.clock.at(now);
        // Shared counters are updated once per batch (every subscriber task adds to them).
        let (mut got, mut new_unique, mut stop) = (0, 0, false);
        for message in batch.drain(..) {
            let message = match message {
                Ok(message) => message,
                Err(e) => {
                    ctx.errors.record(&ctx.counters, "receive", e);
                    stop = true;
                    break;
                }
            };
            first.get_or_insert(now);
            last = Some(now);
            got += 1;
            match payload::decode(&message.payload) {
                Some(header) => {
                    let nanos = now_nanos.saturating_sub(header.sent_nanos);
                    latency.record(nanos / 1000);
                    if plan.per_topic {
                        per_topic
                            .entry(header.publisher)
                            .or_insert_with(histogram)
                            .saturating_record(nanos / 1000);
                    }
                    let seen = tally.observe(header.publisher, header.seq);
                    if seen != Seen::Duplicate {
                        new_unique += 1;
                    }
                    if seen != Seen::InOrder {
                        tracing::debug!(
                            subscriber = index,
                            publisher = header.publisher,
                            seq = header.seq,
                            ?seen,
                            "out of order"
                        );
                    }
                }
                None => tally.foreign(),
            }
            if target.is_some_and(|n| tally.received >= n) {
                stop = true;
                break;
            }
        }
        batch.clear();
        Counters::add(&ctx.counters.received, got);
        unique.fetch_add(new_unique, Ordering::Relaxed);
        if stop {
            break;
        }
    }
    Received {
        index,
        lane,
        tally,
        per_topic,
        first,
        last,
    }
}
