//! The writing side of one QUIC connection: the broker task's output for the connection (its
//! outbox) goes to one writer task per stream, so a stream blocked by flow control never holds
//! up another; QoS 0 deliveries negotiated as datagrams go out as DATAGRAM frames.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use quinn::{SendStream, VarInt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::app_error;
use super::quic_registry::{OpenStream, StreamCounts, StreamKind};
use super::stream::{write_batches, BatchSink};
use crate::broker::{CloseKind, ConnId, FlowEvent, StreamId, Transmit};
use crate::codec::flow;
use crate::codec::ProtocolVersion;
use crate::handoff::outbox::Batch;
use crate::handoff::{Event, Outbox};

/// Hands the broker's output for one connection to its stream writers, and closes the
/// connection when the broker says so.
pub(super) struct Dispatcher {
    conn: ConnId,
    connection: quinn::Connection,
    events: mpsc::Sender<Event>,
    /// The application error code of an abnormal close (it depends on the ALPN).
    abnormal: u32,
    writers: HashMap<StreamId, StreamWriter>,
    /// Open streams by kind: the broker-opened ones are counted here.
    streams: Arc<StreamCounts>,
}

impl Dispatcher {
    /// A dispatcher with the control stream's writer. Once that writer has handed the
    /// successful CONNACK to QUIC (the broker marks its transmit: `Transmit::accepted`),
    /// `accepted` holds the connection's protocol version: with the control stream's higher
    /// priority, nothing sent on a data stream read from then on can overtake the CONNACK.
    pub fn new(
        conn: ConnId,
        connection: quinn::Connection,
        events: mpsc::Sender<Event>,
        abnormal: u32,
        control: SendStream,
        accepted: watch::Sender<Option<ProtocolVersion>>,
        streams: Arc<StreamCounts>,
    ) -> Dispatcher {
        let on_control_written = move |transmits: &[Transmit]| {
            if let Some(t) = transmits.iter().find(|t| t.accepted) {
                accepted.send_replace(Some(t.version));
            }
        };
        let control = StreamWriter::spawn(conn, control, events.clone(), on_control_written);
        Dispatcher {
            conn,
            connection,
            events,
            abnormal,
            writers: HashMap::from([(StreamId::CONTROL, control)]),
            streams,
        }
    }

    /// Runs until the broker closes the connection. `new_streams` brings the send halves of
    /// data streams the client opened.
    pub async fn run(
        mut self,
        outbox: &Outbox,
        mut new_streams: mpsc::Receiver<(StreamId, SendStream)>,
    ) {
        let mut spare = Vec::new();
        loop {
            let batch = tokio::select! {
                biased;
                Some((stream, send)) = new_streams.recv() => {
                    let writer = StreamWriter::spawn(self.conn, send, self.events.clone(), |_| {});
                    self.writers.insert(stream, writer);
                    continue;
                }
                batch = outbox.next_batch(std::mem::take(&mut spare)) => batch,
            };
            if let Some(kind) = self.apply(batch).await {
                self.close(kind).await;
                return;
            }
        }
    }

    /// Server flows, transmits and stream ends of one batch, in that order; the close it asks
    /// for, if any.
    async fn apply(&mut self, batch: Batch) -> Option<CloseKind> {
        let (opens, closes): (Vec<_>, Vec<_>) = batch
            .server_flows
            .into_iter()
            .partition(|e| matches!(e, FlowEvent::Open { .. }));
        for event in opens {
            if let FlowEvent::Open {
                stream,
                flow_id,
                priority,
            } = event
            {
                let writer = StreamWriter::spawn_server(
                    self.streams.open(StreamKind::ServerUni),
                    self.conn,
                    self.connection.clone(),
                    flow_id,
                    priority,
                    self.events.clone(),
                );
                self.writers.insert(stream, writer);
            }
        }
        let mut pending_closes = Vec::new();
        for event in closes {
            if let FlowEvent::Close { stream } = event {
                if let Some(w) = self.writers.remove(&stream) {
                    // Finished after what is queued: transmits of this batch come first.
                    pending_closes.push(w);
                }
            }
        }
        for transmit in batch.transmits {
            self.route(transmit).await;
        }
        for w in pending_closes {
            w.outbox.close(CloseKind::Normal);
            w.outbox.wake();
        }
        for stream in batch.closed_streams {
            if let Some(w) = self.writers.remove(&stream) {
                w.outbox.close(CloseKind::Normal);
                w.outbox.wake();
            }
        }
        batch.close
    }

    /// One transmit to its stream's writer, or out as datagrams.
    async fn route(&mut self, transmit: Transmit) {
        if transmit.stream == StreamId::DATAGRAM {
            // What does not fit a datagram after all (the path MTU shrank, the buffer is full)
            // goes on the control stream instead.
            let fallback =
                send_datagrams(self.conn, &self.connection, transmit, &self.events).await;
            if let (Some(t), Some(w)) = (fallback, self.writers.get(&StreamId::CONTROL)) {
                w.outbox.push(t);
                w.outbox.wake();
            }
            return;
        }
        if let Some(w) = self.writers.get(&transmit.stream) {
            w.outbox.push(transmit);
            w.outbox.wake();
        }
    }

