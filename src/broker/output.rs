//! What the broker state machine asks its transport glue to do.
//!
//! Packets for one connection and stream produced while handling one batch of events are
//! encoded into one [`Transmit`] as they are produced, so the glue writes them at once. The
//! state machine stays sans-IO: encoding is a pure function of the packet, and
//! [`Transmit::packets`] decodes them again for tests. What the glue must know about the bytes
//! it writes the broker says beside them ([`Transmit::accepted`]), so the glue never decodes.

use ahash::AHashMap;

use super::types::{ConnId, SharedMessage, StreamId};
use bytes::BytesMut;

use crate::codec::{Packet, ProtocolVersion, PublishRef, ReasonCode};

/// Packets to write, in order, on one stream of one connection, already encoded: the broker
/// task writes each PUBLISH straight from the shared message (no `Packet`, no reference count
/// per subscriber), and the glue writes the bytes as they are.
#[derive(Debug)]
pub struct Transmit {
    pub conn: ConnId,
    pub stream: StreamId,
    /// The encoding used.
    pub version: ProtocolVersion,
    /// The packets back to back (MQTT packets are self-delimiting: `codec::frame_len`).
    pub bytes: BytesMut,
    /// How many packets `bytes` holds.
    pub count: usize,
    /// How many of them are PUBLISH packets queued by [`OutputQueue::publish`].
    pub publishes: usize,
    /// The packets' [`super::accounted_size`] total, computed once by the broker: the writer
    /// reports it back as written instead of measuring every packet again.
    pub accounted: usize,
    /// This transmit carries the successful CONNACK: once it is written, the connection is
    /// accepted (the QUIC glue starts reading the client's data streams then, so nothing it
    /// answers there can overtake the CONNACK).
    pub accepted: bool,
}

impl Transmit {
    /// The packets again, decoded (tests).
    pub fn packets(&self) -> Vec<Packet> {
        let mut buf = self.bytes.clone();
        let mut packets = Vec::with_capacity(self.count);
        while let Ok(Some(packet)) = crate::codec::decode(&mut buf, Some(self.version), u32::MAX) {
            packets.push(packet);
        }
        debug_assert!(buf.is_empty(), "a transmit holds whole packets");
        packets
    }

    /// Each packet's bytes, in order (QUIC datagrams carry one packet each).
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = &self.bytes[..];
        std::iter::from_fn(move || {
            let len = crate::codec::frame_len(rest)?.min(rest.len());
            let (frame, tail) = rest.split_at(len);
            rest = tail;
            Some(frame)
        })
    }

    /// Each packet as a slice of the transmit's buffer (no copy), in order: QUIC and
    /// WebTransport datagrams carry one each.
    pub fn into_frames(self) -> impl Iterator<Item = bytes::Bytes> {
        let mut rest = self.bytes.freeze();
        std::iter::from_fn(move || {
            let len = crate::codec::frame_len(&rest)?.min(rest.len());
            Some(rest.split_to(len))
        })
    }
}

/// The largest capacity a transmit starts with ([`OutputQueue::publish`]'s hint): what one
/// batch wrote to a connection, up to this.
pub(crate) const MAX_TRANSMIT_HINT: usize = 256 * 1024;

/// A finished transmit, before the glue takes it: returns the capacity its connection's next
/// transmit starts with when it carried PUBLISH packets (half as much again as it holds, so a
/// burst that grows a little from one batch to the next still fits without a copy), and
/// trims it (`trim`).
pub(crate) fn settle(t: &mut Transmit) -> Option<usize> {
    let hint = (t.publishes > 0).then(|| {
        let len = t.bytes.len();
        (len + len / 2).min(MAX_TRANSMIT_HINT)
    });
    trim(t);
    hint
}

/// A transmit that started with the previous batch's capacity but holds much less gives the
/// rest back (one copy of what it holds) before it waits in a writer's queue: a hint never
/// costs more than twice the bytes waiting to be written, plus 4 KiB.
fn trim(t: &mut Transmit) {
    if t.bytes.capacity() > 2 * t.bytes.len() + 4096 {
        t.bytes = BytesMut::from(&t.bytes[..]);
    }
}

