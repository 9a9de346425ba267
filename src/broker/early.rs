//! QUIC 0-RTT: which MQTT packets that arrive as early data, before the handshake is confirmed,
//! act at once and which wait (`quic.zero_rtt`, `proto-ext/zero-rtt.md`).
//!
//! Early data can be replayed by anyone who recorded it, so in `safe` mode a QoS 1/2 PUBLISH is
//! held until the handshake is confirmed, and so is everything after it on the same stream
//! (per-stream order is kept); the will of a CONNECT is announced as held before the CONNECT
//! ([`EarlyStep::HoldWill`], see [`Broker::hold_will`](super::Broker::hold_will)) and counts
//! once the handshake is confirmed ([`EarlyStep::Confirmed`]). CONNECT itself, SUBSCRIBE,
//! UNSUBSCRIBE, PINGREQ and QoS 0 PUBLISH pass at once, so CONNACK leaves as 0.5-RTT data. If
//! the handshake never completes (a replayed or abandoned flight), what was held is dropped: a
//! replay can subscribe and read nothing (it has no keys to read with), but it can never
//! publish a QoS 1/2 message or arm a will. In `full` mode everything passes at once.
//!
//! Sans-IO: one [`EarlyStream`] per stream the client opened in 0-RTT takes the packets read
//! from it and the handshake's progress, and says what to hand the broker, in order. The QUIC
//! glue (`transport::early`) drives it, and stops reading the stream while it holds packets,
//! so QUIC flow control bounds what is held.

use crate::codec::{Packet, QoS};

/// What early data may do (`quic.zero_rtt`; a stream never gets a gate when it is `off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyPolicy {
    /// Hold QoS 1/2 PUBLISH (and what follows it) and wills until the handshake is confirmed.
    Safe,
    /// Everything acts at once.
    Full,
}

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

/// What to hand the broker, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum EarlyStep {
    /// These packets of the stream, now.
    Packets(Vec<Packet>),
    /// The will of the CONNECT that follows waits for the handshake ([`Broker::hold_will`]).
    ///
    /// [`Broker::hold_will`]: super::Broker::hold_will
    HoldWill,
    /// The handshake is confirmed: a held will now counts
    /// ([`Broker::handshake_confirmed`](super::Broker::handshake_confirmed)).
    Confirmed,
}

/// What one call saw, for the listener's counters (`QuicStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EarlyCounts {
    /// CONNECT packets sent as early data.
    pub connects: usize,
    /// Packets read before the handshake was confirmed.
    pub early: usize,
    /// Of those, packets held.
    pub held: usize,
    /// Held packets dropped because the handshake failed.
    pub dropped: usize,
}

/// The 0-RTT gate of one stream the client opened in 0-RTT.
#[derive(Debug)]
pub struct EarlyStream {
    policy: EarlyPolicy,
    handshake: Handshake,
    /// Everything from the first held packet on, in order.
    held: Vec<Packet>,
    will_held: bool,
}

/// Whether `safe` mode holds `packet` until the handshake is confirmed.
pub fn held_in_safe_mode(packet: &Packet) -> bool {
    matches!(packet, Packet::Publish(p) if p.qos != QoS::AtMostOnce)
}

impl EarlyStream {
    pub fn new(policy: EarlyPolicy) -> EarlyStream {
        EarlyStream {
            policy,
            handshake: Handshake::Pending,
            held: Vec::new(),
            will_held: false,
        }
    }

