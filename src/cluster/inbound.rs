//! The other nodes' messages, from NATS to the broker task.
//!
//! One core NATS subscription (QoS 0), one ordered consumer of the stream starting at the
//! messages published after this node joined (QoS 1/2), one watch of the retained bucket
//! (every key's last value first, then each change). Each node reads everything once and the
//! broker matches locally; a node's own messages come back too and are dropped by the node
//! header. Sending to the broker task waits when its queue is full: backpressure into NATS.

use std::time::{Instant, SystemTime};

use async_nats::jetstream;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::nats::Joined;
use super::subject::decode_topic;
use super::{ClusterError, Names, NODE_HEADER};
use crate::broker::decode_message;
use crate::handoff::{ClusterEvent, Event};

/// Longest pull request of the stream consumer (its idle heartbeat is half of it).
const CONSUMER_EXPIRES: std::time::Duration = std::time::Duration::from_secs(2);

/// After this long without a message, the stream consumer checks that the stream has nothing
/// newer (one JetStream request per quiet period), and is made again if it has.
const STALL_CHECK: std::time::Duration = std::time::Duration::from_secs(3);

pub(super) async fn start(
    joined: &Joined,
    names: &Names,
    events: mpsc::Sender<Event>,
) -> Result<Vec<JoinHandle<()>>, ClusterError> {
    let js_err = |what: &str, e: &dyn std::fmt::Display| ClusterError::JetStream {
        what: what.to_string(),
        reason: e.to_string(),
    };
    let qos0 = joined
        .client
        .subscribe(names.qos0_subject(">"))
        .await
        .map_err(|e| js_err("core subscription", &e))?;
    let filter = names.stream_subject(">");
    let consumer = joined
        .stream
        .create_consumer(ordered_config(
            &filter,
            jetstream::consumer::DeliverPolicy::New,
        ))
        .await
        .map_err(|e| js_err("stream consumer", &e))?;
    let after = consumer.cached_info().delivered.stream_sequence;
    let stream = consumer
        .messages()
        .await
        .map_err(|e| js_err("stream consumer", &e))?;
    let reader = StreamReader {
        stream: joined.stream.clone(),
        filter,
        after,
    };
    let watch = joined
        .retained
        .watch_with_history(">")
        .await
        .map_err(|e| js_err("retained bucket watch", &e))?;
    let node = names.node.clone();
    Ok(vec![
        tokio::spawn(read_core(qos0, node.clone(), events.clone())),
        tokio::spawn(reader.run(stream, events.clone())),
        tokio::spawn(watch_retained(watch, events)),
    ])
}

fn from_self(headers: Option<&async_nats::HeaderMap>, node: &str) -> bool {
    headers
        .and_then(|h| h.get(NODE_HEADER))
        .is_some_and(|v| v.as_str() == node)
}

/// Decodes a message from another node and hands it to the broker; false when the broker is
/// gone.
async fn deliver(events: &mpsc::Sender<Event>, payload: &[u8], seq: Option<u64>) -> bool {
    match decode_message(payload, Instant::now(), SystemTime::now()) {
        Ok(mut m) => {
            m.cluster_seq = seq;
            events
                .send(Event::Cluster(ClusterEvent::Message(Box::new(m))))
                .await
                .is_ok()
        }
        Err(e) => {
            tracing::warn!(error = %e, "undecodable message from another node dropped");
            true
        }
    }
}

async fn read_core(mut sub: async_nats::Subscriber, node: String, events: mpsc::Sender<Event>) {
    while let Some(m) = sub.next().await {
        if from_self(m.headers.as_ref(), &node) {
            continue;
        }
        if !deliver(&events, &m.payload, None).await {
            return;
        }
    }
}

