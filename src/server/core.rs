//! The broker task: owns the [`Broker`] state machine, feeds it events in batches, runs its
//! timers and hands its outputs to connection outboxes and in-process handlers.
//!
//! With persistence, each batch's change set goes to the store writer (`crate::store::writer`)
//! and the batch's outputs wait until the writer reports it committed: no PUBACK, PUBREC,
//! PUBCOMP, CONNACK or delivery leaves before the state it reflects is on disk (`durability:
//! off` excepted), and the embedding API's publish is answered likewise. A batch without
//! changes goes out at once when nothing waits before it. While the store fails, the writer
//! retries and everything waits; at shutdown, what waits for changes it gave up on is dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use ahash::AHashMap;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::broker::{
    Broker, ClusterAck, ClusterOutput, ConnId, HandlerId, Output, SharedMessage, SharedOutput,
};
use crate::codec::ReasonCode;
use crate::config::Durability;
use crate::handoff::Outbox;
use crate::handoff::{ClusterEvent, Event};
use crate::store::writer::Writer;

/// Events handled per wake-up before outputs are flushed.
const BATCH: usize = 512;

/// The way to the cluster actor (`crate::cluster`), when this node is part of a cluster.
pub(super) struct ClusterLink {
    tx: mpsc::Sender<ClusterOutput>,
    /// Held messages the actor could not take (its queue full or gone): answered as not
    /// stored on the next turn.
    refused: Vec<ClusterAck>,
    /// QoS 0 messages and retained changes dropped for the same reason.
    dropped: u64,
    /// Shared subscription joins and leaves the actor could not take yet: sent again, in
    /// order, on the next turn (losing one would leave a group unserved, or served by a node
    /// without members).
    retry: std::collections::VecDeque<ClusterOutput>,
}

impl ClusterLink {
    pub(super) fn new(tx: mpsc::Sender<ClusterOutput>) -> ClusterLink {
        ClusterLink {
            tx,
            refused: Vec::new(),
            dropped: 0,
            retry: Default::default(),
        }
    }

    /// Sends the joins and leaves that waited, as far as the actor takes them.
    fn flush_retry(&mut self) {
        while let Some(output) = self.retry.pop_front() {
            if let Err(e) = self.tx.try_send(output) {
                if let mpsc::error::TrySendError::Full(o) = e {
                    self.retry.push_front(o);
                }
                return;
            }
        }
    }

    /// Bounded: the actor's queue full means NATS does not keep up; a QoS 0 message or a
    /// retained change is dropped then (counted, logged), a held message is refused (its
    /// publisher told, or disconnected).
    fn send(&mut self, output: ClusterOutput) {
        let membership = matches!(
            output,
            ClusterOutput::Shared(SharedOutput::Join { .. } | SharedOutput::Leave { .. })
        );
        self.flush_retry();
        if membership && !self.retry.is_empty() {
            self.retry.push_back(output);
            return;
        }
        if let Err(e) = self.tx.try_send(output) {
            let output = match e {
                mpsc::error::TrySendError::Full(o) | mpsc::error::TrySendError::Closed(o) => o,
            };
            match output {
                ClusterOutput::Publish { ack: Some(ack), .. } => self.refused.push(ack),
                o @ ClusterOutput::Shared(
                    SharedOutput::Join { .. } | SharedOutput::Leave { .. },
                ) => self.retry.push_back(o),
                _ => {
                    self.dropped += 1;
                    if self.dropped.is_power_of_two() {
                        tracing::warn!(
                            dropped = self.dropped,
                            "cluster queue full: messages for other nodes dropped"
                        );
                    }
                }
            }
        }
    }
}

