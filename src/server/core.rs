//! The broker task: owns the [`Broker`] state machine, feeds it events in batches, runs its
//! timers and hands its outputs to connection outboxes and in-process handlers.

use std::sync::Arc;

use ahash::AHashMap;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::event::Event;
use super::outbox::Outbox;
use crate::broker::{Broker, ConnId, HandlerId, Output, SharedMessage};

/// Events handled per wake-up before outputs are flushed.
const BATCH: usize = 512;

pub async fn run(mut broker: Broker, mut events: mpsc::Receiver<Event>) {
    let mut outboxes: AHashMap<ConnId, Arc<Outbox>> = AHashMap::new();
    let mut handlers: AHashMap<HandlerId, mpsc::Sender<SharedMessage>> = AHashMap::new();
    let mut dirty: Vec<ConnId> = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut shutting_down = false;
    loop {
        let deadline = broker.poll_timeout().map(Instant::from_std);
        tokio::select! {
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
                        Event::Packets { conn, stream, packets } => {
                            for packet in packets {
                                broker.handle_packet(conn, stream, packet, now);
                            }
                        }
                        Event::DecodeError { conn, error } => broker.handle_decode_error(conn, &error, now),
                        // The broker answers with a Close output, which releases the outbox.
                        Event::Lost { conn } => broker.connection_lost(conn, now),
                        Event::StreamOpened { conn, stream } => broker.stream_opened(conn, stream),
                        Event::QuicCaps { conn, caps } => broker.set_quic_caps(conn, caps),
                        Event::DatagramProbe { conn } => broker.datagram_probe(conn, now),
                        Event::DatagramMalformed { conn } => broker.datagram_malformed(conn),
                        Event::StreamRefused { conn } => broker.quic_stream_refused(conn),
                        Event::DatagramsRateLimited { conn, count } => {
                            broker.datagrams_rate_limited(conn, count)
                        }
                        Event::OutputOverflow { conn } => broker.output_overflow(conn, now),
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
                        Event::AppSubscribe { handler, filter, qos, deliver, reply } => {
                            handlers.insert(handler, deliver);
                            let _ = reply.send(broker.app_subscribe(handler, &filter, qos));
                        }
                        Event::AppPublish { message, reply } => {
                            let _ = reply.send(broker.app_publish(*message, now));
                        }
                        Event::Shutdown => {
                            broker.shutdown(now);
                            shutting_down = true;
                        }
                    }
                }
            }
            _ = sleep_until(deadline) => {}
        }
        broker.handle_timeout(Instant::now().into_std());
        dispatch(&mut broker, &mut outboxes, &handlers, &mut dirty);
        if shutting_down {
            break;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn dispatch(
    broker: &mut Broker,
    outboxes: &mut AHashMap<ConnId, Arc<Outbox>>,
    handlers: &AHashMap<HandlerId, mpsc::Sender<SharedMessage>>,
    dirty: &mut Vec<ConnId>,
) {
    // Connections whose writer is too far behind are closed by the broker, whose Close
    // output is handed over in a second round.
    let mut overflowed = Vec::new();
    for round in 0..2 {
        if round == 1 {
            if overflowed.is_empty() {
                break;
            }
            let now = Instant::now().into_std();
            for conn in overflowed.drain(..) {
                broker.output_overflow(conn, now);
            }
        }
        dispatch_outputs(broker, outboxes, handlers, dirty, &mut overflowed);
    }
    for conn in dirty.drain(..) {
        if let Some(outbox) = outboxes.get(&conn) {
            outbox.wake();
        }
    }
}

fn dispatch_outputs(
    broker: &mut Broker,
    outboxes: &mut AHashMap<ConnId, Arc<Outbox>>,
    handlers: &AHashMap<HandlerId, mpsc::Sender<SharedMessage>>,
    dirty: &mut Vec<ConnId>,
    overflowed: &mut Vec<ConnId>,
) {
    for output in broker.take_outputs() {
        match output {
            Output::Transmit(t) => {
                if let Some(outbox) = outboxes.get(&t.conn) {
                    dirty.push(t.conn);
                    let conn = t.conn;
                    if !outbox.push(t) {
                        overflowed.push(conn);
                    }
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
}