/// The stream consumer's configuration: pull requests of 2 s with 1 s idle heartbeats, so a
/// consumer lost with its NATS server is noticed within seconds, not the 30 to 60 s of the
/// defaults (tests/cluster_liveness.rs).
fn ordered_config(
    filter: &str,
    deliver_policy: jetstream::consumer::DeliverPolicy,
) -> jetstream::consumer::pull::OrderedConfig {
    jetstream::consumer::pull::OrderedConfig {
        filter_subject: filter.to_string(),
        deliver_policy,
        max_expires: CONSUMER_EXPIRES,
        ..Default::default()
    }
}

/// Reads the stream with an ordered consumer, and makes a new one from the message after the
/// last one read when the consumer fails in a way it does not recover from by itself (a NATS
/// server restarted without it answers every pull with "consumer not found", which also
/// keeps its idle-heartbeat check quiet), or stays quiet while the stream has newer messages.
struct StreamReader {
    stream: jetstream::stream::Stream,
    filter: String,
    /// The stream sequence of the last message read.
    after: u64,
}

impl StreamReader {
    async fn run(
        mut self,
        mut messages: jetstream::consumer::pull::Ordered,
        events: mpsc::Sender<Event>,
    ) {
        loop {
            let next = tokio::time::timeout(STALL_CHECK, messages.next()).await;
            let m = match next {
                Ok(Some(Ok(m))) => m,
                Ok(failed) => {
                    if let Some(Err(e)) = failed {
                        tracing::warn!(error = %e, after = self.after, "cluster stream consumer: making a new one");
                    }
                    messages = self.recreate().await;
                    continue;
                }
                Err(_) => {
                    // Quiet: fine if the stream has nothing newer, stuck if it has.
                    let newer = self
                        .stream
                        .get_info()
                        .await
                        .is_ok_and(|i| i.state.last_sequence > self.after);
                    if newer {
                        tracing::warn!(
                            after = self.after,
                            "cluster stream consumer stalled: making a new one"
                        );
                        messages = self.recreate().await;
                    }
                    continue;
                }
            };
            // This node's own messages too: the stream delivers every QoS 1/2 message, in its
            // one order, on every node (the broker's cluster.rs).
            let seq = m.info().ok().map(|i| i.stream_sequence);
            if let Some(seq) = seq {
                self.after = seq;
            }
            if !deliver(&events, &m.payload, seq).await {
                return;
            }
        }
    }

    /// A new ordered consumer from the message after the last one read; retried until NATS
    /// answers.
    async fn recreate(&self) -> jetstream::consumer::pull::Ordered {
        let policy = jetstream::consumer::DeliverPolicy::ByStartSequence {
            start_sequence: self.after.saturating_add(1),
        };
        loop {
            let made = match self
                .stream
                .create_consumer(ordered_config(&self.filter, policy))
                .await
            {
                Ok(c) => c.messages().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match made {
                Ok(m) => return m,
                Err(e) => {
                    tracing::debug!(error = %e, "cluster stream consumer not made yet");
                    tokio::time::sleep(CONSUMER_EXPIRES / 4).await;
                }
            }
        }
    }
}

async fn watch_retained(mut watch: jetstream::kv::Watch, events: mpsc::Sender<Event>) {
    while let Some(entry) = watch.next().await {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cluster retained watch");
                continue;
            }
        };
        let Some(topic) = decode_topic(&entry.key) else {
            tracing::warn!(key = %entry.key, "retained key that is no topic ignored");
            continue;
        };
        let message = match entry.operation {
            jetstream::kv::Operation::Put => {
                match decode_message(&entry.value, Instant::now(), SystemTime::now()) {
                    Ok(m) => Some(Box::new(m)),
                    Err(e) => {
                        tracing::warn!(error = %e, %topic, "undecodable retained message ignored");
                        continue;
                    }
                }
            }
            jetstream::kv::Operation::Delete | jetstream::kv::Operation::Purge => None,
        };
        let event = ClusterEvent::Retained {
            topic: topic.into(),
            message,
        };
        if events.send(Event::Cluster(event)).await.is_err() {
            return;
        }
    }
}
