//! QUIC 0-RTT on the server: which MQTT packets that arrive before the handshake is confirmed
//! act at once, and which wait (`quic.zero_rtt`, `proto-ext/zero-rtt.md`).
//!
//! The broker is sans-IO and knows nothing of 0-RTT. A stream the client opened in 0-RTT
//! (`RecvStream::is_0rtt`) gets a *gate* between its reader and the broker: until the handshake
//! is confirmed, a QoS 1/2 PUBLISH is held back, and so is everything after it on that stream
//! (per-stream order is kept); the will of a CONNECT is announced to the broker as held
//! (`Event::HoldWill`, the broker registers it at `Event::HandshakeConfirmed`). CONNECT itself,
//! SUBSCRIBE, UNSUBSCRIBE, PINGREQ and QoS 0 PUBLISH pass at once, so CONNACK leaves as 0.5-RTT
//! data. If the handshake never completes (a replayed or abandoned flight), what was held is
//! dropped: a replay can subscribe and read nothing (it has no keys to read with), but it can
//! never publish a QoS 1/2 message or arm a will.
//!
//! quinn 0.11: on the server, `ZeroRttAccepted` resolves `false` even when 0-RTT was used; it
//! is read as "the handshake is done" (or the connection failed: `close_reason` tells which).
//! `RecvStream::is_0rtt` is true for a stream accepted while the handshake is in progress; one
//! accepted after it (the server task was slow) is ordinary, which is safe: its data belongs
//! to a connection whose handshake is already confirmed, so it cannot be a replay.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::broker::ConnId;
use crate::codec::{Packet, QoS};
use crate::config::ZeroRtt;
use crate::handoff::Event;

/// Where the handshake of a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// 0.5-RTT: the server's flight is out, the client's Finished is not in.
    Pending,
    /// The client proved it holds the keys: nothing it sends can be a replay.
    Confirmed,
    /// The connection ended before that.
    Failed,
}

/// What the QUIC listener counts about 0-RTT.
#[derive(Debug, Default)]
pub struct QuicStats {
    zero_rtt_connects: AtomicU64,
    early_packets: AtomicU64,
    held_packets: AtomicU64,
    dropped_packets: AtomicU64,
    retries_sent: AtomicU64,
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
    /// connection limits (`super::admission`).
    pub refused_before_handshake: u64,
    /// Retry packets sent (`quic.address_validation`).
    pub retries_sent: u64,
}

impl QuicStats {
    pub fn snapshot(&self) -> QuicStatsSnapshot {
        QuicStatsSnapshot {
            zero_rtt_connects: self.zero_rtt_connects.load(Ordering::Relaxed),
            early_packets: self.early_packets.load(Ordering::Relaxed),
            held_packets: self.held_packets.load(Ordering::Relaxed),
            dropped_packets: self.dropped_packets.load(Ordering::Relaxed),
            // Counted by the listener's admission; filled in by `ServerHandle::quic_stats`.
            refused_before_handshake: 0,
            retries_sent: self.retries_sent.load(Ordering::Relaxed),
        }
    }

