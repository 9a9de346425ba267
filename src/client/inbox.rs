//! Received messages on their way to the application: one bounded queue per stream.
//!
//! The policy, in order of importance:
//!
//! 1. A QoS 1/2 message is acknowledged (PUBACK / PUBREC) only once it is in the queue that
//!    `recv` reads. If the application is slow and the queue is full, the message waits here,
//!    unacknowledged, and the server stops sending more once our Receive Maximum
//!    (`ClientOptions::receive_maximum`) of unacknowledged messages is reached. Nothing with
//!    QoS 1/2 is ever dropped by the client, and the connection (keep alive, publishing) is
//!    never blocked by a slow reader.
//! 2. QoS 0 messages queue behind them in order; when the backlog reaches the queue's
//!    capacity again, further QoS 0 messages are dropped (and counted), as a broker drops
//!    QoS 0 for a slow subscriber.
//! 3. A message that arrives on a data stream whose handle was dropped goes to the control
//!    stream's queue (the `Client`).

use std::collections::VecDeque;

use ahash::AHashMap;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::error::ClientError;
use super::state::{AckToken, StreamKey};
use super::types::ReceivedMessage;
use crate::codec::QoS;

/// What `recv` gets: a message, or the error that ended the connection or stream.
pub(crate) type Inbound = Result<ReceivedMessage, ClientError>;

struct Inbox {
    tx: mpsc::Sender<Inbound>,
    /// Messages that did not fit in the queue yet, with the acknowledgement they owe.
    backlog: VecDeque<(Inbound, Option<AckToken>)>,
}

pub(crate) struct Inboxes {
    map: AHashMap<StreamKey, Inbox>,
    capacity: usize,
    dropped_qos0: u64,
}

impl Inboxes {
    pub fn new(capacity: usize) -> Inboxes {
        Inboxes {
            map: AHashMap::new(),
            capacity: capacity.max(1),
            dropped_qos0: 0,
        }
    }

    pub fn insert(&mut self, stream: StreamKey, tx: mpsc::Sender<Inbound>) {
        self.map.insert(
            stream,
            Inbox {
                tx,
                backlog: VecDeque::new(),
            },
        );
    }

    /// Ends a data stream's queue with `error` (best effort: a full queue just closes).
    pub fn close(&mut self, stream: StreamKey, error: ClientError) {
        if let Some(inbox) = self.map.remove(&stream) {
            let _ = inbox.tx.try_send(Err(error));
        }
    }

    pub fn has_backlog(&self) -> bool {
        self.map.values().any(|i| !i.backlog.is_empty())
    }

    /// Queues a message received on `stream`; returns its acknowledgement if it is due now.
    pub fn deliver(
        &mut self,
        stream: StreamKey,
        message: ReceivedMessage,
        ack: Option<AckToken>,
    ) -> Option<AckToken> {
        let open = |s: &StreamKey| self.map.get(s).is_some_and(|i| !i.tx.is_closed());
        let target = if open(&stream) {
            stream
        } else {
            StreamKey::CONTROL
        };
        let qos = message.qos;
        let Some(inbox) = self.map.get_mut(&target) else {
            // Nobody can receive: the message is consumed as if read.
            return ack;
        };
        if inbox.backlog.is_empty() {
            match inbox.tx.try_send(Ok(message)) {
                Ok(()) | Err(TrySendError::Closed(_)) => return ack,
                Err(TrySendError::Full(item)) => {
                    inbox.backlog.push_back((item, ack));
                    return None;
                }
            }
        }
        if qos == QoS::AtMostOnce && inbox.backlog.len() >= self.capacity {
            self.dropped_qos0 += 1;
            if self.dropped_qos0.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped_qos0,
                    "receive queue full: QoS 0 messages dropped (call recv faster)"
                );
            }
            return None;
        }
        inbox.backlog.push_back((Ok(message), ack));
        None
    }

    /// Moves waiting messages into queues that have room; returns the acknowledgements now due.
    pub fn drain(&mut self) -> Vec<AckToken> {
        let mut due = Vec::new();
        for inbox in self.map.values_mut() {
            while let Some((item, ack)) = inbox.backlog.pop_front() {
                match inbox.tx.try_send(item) {
                    Ok(()) | Err(TrySendError::Closed(_)) => due.extend(ack),
                    Err(TrySendError::Full(item)) => {
                        inbox.backlog.push_front((item, ack));
                        break;
                    }
                }
            }
        }
        due
    }

    /// The connection ended: waiting messages were never acknowledged, so the server sends
    /// them again if the session is resumed; they are dropped here. Data streams' queues end
    /// with a connection-lost error; the control stream's gets `error` and stays open for the
    /// next connection.
    pub fn connection_lost(&mut self, error: ClientError) {
        let reason = error.to_string();
        let streams: Vec<StreamKey> = self
            .map
            .keys()
            .copied()
            .filter(|s| *s != StreamKey::CONTROL)
            .collect();
        for stream in streams {
            self.close(stream, ClientError::ConnectionLost(reason.clone()));
        }
        if let Some(control) = self.map.get_mut(&StreamKey::CONTROL) {
            control.backlog.clear();
            if let Err(TrySendError::Full(item)) = control.tx.try_send(Err(error)) {
                control.backlog.push_back((item, None));
            }
        }
    }
}