pub async fn run(
    mut broker: Broker,
    mut events: mpsc::Receiver<Event>,
    mut writer: Option<Writer>,
    mut cluster: Option<ClusterLink>,
) {
    let mut outboxes: AHashMap<ConnId, Arc<Outbox>> = AHashMap::new();
    let mut handlers: AHashMap<HandlerId, mpsc::Sender<SharedMessage>> = AHashMap::new();
    let mut dirty: Vec<ConnId> = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut shutting_down = false;
    let mut held = Held::default();
    let mut replies = Vec::new();
    broker.start_sys(Instant::now().into_std());
    loop {
        let deadline = broker.poll_timeout().map(Instant::from_std);
        tokio::select! {
            Some(ticket) = committed(&mut writer) => {
                for outputs in held.release(ticket) {
                    dispatch(outputs, &mut outboxes, &handlers, &mut dirty, &mut cluster);
                }
                continue;
            }
            n = events.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                let now = Instant::now().into_std();
                for event in batch.drain(..) {
                    match event {
                        Event::Opened { conn, peer, outbox } => {
                            outboxes.insert(conn, outbox);
                            broker.connection_opened(conn, peer, now);
                        }
                        Event::Packets { conn, stream, packets, read } => {
                            for packet in packets {
                                broker.handle_packet(conn, stream, packet, now);
                            }
                            if read > 0 {
                                if let Some(outbox) = outboxes.get(&conn) {
                                    outbox.read_pause.handled(read);
                                }
                            }
                        }
                        Event::DecodeError { conn, error } => broker.handle_decode_error(conn, &error, now),
                        // The broker answers with a Close output, which releases the outbox.
                        Event::Lost { conn } => broker.connection_lost(conn, now),
                        Event::Login { conn, login } => broker.set_login(conn, login),
                        Event::SetAcl { acl } => broker.set_acl(acl),
                        Event::StreamOpened { conn, stream } => broker.stream_opened(conn, stream),
                        Event::QuicCaps { conn, caps } => broker.set_quic_caps(conn, caps),
                        Event::DatagramProbe { conn } => broker.datagram_probe(conn, now),
                        Event::DatagramMalformed { conn } => broker.datagram_malformed(conn),
                        Event::StreamRefused { conn } => broker.quic_stream_refused(conn),
                        Event::DatagramsRateLimited { conn, count } => {
                            broker.datagrams_rate_limited(conn, count)
                        }
                        Event::StreamClosed { conn, stream } => broker.stream_closed(conn, stream, now),
                        Event::StreamError { conn, stream, error } => {
                            broker.handle_stream_error(conn, stream, &error, now)
                        }
                        Event::Written { conn, bytes } => broker.handle_written(conn, bytes, now),
                        Event::PeerAddressChanged { conn, peer } => {
                            broker.peer_address_changed(conn, peer, now)
                        }
                        Event::HoldWill { conn } => broker.hold_will(conn),
                        Event::HandshakeConfirmed { conn } => broker.handshake_confirmed(conn, now),
                        Event::Inspect { reply } => {
                            let _ = reply.send((broker.metrics(), broker.clients()));
                        }
                        Event::Admin(task) => task(&mut broker, now),
                        Event::AppSubscribe { handler, filter, qos, deliver, reply } => {
                            handlers.insert(handler, deliver);
                            let _ = reply.send(broker.app_subscribe(handler, &filter, qos));
                        }
                        Event::AppPublish { message, reply } => {
                            // Answered with the batch's outputs: after the commit, like a PUBACK.
                            replies.push((reply, broker.app_publish(*message, now)));
                        }
                        Event::Cluster(event) => match event {
                            ClusterEvent::Message(m) => broker.cluster_message(*m, now),
                            ClusterEvent::Retained { topic, message } => {
                                broker.cluster_retained(topic, message.map(|m| *m), now)
                            }
                            ClusterEvent::Stored { ack, stored } => broker.cluster_stored(ack, stored, now),
                            ClusterEvent::TakenOver { client_id, claim, reply } => {
                                broker.cluster_taken_over(&client_id, claim, reply, now, SystemTime::now())
                            }
                            ClusterEvent::Fetched { conn, client_id, state } => {
                                broker.cluster_fetched(conn, client_id, state, now, SystemTime::now())
                            }
                            ClusterEvent::Replayed { client_id, messages, done } => {
                                broker.cluster_replayed(&client_id, messages, done, now)
                            }
                            ClusterEvent::Liveness(event) => broker.cluster_liveness(event, now),
                            ClusterEvent::Shared { group, filter, message, token } => {
                                broker.cluster_shared_message(&group, &filter, *message, token, now)
                            }
                        },
                        Event::Shutdown => {
                            broker.shutdown(now);
                            shutting_down = true;
                        }
                    }
                }
            }
            _ = sleep_until(deadline) => {}
        }
        let now = Instant::now().into_std();
        if let Some(link) = cluster.as_mut() {
            link.flush_retry();
            for ack in link.refused.drain(..) {
                broker.cluster_stored(ack, false, now);
            }
        }
        broker.handle_timeout(now);
        // Before the outputs: in a cluster, changed sessions' states are outputs too.
        let changes = if writer.is_some() || cluster.is_some() {
            broker.take_changes(now, SystemTime::now())
        } else {
            Vec::new()
        };
        let outputs = Released {
            outputs: broker.take_outputs(),
            replies: std::mem::take(&mut replies),
        };
        match writer.as_mut() {
            None => dispatch(outputs, &mut outboxes, &handlers, &mut dirty, &mut cluster),
            Some(writer) => {
                if !changes.is_empty() {
                    held.ticket += 1;
                    writer.send(held.ticket, changes).await;
                }
                // Outputs wait for the commit of their batch's changes, and behind any batch
                // still waiting (order per connection). `off` waits for nothing.
                if writer.durability == Durability::Off || held.all_committed() {
                    dispatch(outputs, &mut outboxes, &handlers, &mut dirty, &mut cluster);
                } else if !outputs.outputs.is_empty() || !outputs.replies.is_empty() {
                    held.batches.push_back((held.ticket, outputs));
                }
            }
        }
        if shutting_down {
            break;
        }
    }
    if let Some(writer) = writer {
        // Everything sent is committed before the task ends, then what waited for it leaves;
        // what waited for changes the store failed to commit is dropped.
        let committed = writer.finish().await;
        for outputs in held.release(committed) {
            dispatch(outputs, &mut outboxes, &handlers, &mut dirty, &mut cluster);
        }
    }
}