    /// True while packets wait for the handshake: the glue reads nothing more from the stream
    /// until [`settle`](Self::settle).
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Packets read from the stream: appends to `steps` what goes to the broker now.
    pub fn read(&mut self, packets: Vec<Packet>, steps: &mut Vec<EarlyStep>) -> EarlyCounts {
        let mut counts = EarlyCounts::default();
        match self.handshake {
            // The stream's data is bound to a confirmed connection now: it passes as it comes.
            Handshake::Confirmed => {
                counts.connects = connects(&packets);
                steps.push(EarlyStep::Packets(packets));
                return counts;
            }
            // The connection is closing: nothing it sent counts.
            Handshake::Failed => return counts,
            Handshake::Pending => {}
        }
        counts.early = packets.len();
        let safe = self.policy == EarlyPolicy::Safe;
        let mut pass = Vec::with_capacity(packets.len());
        for packet in packets {
            if let Packet::Connect(connect) = &packet {
                counts.connects += 1;
                tracing::debug!(client = %connect.client_id, "CONNECT in 0-RTT early data");
                if safe && connect.will.is_some() {
                    // The broker must know before it reads this CONNECT.
                    if !pass.is_empty() {
                        steps.push(EarlyStep::Packets(std::mem::take(&mut pass)));
                    }
                    steps.push(EarlyStep::HoldWill);
                    self.will_held = true;
                }
            }
            if safe && (self.holding() || held_in_safe_mode(&packet)) {
                counts.held += 1;
                self.held.push(packet);
            } else {
                pass.push(packet);
            }
        }
        if !pass.is_empty() {
            steps.push(EarlyStep::Packets(pass));
        }
        if counts.held > 0 {
            tracing::debug!(
                packets = counts.held,
                "early QoS 1/2 PUBLISH held until the handshake is confirmed"
            );
        }
        counts
    }

    /// The handshake is now `state`: once confirmed, the held will counts and the held packets
    /// go to the broker; once failed, they are dropped. Only the first settled state counts.
    pub fn settle(&mut self, state: Handshake, steps: &mut Vec<EarlyStep>) -> EarlyCounts {
        let mut counts = EarlyCounts::default();
        if self.handshake != Handshake::Pending || state == Handshake::Pending {
            return counts;
        }
        self.handshake = state;
        let held = std::mem::take(&mut self.held);
        if state == Handshake::Failed {
            counts.dropped = held.len();
            return counts;
        }
        if self.will_held {
            steps.push(EarlyStep::Confirmed);
        }
        if !held.is_empty() {
            steps.push(EarlyStep::Packets(held));
        }
        counts
    }
}

fn connects(packets: &[Packet]) -> usize {
    packets
        .iter()
        .filter(|p| matches!(p, Packet::Connect(_)))
        .count()
}

