//! What the broker state machine asks its transport glue to do.
//!
//! Packets for one connection and stream produced while handling one batch of events are
//! coalesced into one [`Transmit`], so the glue encodes them into one buffer and writes once.

use ahash::AHashMap;

use super::types::{ConnId, SharedMessage, StreamId};
use crate::codec::{Packet, ProtocolVersion, ReasonCode};

/// Packets to write, in order, on one stream of one connection.
#[derive(Debug)]
pub struct Transmit {
    pub conn: ConnId,
    pub stream: StreamId,
    /// The encoding to use.
    pub version: ProtocolVersion,
    pub packets: Vec<Packet>,
    /// The packets' [`super::accounted_size`] total, computed once by the broker: the writer
    /// reports it back as written instead of measuring every packet again.
    pub accounted: usize,
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
    /// A message for an in-process handler.
    App {
        handler: HandlerId,
        message: SharedMessage,
    },
}

/// Outputs accumulated while handling events, drained by the glue after each batch.
#[derive(Debug, Default)]
pub(crate) struct OutputQueue {
    outputs: Vec<Output>,
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
        if let Some(&i) = self.open.get(&(conn, stream)) {
            if let Some(Output::Transmit(t)) = self.outputs.get_mut(i) {
                t.packets.push(p);
                t.accounted += accounted;
                return;
            }
        }
        self.open.insert((conn, stream), self.outputs.len());
        self.outputs.push(Output::Transmit(Transmit {
            conn,
            stream,
            version,
            packets: vec![p],
            accounted,
        }));
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

    pub fn app(&mut self, handler: HandlerId, message: SharedMessage) {
        self.outputs.push(Output::App { handler, message });
    }

    pub fn take(&mut self) -> Vec<Output> {
        self.open.clear();
        std::mem::take(&mut self.outputs)
    }
}
