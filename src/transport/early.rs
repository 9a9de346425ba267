//! QUIC 0-RTT on the server: the glue around the broker's 0-RTT rules (`broker::early`, which
//! decides what early data may do). A stream the client opened in 0-RTT
//! (`RecvStream::is_0rtt`) gets a *gate* between its reader and the broker task that feeds the
//! stream's packets and the handshake's progress to an [`EarlyStream`] and forwards what it
//! says; while it holds packets the gate reads nothing more, so QUIC flow control bounds them.
//! Once the handshake has settled and nothing is held, the gate forwards what it already took
//! and lets go: the reader sends straight to the broker task from then on ([`StreamEvents`]),
//! so a connection that resumed with 0-RTT pays no extra task hop per read for its life.
//!
//! quinn 0.11: on the server, `ZeroRttAccepted` resolves `false` even when 0-RTT was used; it
//! is read as "the handshake is done" (or the connection failed: `close_reason` tells which).
//! `RecvStream::is_0rtt` is true for a stream accepted while the handshake is in progress; one
//! accepted after it (the server task was slow) is ordinary, which is safe: its data belongs
//! to a connection whose handshake is already confirmed, so it cannot be a replay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

pub use crate::broker::early::Handshake;
use crate::broker::early::{EarlyCounts, EarlyPolicy, EarlyStep, EarlyStream};
use crate::broker::{ConnId, StreamId};
use crate::config::ZeroRtt;
use crate::handoff::Event;

/// What the QUIC listener counts about 0-RTT.
#[derive(Debug, Default)]
pub struct QuicStats {
    zero_rtt_connects: AtomicU64,
    early_packets: AtomicU64,
    held_packets: AtomicU64,
    dropped_packets: AtomicU64,
    retries_sent: AtomicU64,
    handshakes_failed: AtomicU64,
    handshakes_timed_out: AtomicU64,
}

/// A copy of [`QuicStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuicStatsSnapshot {
    /// CONNECT packets that arrived as 0-RTT early data: on a control stream the server
    /// accepted while the handshake was in progress (quinn's `RecvStream::is_0rtt`). A server
    /// task that only gets to accept the stream after the handshake completed (a busy host)
    /// sees an ordinary stream, so this may undercount; it never overcounts.
    pub zero_rtt_connects: u64,
    /// MQTT packets read from such streams before the handshake was confirmed.
    pub early_packets: u64,
    /// Early packets held until the handshake was confirmed (`safe`).
    pub held_packets: u64,
    /// Held packets dropped because the handshake never completed.
    pub dropped_packets: u64,
    /// Connections refused before their handshake: their address or the listener was at the
    /// connection limits, or the address past its connection rate (`super::admission`).
    pub refused_before_handshake: u64,
    /// Retry packets sent (`quic.address_validation`).
    pub retries_sent: u64,
    /// Handshakes that failed (TLS or transport error) or did not finish in time.
    pub handshakes_failed: u64,
    pub handshakes_timed_out: u64,
}