#[cfg(test)]
pub(crate) mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::{Connect, Properties, ProtocolVersion, Publish, Subscribe, Will};

    /// A 5.0 CONNECT, with a will or without.
    pub(crate) fn connect(will: bool) -> Packet {
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

    /// A PUBLISH to `t` at `qos` (packet id `id` unless QoS 0).
    pub(crate) fn publish(qos: QoS, id: u16) -> Packet {
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

    fn subscribe() -> Packet {
        Packet::Subscribe(Subscribe {
            packet_id: 7,
            filters: vec![("t".into(), Default::default())],
            properties: Properties::default(),
        })
    }

    /// Steps as names: packet types, `HoldWill`, `Confirmed`.
    fn names(steps: &[EarlyStep]) -> Vec<String> {
        steps
            .iter()
            .flat_map(|step| match step {
                EarlyStep::Packets(packets) => packets
                    .iter()
                    .map(|p| match p {
                        Packet::Publish(p) => format!("PUBLISH{}", p.qos as u8),
                        Packet::Connect(_) => "CONNECT".into(),
                        Packet::PingReq => "PINGREQ".into(),
                        Packet::Subscribe(_) => "SUBSCRIBE".into(),
                        other => format!("type {}", other.packet_type()),
                    })
                    .collect(),
                EarlyStep::HoldWill => vec!["HoldWill".into()],
                EarlyStep::Confirmed => vec!["Confirmed".into()],
            })
            .collect()
    }

    #[test]
    fn safe_mode_passes_connect_subscribe_ping_and_qos0_at_once() {
        let mut early = EarlyStream::new(EarlyPolicy::Safe);
        let mut steps = Vec::new();
        let counts = early.read(
            vec![
                connect(false),
                subscribe(),
                Packet::PingReq,
                publish(QoS::AtMostOnce, 0),
            ],
            &mut steps,
        );
        assert_eq!(
            names(&steps),
            ["CONNECT", "SUBSCRIBE", "PINGREQ", "PUBLISH0"]
        );
        assert!(!early.holding());
        assert_eq!(
            counts,
            EarlyCounts {
                connects: 1,
                early: 4,
                held: 0,
                dropped: 0
            }
        );
        steps.clear();
        early.settle(Handshake::Confirmed, &mut steps);
        assert!(steps.is_empty(), "no will was held: nothing to confirm");
    }

    #[test]
    fn safe_mode_holds_qos1_and_what_follows_and_announces_the_will_first() {
        let mut early = EarlyStream::new(EarlyPolicy::Safe);
        let mut steps = Vec::new();
        let counts = early.read(
            vec![
                Packet::PingReq,
                connect(true),
                publish(QoS::AtMostOnce, 0),
                publish(QoS::AtLeastOnce, 1),
                publish(QoS::AtMostOnce, 0),
            ],
            &mut steps,
        );
        // HoldWill comes after what preceded the CONNECT and before the CONNECT.
        assert_eq!(
            names(&steps),
            ["PINGREQ", "HoldWill", "CONNECT", "PUBLISH0"]
        );
        assert!(early.holding());
        assert_eq!((counts.connects, counts.early, counts.held), (1, 5, 2));

        steps.clear();
        let counts = early.settle(Handshake::Confirmed, &mut steps);
        assert_eq!(names(&steps), ["Confirmed", "PUBLISH1", "PUBLISH0"]);
        assert_eq!(counts, EarlyCounts::default());
        assert!(!early.holding());

        // From now on the stream passes everything, and counts late CONNECTs.
        steps.clear();
        let counts = early.read(vec![publish(QoS::ExactlyOnce, 2)], &mut steps);
        assert_eq!(names(&steps), ["PUBLISH2"]);
        assert_eq!(counts, EarlyCounts::default());
    }

    #[test]
    fn a_failed_handshake_drops_what_was_held_and_what_follows() {
        let mut early = EarlyStream::new(EarlyPolicy::Safe);
        let mut steps = Vec::new();
        early.read(
            vec![connect(true), publish(QoS::ExactlyOnce, 1), Packet::PingReq],
            &mut steps,
        );
        assert_eq!(names(&steps), ["HoldWill", "CONNECT"]);
        steps.clear();
        let counts = early.settle(Handshake::Failed, &mut steps);
        assert!(steps.is_empty(), "no Confirmed: the will never counts");
        assert_eq!(counts.dropped, 2);
        let counts = early.read(vec![publish(QoS::AtMostOnce, 0)], &mut steps);
        assert!(steps.is_empty());
        assert_eq!(counts, EarlyCounts::default());
        // A later confirmation cannot revive it.
        early.settle(Handshake::Confirmed, &mut steps);
        assert!(steps.is_empty());
    }

    #[test]
    fn full_mode_passes_everything_at_once() {
        let mut early = EarlyStream::new(EarlyPolicy::Full);
        let mut steps = Vec::new();
        let counts = early.read(
            vec![connect(true), publish(QoS::AtLeastOnce, 1)],
            &mut steps,
        );
        assert_eq!(names(&steps), ["CONNECT", "PUBLISH1"]);
        assert!(!early.holding());
        assert_eq!((counts.connects, counts.early, counts.held), (1, 2, 0));
        steps.clear();
        early.settle(Handshake::Confirmed, &mut steps);
        assert!(steps.is_empty(), "full mode holds no will");
    }

    #[test]
    fn only_qos1_and_qos2_publish_are_held() {
        assert!(held_in_safe_mode(&publish(QoS::AtLeastOnce, 1)));
        assert!(held_in_safe_mode(&publish(QoS::ExactlyOnce, 1)));
        assert!(!held_in_safe_mode(&publish(QoS::AtMostOnce, 0)));
        assert!(!held_in_safe_mode(&subscribe()));
        assert!(!held_in_safe_mode(&connect(true)));
    }
}
