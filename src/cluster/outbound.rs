//! The broker's outputs to NATS.
//!
//! One task publishes in the order the broker produced: QoS 0 on core NATS, QoS 1/2 into the
//! stream (JetStream's acknowledgement is awaited by a second task, so several are in flight
//! and the order of the stream is the order of publication), retained changes to a third
//! task that writes the bucket one change at a time (order per topic).

use std::time::{Instant, SystemTime};

use async_nats::jetstream;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::nats::Joined;
use super::subject::{encode_topic, MAX_ENCODED};
use super::{Names, NODE_HEADER};
use crate::broker::{encode_message, ClusterAck, ClusterOutput, SharedMessage, SharedOutput};
use crate::handoff::{ClusterEvent, Event};

/// JetStream acknowledgements awaited at once (each a QoS 1/2 message published and not yet
/// confirmed). Past it the publishing task waits, and the broker's queue fills.
const ACKS_IN_FLIGHT: usize = 4096;

/// Retained changes waiting for the bucket.
const RETAINED_QUEUE: usize = 4096;

type PendingAck = (Option<ClusterAck>, jetstream::context::PublishAckFuture);

/// The other tasks some outputs go to.
pub(super) struct Handoffs {
    pub sessions: mpsc::Sender<ClusterOutput>,
    pub shared: mpsc::Sender<SharedOutput>,
}

pub(super) fn start(
    joined: &Joined,
    names: &Names,
    rx: mpsc::Receiver<ClusterOutput>,
    handoffs: Handoffs,
    events: mpsc::Sender<Event>,
) -> Vec<JoinHandle<()>> {
    let (acks_tx, acks_rx) = mpsc::channel(ACKS_IN_FLIGHT);
    let (retained_tx, retained_rx) = mpsc::channel(RETAINED_QUEUE);
    vec![
        tokio::spawn(publish(
            joined.client.clone(),
            joined.js.clone(),
            names.clone(),
            rx,
            Next {
                acks: acks_tx,
                retained: retained_tx,
                sessions: handoffs.sessions,
                shared: handoffs.shared,
                events: events.clone(),
            },
        )),
        tokio::spawn(confirm(acks_rx, events)),
        tokio::spawn(write_retained(joined.retained.clone(), retained_rx)),
    ]
}

fn headers(names: &Names) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(NODE_HEADER, names.node.as_str());
    h
}

async fn stored(events: &mpsc::Sender<Event>, ack: Option<ClusterAck>, ok: bool) {
    if let Some(ack) = ack {
        let _ = events
            .send(Event::Cluster(ClusterEvent::Stored { ack, stored: ok }))
            .await;
    }
}

/// Where the publishing task hands work on.
struct Next {
    acks: mpsc::Sender<PendingAck>,
    retained: mpsc::Sender<(String, Option<Bytes>)>,
    sessions: mpsc::Sender<ClusterOutput>,
    shared: mpsc::Sender<SharedOutput>,
    events: mpsc::Sender<Event>,
}

async fn publish(
    client: async_nats::Client,
    js: jetstream::Context,
    names: Names,
    mut rx: mpsc::Receiver<ClusterOutput>,
    next: Next,
) {
    let Next {
        acks,
        retained,
        sessions,
        shared,
        events,
    } = next;
    let mut too_long = 0u64;
    while let Some(output) = rx.recv().await {
        match output {
            ClusterOutput::Publish { message, ack } => {
                let encoded = encode_topic(&message.topic);
                if encoded.len() > MAX_ENCODED {
                    too_long += 1;
                    tracing::warn!(
                        topic_len = message.topic.len(),
                        count = too_long,
                        "topic too long for NATS: not sent to the other nodes"
                    );
                    stored(&events, ack, false).await;
                    continue;
                }
                let payload =
                    Bytes::from(encode_message(&message, Instant::now(), SystemTime::now()));
                if message.qos == crate::codec::QoS::AtMostOnce {
                    let subject = names.qos0_subject(&encoded);
                    if let Err(e) = client
                        .publish_with_headers(subject, headers(&names), payload)
                        .await
                    {
                        tracing::debug!(error = %e, "QoS 0 message not sent to the other nodes");
                    }
                    continue;
                }
                let subject = names.stream_subject(&encoded);
                match js
                    .publish_with_headers(subject, headers(&names), payload)
                    .await
                {
                    Ok(future) => {
                        if acks.send((ack, future)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, topic = %message.topic, "QoS 1/2 message not stored in the cluster's stream");
                        stored(&events, ack, false).await;
                    }
                }
            }
            // Claims, sessions' states and wills: the sessions task, in order.
            op @ (ClusterOutput::Claim { .. }
            | ClusterOutput::Release { .. }
            | ClusterOutput::Will { .. }
            | ClusterOutput::Fetch { .. }
            | ClusterOutput::State { .. }
            | ClusterOutput::Replay { .. }
            | ClusterOutput::HandedOver { .. }) => {
                if sessions.send(op).await.is_err() {
                    return;
                }
            }
            ClusterOutput::Shared(op) => {
                if shared.send(op).await.is_err() {
                    return;
                }
            }
            ClusterOutput::Retain { topic, message } => {
                let key = encode_topic(&topic);
                if key.len() > MAX_ENCODED {
                    continue;
                }
                let value = message.map(|m: SharedMessage| {
                    Bytes::from(encode_message(&m, Instant::now(), SystemTime::now()))
                });
                if retained.send((key, value)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// JetStream's acknowledgements, in publication order, to the broker.
async fn confirm(mut acks: mpsc::Receiver<PendingAck>, events: mpsc::Sender<Event>) {
    while let Some((ack, future)) = acks.recv().await {
        let ok = match future.await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "JetStream did not acknowledge a QoS 1/2 message");
                false
            }
        };
        stored(&events, ack, ok).await;
    }
}

/// The bucket of retained messages: a put per message, a purge per cleared topic (so the
/// bucket keeps no history of it).
async fn write_retained(
    store: jetstream::kv::Store,
    mut rx: mpsc::Receiver<(String, Option<Bytes>)>,
) {
    while let Some((key, value)) = rx.recv().await {
        let result = match value {
            Some(v) => store
                .put(&key, v)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => store.purge(&key).await.map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, key, "retained message not written to the cluster's bucket");
        }
    }
}