/// Why the broker closes a connection; QUIC maps it to an application error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseKind {
    /// The client said DISCONNECT, or the broker is shutting down cleanly.
    Normal,
    /// Protocol error, keep alive timeout, takeover, or another abnormal end.
    Abnormal(ReasonCode),
}

/// Identifies an in-process handler registered through the embedding API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandlerId(pub u64);

#[derive(Debug)]
pub enum Output {
    Transmit(Transmit),
    /// Write whatever was queued before this, then close the connection.
    Close {
        conn: ConnId,
        kind: CloseKind,
    },
    /// End one data stream of a connection gracefully (FIN) after what was queued for it; the
    /// connection lives on. `code` says why, for logs.
    CloseStream {
        conn: ConnId,
        stream: StreamId,
        code: ReasonCode,
    },
    /// Open or finish a server-initiated stream (topic-to-stream mapping).
    ServerFlow {
        conn: ConnId,
        event: super::server_flows::FlowEvent,
    },
    /// Stop (`true`) or resume (`false`) reading from a connection: backpressure from
    /// connections behind on writing to the publishers feeding them (throttle.rs).
    PauseReading {
        conn: ConnId,
        paused: bool,
    },
    /// A message for an in-process handler.
    App {
        handler: HandlerId,
        message: SharedMessage,
    },
    /// Something for the other nodes of the cluster (cluster.rs).
    Cluster(super::cluster::ClusterOutput),
}

/// Outputs accumulated while handling events, drained by the glue after each batch.
#[derive(Debug, Default)]
pub(crate) struct OutputQueue {
    outputs: Vec<Output>,
    /// Packets and bytes queued, by type (the broker's metrics snapshot reads it).
    pub sent: super::metrics::PacketCounts,
    open: AHashMap<(ConnId, StreamId), usize>,
}

impl OutputQueue {
    pub fn packet(
        &mut self,
        conn: ConnId,
        stream: StreamId,
        version: ProtocolVersion,
        p: Packet,
        accounted: usize,
    ) {
        let mut written = 0;
        self.with_transmit(conn, stream, version, |t| {
            let before = t.bytes.len();
            crate::codec::encode(&p, version, &mut t.bytes);
            written = t.bytes.len() - before;
            t.count += 1;
            t.accounted += accounted;
        });
        self.sent.add(p.packet_type(), written);
    }

    /// Queues a PUBLISH written from borrowed parts; `len` is its encoded length (measured by
    /// the caller, who checked it against the client's Maximum Packet Size).
    pub fn publish(
        &mut self,
        conn: ConnId,
        stream: StreamId,
        version: ProtocolVersion,
        p: &PublishRef<'_>,
        len: usize,
        capacity_hint: usize,
    ) {
        self.with_transmit(conn, stream, version, |t| {
            if t.publishes == 0 {
                t.bytes.reserve(capacity_hint.max(len));
            }
            p.encode_measured(version, len, &mut t.bytes);
            t.count += 1;
            t.publishes += 1;
            t.accounted += len;
        });
        self.sent.add(super::metrics::PUBLISH_TYPE, len);
    }

    /// Runs `add` on the open transmit for this connection and stream, or on a new one.
    fn with_transmit(
        &mut self,
        conn: ConnId,
        stream: StreamId,
        version: ProtocolVersion,
        add: impl FnOnce(&mut Transmit),
    ) {
        if let Some(&i) = self.open.get(&(conn, stream)) {
            if let Some(Output::Transmit(t)) = self.outputs.get_mut(i) {
                add(t);
                return;
            }
        }
        let mut t = Transmit {
            conn,
            stream,
            version,
            bytes: BytesMut::new(),
            count: 0,
            publishes: 0,
            accounted: 0,
            accepted: false,
        };
        add(&mut t);
        self.open.insert((conn, stream), self.outputs.len());
        self.outputs.push(Output::Transmit(t));
    }