impl QuicStats {
    pub fn handshake_failed(&self) {
        self.handshakes_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn handshake_timed_out(&self) {
        self.handshakes_timed_out.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> QuicStatsSnapshot {
        QuicStatsSnapshot {
            zero_rtt_connects: self.zero_rtt_connects.load(Ordering::Relaxed),
            early_packets: self.early_packets.load(Ordering::Relaxed),
            held_packets: self.held_packets.load(Ordering::Relaxed),
            dropped_packets: self.dropped_packets.load(Ordering::Relaxed),
            // Counted by the listener's admission; filled in by `ServerHandle::quic_stats`.
            refused_before_handshake: 0,
            retries_sent: self.retries_sent.load(Ordering::Relaxed),
            handshakes_failed: self.handshakes_failed.load(Ordering::Relaxed),
            handshakes_timed_out: self.handshakes_timed_out.load(Ordering::Relaxed),
        }
    }

    pub fn retry_sent(&self) {
        self.retries_sent.fetch_add(1, Ordering::Relaxed);
    }

    fn record(&self, counts: EarlyCounts) {
        let add = |counter: &AtomicU64, n: usize| {
            if n > 0 {
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
        };
        add(&self.zero_rtt_connects, counts.connects);
        add(&self.early_packets, counts.early);
        add(&self.held_packets, counts.held);
        add(&self.dropped_packets, counts.dropped);
    }
}

/// The 0-RTT state of one connection, shared by its stream readers.
#[derive(Clone)]
pub struct EarlyData {
    policy: ZeroRtt,
    handshake: watch::Receiver<Handshake>,
    stats: Arc<QuicStats>,
}

impl EarlyData {
    pub fn new(
        policy: ZeroRtt,
        handshake: watch::Receiver<Handshake>,
        stats: Arc<QuicStats>,
    ) -> EarlyData {
        EarlyData {
            policy,
            handshake,
            stats,
        }
    }

    /// A connection whose handshake completed before anything was read (no 0-RTT).
    pub fn confirmed(stats: Arc<QuicStats>) -> EarlyData {
        let (_, handshake) = watch::channel(Handshake::Confirmed);
        EarlyData::new(ZeroRtt::Off, handshake, stats)
    }

    /// Where a stream's reader sends its events: `events` itself, or a gate in front of it
    /// for a stream opened in 0-RTT (the gate passes everything at once when the handshake is
    /// already confirmed, and counts). Every event of the stream (its end too) must go through
    /// the returned [`StreamEvents`], so the broker sees them in order.
    pub fn stream_events(
        &self,
        conn: ConnId,
        is_0rtt: bool,
        events: &mpsc::Sender<Event>,
    ) -> StreamEvents {
        let policy = match self.policy {
            _ if !is_0rtt => return StreamEvents::Direct(events.clone()),
            ZeroRtt::Off => return StreamEvents::Direct(events.clone()),
            ZeroRtt::Safe => EarlyPolicy::Safe,
            ZeroRtt::Full => EarlyPolicy::Full,
        };
        // Capacity 1: while the gate holds packets it stops reading, so the reader stops, and
        // QUIC flow control stops the client: held data is bounded by the receive windows.
        let (tx, rx) = mpsc::channel(1);
        let (released_tx, released) = oneshot::channel();
        tokio::spawn(gate(
            conn,
            rx,
            events.clone(),
            self.handshake.clone(),
            EarlyStream::new(policy),
            self.stats.clone(),
            released_tx,
        ));
        StreamEvents::Gated {
            gate: tx,
            direct: events.clone(),
            released,
        }
    }
}

/// The way from a stream's reader to the broker task: straight, or through the stream's 0-RTT
/// gate until the gate lets go.
pub enum StreamEvents {
    Direct(mpsc::Sender<Event>),
    Gated {
        gate: mpsc::Sender<Event>,
        /// The broker task's sender, for after the gate.
        direct: mpsc::Sender<Event>,
        /// Resolves once the gate has forwarded everything it took; an error if it ended
        /// without letting go.
        released: oneshot::Receiver<()>,
    },
}

impl StreamEvents {
    /// Sends `event` on, in order with every earlier one; an error when the broker task (or
    /// the gate, before letting go) is gone.
    pub async fn send(&mut self, event: Event) -> Result<(), mpsc::error::SendError<Event>> {
        let event = match self {
            StreamEvents::Direct(tx) => return tx.send(event).await,
            StreamEvents::Gated { gate, released, .. } => match gate.send(event).await {
                Ok(()) => return Ok(()),
                // The gate closed its end: once what it took is forwarded, straight on. A gate
                // that ended without letting go (the connection failed) ends the stream too:
                // nothing may pass around what it held.
                Err(mpsc::error::SendError(event)) => match released.await {
                    Ok(()) => event,
                    Err(_) => return Err(mpsc::error::SendError(event)),
                },
            },
        };
        if let StreamEvents::Gated { direct, .. } = self {
            *self = StreamEvents::Direct(direct.clone());
        }
        match self {
            StreamEvents::Direct(tx) => tx.send(event).await,
            StreamEvents::Gated { .. } => Err(mpsc::error::SendError(event)),
        }
    }

    /// Whether events still go through a gate (tests).
    #[cfg(test)]
    fn gated(&self) -> bool {
        matches!(self, StreamEvents::Gated { .. })
    }
}

impl super::stream::EventSink for &mut StreamEvents {
    async fn send(&mut self, event: Event) -> Result<(), ()> {
        StreamEvents::send(self, event).await.map_err(|_| ())
    }
}

/// Sends `tx` the state of the handshake once `accepted` (quinn's `ZeroRttAccepted`) resolves,
/// or `Failed` if it takes longer than `timeout` (the connection is then closed).
pub async fn confirm(
    connection: quinn::Connection,
    accepted: quinn::ZeroRttAccepted,
    timeout: std::time::Duration,
    tx: watch::Sender<Handshake>,
) {
    let state = match tokio::time::timeout(timeout, accepted).await {
        Ok(_) if connection.close_reason().is_none() => Handshake::Confirmed,
        Ok(_) => Handshake::Failed,
        Err(_) => {
            tracing::debug!(remote = %connection.remote_address(), "QUIC handshake timed out");
            connection.close(
                quinn::VarInt::from_u32(super::app_error::ABNORMAL),
                b"handshake timeout",
            );
            Handshake::Failed
        }
    };
    let _ = tx.send(state);
}

/// Forwards the events of one stream to the broker task (`events`) through `early`: packets as
/// it says, everything else as it comes, all in order.
async fn gate(
    conn: ConnId,
    mut rx: mpsc::Receiver<Event>,
    events: mpsc::Sender<Event>,
    mut handshake: watch::Receiver<Handshake>,
    mut early: EarlyStream,
    stats: Arc<QuicStats>,
    released: oneshot::Sender<()>,
) {
    let mut steps = Vec::new();
    // The stream the packets come from (held ones are sent on settling).
    let mut stream = StreamId::CONTROL;
    let mut settled = false;
    loop {
        let state = *handshake.borrow_and_update();
        if state != Handshake::Pending && !settled {
            settled = true;
            stats.record(early.settle(state, &mut steps));
            if !forward(conn, stream, &mut steps, 0, &events).await {
                return;
            }
        }
        if settled && !early.holding() {
            // Nothing left to judge: forward what is already in the channel, then let the
            // reader send straight to the broker task (`StreamEvents::send`).
            rx.close();
            while let Some(event) = rx.recv().await {
                if pass(conn, event, &mut early, &mut steps, &stats, &events)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = released.send(());
            return;
        }
        if early.holding() {
            // Read nothing more until the handshake settles.
            if handshake.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { return };
                match pass(conn, event, &mut early, &mut steps, &stats, &events).await {
                    Ok(Some(from)) => stream = from,
                    Ok(None) => {}
                    Err(()) => return,
                }
            }
            changed = handshake.changed(), if !settled => {
                if changed.is_err() {
                    // The connection task is gone without a verdict.
                    return;
                }
            }
        }
    }
}

/// One event of the reader through the gate: packets as `early` says, anything else as it
/// comes. `Ok`: the stream the packets came from (`None` for other events); `Err`: the broker
/// task is gone.
async fn pass(
    conn: ConnId,
    event: Event,
    early: &mut EarlyStream,
    steps: &mut Vec<EarlyStep>,
    stats: &QuicStats,
    events: &mpsc::Sender<Event>,
) -> Result<Option<StreamId>, ()> {
    let Event::Packets {
        stream,
        packets,
        read,
        ..
    } = event
    else {
        return events.send(event).await.map(|_| None).map_err(|_| ());
    };
    stats.record(early.read(packets, steps));
    if forward(conn, stream, steps, read, events).await {
        Ok(Some(stream))
    } else {
        Err(())
    }
}

/// Sends the broker task what `steps` says, in order; false when it is gone. `read` (the
/// bytes read for the packets just taken, see `Event::Packets`) goes with the first packets
/// forwarded, or alone when all of them are held.
async fn forward(
    conn: ConnId,
    stream: StreamId,
    steps: &mut Vec<EarlyStep>,
    mut read: usize,
    events: &mpsc::Sender<Event>,
) -> bool {
    if read > 0 && !steps.iter().any(|s| matches!(s, EarlyStep::Packets(_))) {
        steps.insert(0, EarlyStep::Packets(Vec::new()));
    }
    for step in steps.drain(..) {
        let event = match step {
            EarlyStep::Packets(packets) => Event::Packets {
                conn,
                stream,
                packets,
                read: std::mem::take(&mut read),
            },
            EarlyStep::HoldWill => Event::HoldWill { conn },
            EarlyStep::Confirmed => Event::HandshakeConfirmed { conn },
        };
        if events.send(event).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    // The packets of the broker's own 0-RTT tests.
    use crate::broker::early::tests::{connect, publish};
    use crate::codec::{Packet, QoS};

    fn packets(packets: Vec<Packet>) -> Event {
        Event::Packets {
            conn: ConnId(1),
            stream: StreamId::CONTROL,
            packets,
            read: 0,
        }
    }

    /// What the broker receives: packet type names, `HoldWill`, `Confirmed`, `Lost`.
    fn describe(event: &Event) -> Vec<String> {
        match event {
            Event::Packets { packets, .. } => packets
                .iter()
                .map(|p| match p {
                    Packet::Publish(p) => format!("PUBLISH{}", p.qos as u8),
                    Packet::Connect(_) => "CONNECT".into(),
                    Packet::PingReq => "PINGREQ".into(),
                    other => format!("type {}", other.packet_type()),
                })
                .collect(),
            Event::HoldWill { .. } => vec!["HoldWill".into()],
            Event::HandshakeConfirmed { .. } => vec!["Confirmed".into()],
            Event::Lost { .. } => vec!["Lost".into()],
            _ => vec!["other".into()],
        }
    }

    async fn drain(rx: &mut mpsc::Receiver<Event>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Some(event)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), rx.recv()).await
        {
            out.extend(describe(&event));
        }
        out
    }

    #[tokio::test]
    async fn safe_mode_holds_qos1_and_what_follows_until_confirmed() {
        let (broker_tx, mut broker_rx) = mpsc::channel(16);
        let (hs_tx, hs_rx) = watch::channel(Handshake::Pending);
        let stats = Arc::new(QuicStats::default());
        let early = EarlyData::new(ZeroRtt::Safe, hs_rx, stats.clone());
        let mut events = early.stream_events(ConnId(1), true, &broker_tx);
        events
            .send(packets(vec![
                connect(true),
                Packet::PingReq,
                publish(QoS::AtMostOnce, 0),
                publish(QoS::AtLeastOnce, 1),
                publish(QoS::AtMostOnce, 0),
            ]))
            .await
            .unwrap();
        events.send(Event::Lost { conn: ConnId(1) }).await.unwrap();
        let first = drain(&mut broker_rx).await;
        assert_eq!(first, ["HoldWill", "CONNECT", "PINGREQ", "PUBLISH0"]);
        hs_tx.send(Handshake::Confirmed).unwrap();
        let rest = drain(&mut broker_rx).await;
        assert_eq!(rest, ["Confirmed", "PUBLISH1", "PUBLISH0", "Lost"]);
        let s = stats.snapshot();
        assert_eq!(
            (
                s.zero_rtt_connects,
                s.early_packets,
                s.held_packets,
                s.dropped_packets
            ),
            (1, 5, 2, 0)
        );
    }

    #[tokio::test]
    async fn a_handshake_that_fails_drops_what_was_held() {
        let (broker_tx, mut broker_rx) = mpsc::channel(16);
        let (hs_tx, hs_rx) = watch::channel(Handshake::Pending);
        let stats = Arc::new(QuicStats::default());
        let early = EarlyData::new(ZeroRtt::Safe, hs_rx, stats.clone());
        let mut events = early.stream_events(ConnId(1), true, &broker_tx);
        events
            .send(packets(vec![connect(false), publish(QoS::ExactlyOnce, 1)]))
            .await
            .unwrap();
        assert_eq!(drain(&mut broker_rx).await, ["CONNECT"]);
        hs_tx.send(Handshake::Failed).unwrap();
        events.send(Event::Lost { conn: ConnId(1) }).await.unwrap();
        assert_eq!(drain(&mut broker_rx).await, ["Lost"]);
        assert_eq!(stats.snapshot().dropped_packets, 1);
    }

    #[tokio::test]
    async fn full_mode_and_1rtt_streams_pass_everything() {
        let (broker_tx, mut broker_rx) = mpsc::channel(16);
        let (_hs_tx, hs_rx) = watch::channel(Handshake::Pending);
        let stats = Arc::new(QuicStats::default());
        let early = EarlyData::new(ZeroRtt::Full, hs_rx.clone(), stats.clone());
        let mut events = early.stream_events(ConnId(1), true, &broker_tx);
        events
            .send(packets(vec![connect(true), publish(QoS::AtLeastOnce, 1)]))
            .await
            .unwrap();
        assert_eq!(drain(&mut broker_rx).await, ["CONNECT", "PUBLISH1"]);
        assert_eq!(stats.snapshot().zero_rtt_connects, 1);

        let safe = EarlyData::new(ZeroRtt::Safe, hs_rx, stats);
        let mut events = safe.stream_events(ConnId(1), false, &broker_tx);
        events
            .send(packets(vec![publish(QoS::AtLeastOnce, 2)]))
            .await
            .unwrap();
        assert_eq!(drain(&mut broker_rx).await, ["PUBLISH1"]);
    }

    #[tokio::test]
    async fn once_the_handshake_settled_the_gate_lets_go_and_the_order_holds() {
        let (broker_tx, mut broker_rx) = mpsc::channel(16);
        let (hs_tx, hs_rx) = watch::channel(Handshake::Pending);
        let early = EarlyData::new(ZeroRtt::Safe, hs_rx, Arc::new(QuicStats::default()));
        let mut events = early.stream_events(ConnId(1), true, &broker_tx);
        events
            .send(packets(vec![connect(true), publish(QoS::AtLeastOnce, 1)]))
            .await
            .unwrap();
        // Waits in the gate's channel while the QoS 1 PUBLISH is held.
        events.send(packets(vec![Packet::PingReq])).await.unwrap();
        hs_tx.send(Handshake::Confirmed).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        events
            .send(packets(vec![publish(QoS::AtMostOnce, 0)]))
            .await
            .unwrap();
        assert!(
            !events.gated(),
            "straight to the broker task after the gate"
        );
        events.send(Event::Lost { conn: ConnId(1) }).await.unwrap();
        assert_eq!(
            drain(&mut broker_rx).await,
            [
                "HoldWill",
                "CONNECT",
                "Confirmed",
                "PUBLISH1",
                "PINGREQ",
                "PUBLISH0",
                "Lost"
            ]
        );
    }

    /// The bytes read for what passes here go on to the broker task with the first packets
    /// forwarded, or alone when all of them are held: the reader's bound on unhandled input
    /// (`handoff::outbox::MAX_UNHANDLED_READ`) must get every byte back.
    #[tokio::test]
    async fn the_bytes_read_reach_the_broker_even_when_the_packets_are_held() {
        let (broker_tx, mut broker_rx) = mpsc::channel(16);
        let (hs_tx, hs_rx) = watch::channel(Handshake::Pending);
        let early = EarlyData::new(ZeroRtt::Safe, hs_rx, Arc::new(QuicStats::default()));
        let mut events = early.stream_events(ConnId(1), true, &broker_tx);
        let reads = [
            (vec![connect(true)], 50),
            (vec![publish(QoS::AtLeastOnce, 1)], 300), // held until the handshake
            (vec![Packet::PingReq], 7),                // not taken while holding
        ];
        let (mut read_back, mut seen) = (0, Vec::new());
        for (packets, read) in reads {
            let event = Event::Packets {
                conn: ConnId(1),
                stream: StreamId::CONTROL,
                packets,
                read,
            };
            events.send(event).await.unwrap();
            while let Ok(Some(event)) =
                tokio::time::timeout(std::time::Duration::from_millis(50), broker_rx.recv()).await
            {
                seen.extend(describe(&event));
                if let Event::Packets { read, .. } = event {
                    read_back += read;
                }
            }
        }
        assert_eq!(seen, ["HoldWill", "CONNECT"]);
        assert_eq!(read_back, 350);
        hs_tx.send(Handshake::Confirmed).unwrap();
        while let Ok(Some(event)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), broker_rx.recv()).await
        {
            if let Event::Packets { read, .. } = event {
                read_back += read;
            }
        }
        assert_eq!(read_back, 357);
    }
}