    pub fn retry_sent(&self) {
        self.retries_sent.fetch_add(1, Ordering::Relaxed);
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
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

    /// The sender a stream's reader hands its events to: `events` itself, or a gate in front
    /// of it for a stream opened in 0-RTT (the gate passes everything at once when the
    /// handshake is already confirmed, and counts). Every event of the stream (its end too)
    /// must go through the returned sender, so the broker sees them in order.
    pub fn stream_events(
        &self,
        conn: ConnId,
        is_0rtt: bool,
        events: &mpsc::Sender<Event>,
    ) -> mpsc::Sender<Event> {
        if !is_0rtt || self.policy == ZeroRtt::Off {
            return events.clone();
        }
        // Capacity 1: while the gate holds packets it stops reading, so the reader stops, and
        // QUIC flow control stops the client: held data is bounded by the receive windows.
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(gate(
            conn,
            rx,
            events.clone(),
            self.handshake.clone(),
            self.policy,
            self.stats.clone(),
        ));
        tx
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

/// Whether `safe` holds `packet` until the handshake is confirmed.
pub fn held_in_safe_mode(packet: &Packet) -> bool {
    matches!(packet, Packet::Publish(p) if p.qos != QoS::AtMostOnce)
}

async fn gate(
    conn: ConnId,
    mut rx: mpsc::Receiver<Event>,
    events: mpsc::Sender<Event>,
    mut handshake: watch::Receiver<Handshake>,
    policy: ZeroRtt,
    stats: Arc<QuicStats>,
) {
    let mut held: VecDeque<Event> = VecDeque::new();
    let mut will_held = false;
    loop {
        let state = *handshake.borrow_and_update();
        if state != Handshake::Pending {
            if state == Handshake::Confirmed && will_held {
                let _ = events.send(Event::HandshakeConfirmed { conn }).await;
            }
            for event in held.drain(..) {
                match event {
                    Event::Packets { packets, .. } if state == Handshake::Failed => {
                        QuicStats::add(&stats.dropped_packets, packets.len());
                    }
                    event => {
                        if events.send(event).await.is_err() {
                            return;
                        }
                    }
                }
            }
            // From now on the stream's data is bound to a confirmed connection (or to a
            // connection that is closing): pass it on as it comes.
            while let Some(event) = rx.recv().await {
                if let Event::Packets { packets, .. } = &event {
                    if state == Handshake::Failed {
                        continue;
                    }
                    let connects = packets
                        .iter()
                        .filter(|p| matches!(p, Packet::Connect(_)))
                        .count();
                    QuicStats::add(&stats.zero_rtt_connects, connects);
                }
                if events.send(event).await.is_err() {
                    return;
                }
            }
            return;
        }
        if !held.is_empty() {
            // Holding: read nothing more until the handshake settles.
            if handshake.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { return };
                let Event::Packets { conn, stream, packets } = event else {
                    if events.send(event).await.is_err() {
                        return;
                    }
                    continue;
                };
                QuicStats::add(&stats.early_packets, packets.len());
                let mut pass = Vec::with_capacity(packets.len());
                let mut hold = Vec::new();
                for packet in packets {
                    if let Packet::Connect(connect) = &packet {
                        QuicStats::add(&stats.zero_rtt_connects, 1);
                        tracing::debug!(conn = conn.0, client = %connect.client_id, "CONNECT in 0-RTT early data");
                        if policy == ZeroRtt::Safe && connect.will.is_some() {
                            // The broker must know before it reads this CONNECT.
                            if !pass.is_empty() {
                                let packets = std::mem::take(&mut pass);
                                if events.send(Event::Packets { conn, stream, packets }).await.is_err() {
                                    return;
                                }
                            }
                            if events.send(Event::HoldWill { conn }).await.is_err() {
                                return;
                            }
                            will_held = true;
                        }
                    }
                    if policy == ZeroRtt::Safe && (!hold.is_empty() || held_in_safe_mode(&packet)) {
                        hold.push(packet);
                    } else {
                        pass.push(packet);
                    }
                }
                if !pass.is_empty()
                    && events.send(Event::Packets { conn, stream, packets: pass }).await.is_err()
                {
                    return;
                }
                if !hold.is_empty() {
                    tracing::debug!(conn = conn.0, packets = hold.len(), "early QoS 1/2 PUBLISH held until the handshake is confirmed");
                    QuicStats::add(&stats.held_packets, hold.len());
                    held.push_back(Event::Packets { conn, stream, packets: hold });
                }
            }
            changed = handshake.changed() => {
                if changed.is_err() {
                    // The connection task is gone without a verdict.
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::StreamId;
    use crate::codec::{Connect, Properties, ProtocolVersion, Publish, Will};
    use bytes::Bytes;

    fn connect(will: bool) -> Packet {
        Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 30,
            properties: Properties::default(),
            client_id: "c".into(),
            will: will.then(|| Will {
                topic: "w".into(),
                payload: Bytes::from_static(b"x"),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Properties::default(),
            }),
            username: None,
            password: None,
        }))
    }

    fn publish(qos: QoS, id: u16) -> Packet {
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: "t".into(),
            packet_id: (qos != QoS::AtMostOnce).then_some(id),
            properties: Properties::default(),
            payload: Bytes::from_static(b"p"),
        })
    }

    fn packets(packets: Vec<Packet>) -> Event {
        Event::Packets {
            conn: ConnId(1),
            stream: StreamId::CONTROL,
            packets,
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
        let events = early.stream_events(ConnId(1), true, &broker_tx);
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
        let events = early.stream_events(ConnId(1), true, &broker_tx);
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
        let events = early.stream_events(ConnId(1), true, &broker_tx);
        events
            .send(packets(vec![connect(true), publish(QoS::AtLeastOnce, 1)]))
            .await
            .unwrap();
        assert_eq!(drain(&mut broker_rx).await, ["CONNECT", "PUBLISH1"]);
        assert_eq!(stats.snapshot().zero_rtt_connects, 1);

        let safe = EarlyData::new(ZeroRtt::Safe, hs_rx, stats);
        let events = safe.stream_events(ConnId(1), false, &broker_tx);
        events
            .send(packets(vec![publish(QoS::AtLeastOnce, 2)]))
            .await
            .unwrap();
        assert_eq!(drain(&mut broker_rx).await, ["PUBLISH1"]);
    }
}