    /// Ends every stream after what is queued, then the connection.
    async fn close(mut self, kind: CloseKind) {
        for w in self.writers.values() {
            w.outbox.close(kind);
            w.outbox.wake();
        }
        // Let the control stream deliver its last packets (CONNACK refusal,
        // DISCONNECT) before the connection closes.
        if let Some(control) = self.writers.remove(&StreamId::CONTROL) {
            let _ = tokio::time::timeout(Duration::from_secs(2), control.task).await;
        }
        let (code, reason) = match kind {
            CloseKind::Normal => (app_error::NORMAL, String::new()),
            CloseKind::Abnormal(code) => (self.abnormal, format!("reason code {code}")),
        };
        self.connection
            .close(VarInt::from_u32(code), reason.as_bytes());
    }
}

/// Sends each packet of `transmit` as one datagram; returns those that could not be sent.
async fn send_datagrams(
    conn: ConnId,
    connection: &quinn::Connection,
    transmit: Transmit,
    events: &mpsc::Sender<Event>,
) -> Option<Transmit> {
    let mut sent = 0;
    let mut fallback = bytes::BytesMut::new();
    let mut fallback_count = 0;
    let version = transmit.version;
    // Each datagram is a slice of the broker's buffer (no copy).
    for frame in transmit.into_frames() {
        // Only PUBLISH packets go in datagrams: each accounts for its encoded length.
        match connection.send_datagram(frame.clone()) {
            Ok(()) => sent += frame.len(),
            Err(_) => {
                fallback.extend_from_slice(&frame);
                fallback_count += 1;
            }
        }
    }
    if sent > 0 {
        let _ = events.send(Event::Written { conn, bytes: sent }).await;
    }
    (fallback_count > 0).then(|| Transmit {
        conn,
        stream: StreamId::CONTROL,
        version,
        accounted: fallback.len(),
        bytes: fallback,
        count: fallback_count,
        publishes: fallback_count,
        accepted: false,
    })
}

/// The writer task of one stream and the outbox that feeds it.
struct StreamWriter {
    outbox: Arc<Outbox>,
    task: JoinHandle<()>,
}

impl StreamWriter {
    /// A server-initiated unidirectional stream for a flow: its header (0x13), then packets.
    fn spawn_server(
        open: OpenStream,
        conn: ConnId,
        connection: quinn::Connection,
        flow_id: u64,
        priority: i32,
        events: mpsc::Sender<Event>,
    ) -> StreamWriter {
        let outbox = Arc::new(Outbox::default());
        let task = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                let _open = open;
                let Ok(mut send) = connection.open_uni().await else {
                    return;
                };
                let _ = send.set_priority(priority);
                let mut header = bytes::BytesMut::new();
                flow::encode_server_data(
                    flow::FlowId(flow_id),
                    0,
                    flow::FlowFlags::default(),
                    &mut header,
                );
                if send.write_all(&header).await.is_err() {
                    return;
                }
                write_batches(conn, &mut QuicSink(&mut send), &outbox, &events, |_| {}).await;
                let _ = send.finish();
                let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
            }
        });
        StreamWriter { outbox, task }
    }

    fn spawn(
        conn: ConnId,
        mut send: SendStream,
        events: mpsc::Sender<Event>,
        written: impl FnMut(&[Transmit]) + Send + 'static,
    ) -> StreamWriter {
        let outbox = Arc::new(Outbox::default());
        let task = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                write_batches(conn, &mut QuicSink(&mut send), &outbox, &events, written).await;
                // A graceful FIN, then wait (bounded) until the peer has everything.
                let _ = send.finish();
                let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
            }
        });
        StreamWriter { outbox, task }
    }
}

/// A QUIC send stream takes the broker's encoded buffers as they are: each transmit's bytes
/// become one chunk (`Bytes`, no copy), where `write_all(&[u8])` would copy them into quinn.
struct QuicSink<'a>(&'a mut SendStream);

impl BatchSink for QuicSink<'_> {
    async fn write_batch(&mut self, transmits: &mut [Transmit]) -> std::io::Result<usize> {
        let mut chunks: Vec<bytes::Bytes> = transmits
            .iter_mut()
            .filter(|t| !t.bytes.is_empty())
            .map(|t| std::mem::take(&mut t.bytes).freeze())
            .collect();
        let len = chunks.iter().map(|c| c.len()).sum();
        if len > 0 {
            self.0
                .write_all_chunks(&mut chunks)
                .await
                .map_err(std::io::Error::other)?;
        }
        Ok(len)
    }
}
