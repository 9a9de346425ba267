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

    /// The connection was ended on purpose to be made again at once (back to QUIC after a
    /// fallback): waiting messages were never acknowledged and the server sends them again,
    /// so they are dropped here, without telling the application anything.
    pub fn forget_backlog(&mut self) {
        for inbox in self.map.values_mut() {
            forget_resent(&mut inbox.backlog);
        }
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
            forget_resent(&mut control.backlog);
            if !control.backlog.is_empty() {
                // After the messages still owed to the application, in order.
                control.backlog.push_back((Err(error), None));
            } else if let Err(TrySendError::Full(item)) = control.tx.try_send(Err(error)) {
                control.backlog.push_back((item, None));
            }
        }
    }
}

/// Drops from a backlog what the server sends again on the next connection: the messages
/// whose acknowledgement the client sends once they are queued (it never went out). With
/// manual acknowledgements (no token here: the application acknowledges) a message stays: the
/// state machine keeps it owed across the reconnection and does not deliver the server's
/// retransmission again [MQTT-4.3.3-10], so dropping it here would lose it. QoS 0 messages
/// stay too (nothing sends them again).
fn forget_resent(backlog: &mut VecDeque<(Inbound, Option<AckToken>)>) {
    backlog.retain(|(_, ack)| ack.is_none());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Properties;

    fn message(topic: &'static str, qos: QoS) -> ReceivedMessage {
        ReceivedMessage {
            topic: bytestring::ByteString::from_static(topic),
            payload: bytes::Bytes::new(),
            qos,
            retain: false,
            dup: false,
            properties: Properties::default(),
            ack: None,
        }
    }

    fn token(packet_id: u16) -> AckToken {
        AckToken {
            stream: StreamKey::CONTROL,
            packet_id,
            qos: QoS::AtLeastOnce,
            epoch: 0,
        }
    }

    #[test]
    fn a_lost_connection_keeps_the_messages_the_application_still_owes() {
        // Room for one in the queue, QoS 0 waits up to 8 behind it.
        let mut inboxes = Inboxes::new(8);
        let (tx, mut rx) = mpsc::channel(1);
        inboxes.insert(StreamKey::CONTROL, tx);
        // The queue holds one; the rest waits: an automatically acknowledged QoS 1 message
        // (its PUBACK not sent), a manually acknowledged one, a QoS 0 one.
        assert!(inboxes
            .deliver(StreamKey::CONTROL, message("first", QoS::AtMostOnce), None)
            .is_none());
        let auto = Some(token(1));
        assert!(inboxes
            .deliver(StreamKey::CONTROL, message("auto", QoS::AtLeastOnce), auto)
            .is_none());
        let manual = message("manual", QoS::AtLeastOnce);
        assert!(inboxes.deliver(StreamKey::CONTROL, manual, None).is_none());
        assert!(inboxes
            .deliver(StreamKey::CONTROL, message("zero", QoS::AtMostOnce), None)
            .is_none());
        inboxes.connection_lost(ClientError::ConnectionLost("gone".into()));
        let mut seen = Vec::new();
        for _ in 0..4 {
            inboxes.drain();
            match rx.try_recv().expect("a queued item") {
                Ok(m) => seen.push(m.topic.to_string()),
                Err(e) => seen.push(format!("error: {e}")),
            }
        }
        assert_eq!(seen[..3], ["first", "manual", "zero"]);
        assert!(seen[3].starts_with("error: "), "{seen:?}");
    }

    #[test]
    fn a_planned_reconnection_forgets_only_what_comes_again() {
        let mut inboxes = Inboxes::new(1);
        let (tx, mut rx) = mpsc::channel(1);
        inboxes.insert(StreamKey::CONTROL, tx);
        inboxes.deliver(StreamKey::CONTROL, message("first", QoS::AtMostOnce), None);
        inboxes.deliver(
            StreamKey::CONTROL,
            message("auto", QoS::AtLeastOnce),
            Some(token(1)),
        );
        inboxes.deliver(
            StreamKey::CONTROL,
            message("manual", QoS::AtLeastOnce),
            None,
        );
        inboxes.forget_backlog();
        let mut seen = Vec::new();
        for _ in 0..2 {
            inboxes.drain();
            seen.push(
                rx.try_recv()
                    .expect("queued")
                    .expect("a message")
                    .topic
                    .to_string(),
            );
        }
        assert_eq!(seen, ["first", "manual"]);
        assert!(rx.try_recv().is_err(), "nothing else, and no error");
    }
}