/// Outputs waiting for the store: per batch, the ticket of the change set they depend on.
#[derive(Default)]
struct Held {
    /// The last ticket sent to the writer.
    ticket: u64,
    /// The last ticket the writer reported committed.
    committed: u64,
    batches: VecDeque<(u64, Released)>,
}

/// What one batch hands out: the broker's outputs, and the answers to the embedding API's
/// publishes.
struct Released {
    outputs: Vec<Output>,
    replies: Vec<(PublishReply, Result<usize, ReasonCode>)>,
}

type PublishReply = oneshot::Sender<Result<usize, ReasonCode>>;

impl Held {
    /// Nothing waits: every change set sent is committed (so no output can depend on state
    /// that a crash would lose) and no earlier outputs are held.
    fn all_committed(&self) -> bool {
        self.batches.is_empty() && self.committed >= self.ticket
    }

    fn release(&mut self, committed: u64) -> Vec<Released> {
        self.committed = self.committed.max(committed);
        let mut ready = Vec::new();
        while let Some((ticket, _)) = self.batches.front() {
            if *ticket > self.committed {
                break;
            }
            if let Some((_, outputs)) = self.batches.pop_front() {
                ready.push(outputs);
            }
        }
        ready
    }
}

async fn committed(writer: &mut Option<Writer>) -> Option<u64> {
    match writer {
        Some(w) => w.committed().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn dispatch(
    released: Released,
    outboxes: &mut AHashMap<ConnId, Arc<Outbox>>,
    handlers: &AHashMap<HandlerId, mpsc::Sender<SharedMessage>>,
    dirty: &mut Vec<ConnId>,
    cluster: &mut Option<ClusterLink>,
) {
    for (reply, result) in released.replies {
        let _ = reply.send(result);
    }
    for output in released.outputs {
        match output {
            Output::Transmit(t) => {
                if let Some(outbox) = outboxes.get(&t.conn) {
                    dirty.push(t.conn);
                    outbox.push(t);
                }
            }
            Output::Close { conn, kind } => {
                if let Some(outbox) = outboxes.remove(&conn) {
                    outbox.close(kind);
                    outbox.wake();
                }
            }
            Output::CloseStream { conn, stream, .. } => {
                if let Some(outbox) = outboxes.get(&conn) {
                    outbox.close_stream(stream);
                    dirty.push(conn);
                }
            }
            Output::ServerFlow { conn, event } => {
                if let Some(outbox) = outboxes.get(&conn) {
                    outbox.server_flow(event);
                    dirty.push(conn);
                }
            }
            Output::PauseReading { conn, paused } => {
                if let Some(outbox) = outboxes.get(&conn) {
                    outbox.read_pause.set(paused);
                }
            }
            Output::Cluster(output) => {
                if let Some(link) = cluster.as_mut() {
                    link.send(output);
                }
            }
            Output::App { handler, message } => {
                if let Some(tx) = handlers.get(&handler) {
                    // Bounded: a handler that cannot keep up loses messages, counted in logs.
                    if tx.try_send(message).is_err() {
                        tracing::warn!(
                            handler = handler.0,
                            "in-process handler queue full, message dropped"
                        );
                    }
                }
            }
        }
    }
    for conn in dirty.drain(..) {
        if let Some(outbox) = outboxes.get(&conn) {
            outbox.wake();
        }
    }
}