    /// Marks the control stream's open transmit, which ends with the successful CONNACK just
    /// queued, as accepting the connection.
    pub fn accepted(&mut self, conn: ConnId) {
        if let Some(&i) = self.open.get(&(conn, StreamId::CONTROL)) {
            if let Some(Output::Transmit(t)) = self.outputs.get_mut(i) {
                t.accepted = true;
            }
        }
    }

    pub fn close(&mut self, conn: ConnId, kind: CloseKind) {
        self.open.retain(|(c, _), _| *c != conn);
        self.outputs.push(Output::Close { conn, kind });
    }

    pub fn close_stream(&mut self, conn: ConnId, stream: StreamId, code: ReasonCode) {
        self.open.remove(&(conn, stream));
        self.outputs
            .push(Output::CloseStream { conn, stream, code });
    }

    pub fn server_flow(&mut self, conn: ConnId, event: super::server_flows::FlowEvent) {
        if let super::server_flows::FlowEvent::Close { stream } = &event {
            self.open.remove(&(conn, *stream));
        }
        self.outputs.push(Output::ServerFlow { conn, event });
    }

    pub fn pause_reading(&mut self, conn: ConnId, paused: bool) {
        self.outputs.push(Output::PauseReading { conn, paused });
    }

    pub fn app(&mut self, handler: HandlerId, message: SharedMessage) {
        self.outputs.push(Output::App { handler, message });
    }

    pub fn cluster(&mut self, output: super::cluster::ClusterOutput) {
        self.outputs.push(Output::Cluster(output));
    }

    pub fn take(&mut self) -> Vec<Output> {
        self.open.clear();
        std::mem::take(&mut self.outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Properties, QoS};

    fn publish(out: &mut OutputQueue, conn: ConnId, props: &Properties, hint: usize) {
        let p = PublishRef {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: b"t",
            packet_id: None,
            properties: props,
            topic_alias: None,
            payload: b"0123456789",
        };
        let len = p.encoded_len(ProtocolVersion::V3_1_1);
        out.publish(
            conn,
            StreamId::CONTROL,
            ProtocolVersion::V3_1_1,
            &p,
            len,
            hint,
        );
    }

    fn transmit(outputs: &mut [Output]) -> &mut Transmit {
        match outputs.first_mut() {
            Some(Output::Transmit(t)) => t,
            other => panic!("expected a transmit, got {other:?}"),
        }
    }

    /// A transmit starts with the capacity its connection's previous batch needed, so a burst
    /// is encoded without growing its buffer; the packets are the same.
    #[test]
    fn a_transmit_starts_with_the_hinted_capacity() {
        let props = Properties::default();
        let mut out = OutputQueue::default();
        for _ in 0..100 {
            publish(&mut out, ConnId(1), &props, 1500);
        }
        let mut outputs = out.take();
        let t = transmit(&mut outputs);
        assert_eq!(t.count, 100);
        assert_eq!(t.publishes, 100);
        assert_eq!(t.bytes.len(), 1500);
        assert_eq!(t.bytes.capacity(), 1500, "no growth past the hint");
        assert_eq!(t.packets().len(), 100);
        assert_eq!(
            settle(t),
            Some(2250),
            "the next one starts half as large again"
        );
        assert_eq!(t.bytes.capacity(), 1500, "a full transmit keeps its buffer");
    }

    /// A hint from a large batch followed by a small one costs at most twice the bytes held
    /// (plus 4 KiB) once trimmed, and the bytes are unchanged.
    #[test]
    fn a_small_transmit_after_a_large_one_gives_its_spare_capacity_back() {
        let props = Properties::default();
        let mut out = OutputQueue::default();
        publish(&mut out, ConnId(1), &props, MAX_TRANSMIT_HINT);
        let mut outputs = out.take();
        let t = transmit(&mut outputs);
        assert!(t.bytes.capacity() >= MAX_TRANSMIT_HINT);
        let before = t.bytes.clone();
        settle(t);
        assert!(t.bytes.capacity() <= 2 * t.bytes.len() + 4096);
        assert_eq!(t.bytes, before);
    }
}
