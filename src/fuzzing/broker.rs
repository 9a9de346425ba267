//! Broker target: several connections feed arbitrary byte chunks (decoded the way the
//! transport glue decodes them), open and close QUIC data streams, send datagrams, get lost,
//! report writes and let time pass. After every step the broker's own invariants must hold,
//! and every packet it sends must be one a server may send, within the client's Maximum Packet
//! Size, and decodable by a client (equal after a round trip for MQTT 5.0).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::{Bytes, BytesMut};

use super::Input;
use crate::broker::{
    accounted_size, Broker, ConnId, HandlerId, Message, Output, QuicCaps, Settings, StreamId,
};
use crate::codec::{self, DecodeError, Packet, ProtocolVersion, QoS};
use crate::config::Config;
use crate::handoff::Event;

const SLOTS: usize = 4;

/// Input: a config selector byte, then operations. Each operation byte names the operation
/// (bits 0-2) and the connection slot (bits 3-4); some read more bytes.
pub fn broker_session(data: &[u8]) {
    let mut input = Input::new(data);
    let mut sim = Sim::new(config(input.byte()));
    while !input.is_empty() {
        let op = input.byte();
        let slot = usize::from(op >> 3) % SLOTS;
        match op & 7 {
            0 => sim.open(slot, op & 0x20 != 0, op & 0x40 != 0),
            1 => {
                let bytes = input.chunk();
                sim.feed(slot, StreamId::CONTROL, bytes);
            }
            2 => sim.lose(slot),
            3 => {
                let step = input.byte();
                sim.advance(step);
            }
            4 => sim.written(slot),
            5 => {
                let which = input.byte();
                let bytes = input.chunk();
                sim.stream(slot, which, bytes);
            }
            6 => {
                let bytes = input.chunk();
                sim.datagram(slot, bytes);
            }
            _ => {
                let what = input.byte();
                sim.misc(slot, what);
            }
        }
        sim.settle();
    }
    let now = sim.now;
    sim.broker.shutdown(now);
    sim.settle();
    assert_eq!(
        sim.broker.metrics().connections,
        0,
        "connections left after shutdown"
    );
}

/// Default limits, or small ones so that the limits are reached quickly.
pub(super) fn config(selector: u8) -> Config {
    let mut config = Config::default();
    if selector & 1 != 0 {
        let l = &mut config.limits;
        l.max_packet_size = 256;
        l.receive_maximum = 2;
        l.max_inflight = 2;
        l.topic_alias_maximum = 2;
        l.max_queued_messages = 3;
        l.max_keep_alive = 5;
        l.connect_timeout_secs = 2;
        l.max_connections = 3;
        l.max_connections_per_address = 2;
        l.max_sessions = 3;
        l.max_subscriptions = 3;
        l.max_queued_bytes = 200;
        l.max_retained_messages = 2;
        l.max_retained_bytes = 300;
        l.max_topic_levels = 4;
        l.max_connection_rate_per_address = 3;
        l.max_publish_rate_per_client = 5;
        config.session.max_session_expiry_secs = 30;
    }
    if selector & 2 != 0 {
        config.session.max_qos = 1;
    }
    if selector & 4 != 0 {
        config.session.retain_available = false;
    }
    config
}

struct Stream {
    buf: BytesMut,
    failed: bool,
}

struct Slot {
    conn: ConnId,
    quic: bool,
    buf: BytesMut,
    version: Option<ProtocolVersion>,
    /// The client's Maximum Packet Size (from its CONNECT).
    max_in: u32,
    /// The read loop stopped (decode error), as the glue stops reading.
    failed: bool,
    streams: AHashMap<u64, Stream>,
    /// Accounted bytes handed to the "writer" and not yet reported written.
    unwritten: usize,
}

pub(super) struct Sim {
    pub(super) broker: Broker,
    now: Instant,
    next_conn: u64,
    slots: [Option<Slot>; SLOTS],
    /// Connections the broker closed; it must not send to them again.
    closed: HashSet<ConnId>,
    max_packet_size: u32,
}

impl Sim {
    pub(super) fn new(config: Config) -> Sim {
        let max_packet_size = config.limits.max_packet_size;
        Sim {
            broker: Broker::new(Settings::from(&config)),
            now: Instant::now(),
            next_conn: 1,
            slots: Default::default(),
            closed: HashSet::new(),
            max_packet_size,
        }
    }

    pub(super) fn open(&mut self, slot: usize, quic: bool, same_address: bool) {
        self.lose(slot);
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let peer = if same_address {
            "tcp:10.0.0.1:1000".to_string()
        } else {
            format!("tcp:10.0.0.{}:1000", conn.0 % 250 + 2)
        };
        self.broker.connection_opened(conn, peer, self.now);
        if quic {
            let caps = QuicCaps {
                datagram_max: Some(1200),
                mqtt_next: false,
            };
            self.broker.set_quic_caps(conn, caps);
        }
        self.slots[slot] = Some(Slot {
            conn,
            quic,
            buf: BytesMut::new(),
            version: None,
            max_in: u32::MAX,
            failed: false,
            streams: AHashMap::new(),
            unwritten: 0,
        });
    }

    /// Decodes what the control stream (or a data stream) received, as `transport::stream`
    /// does: the packets of one read go to the broker together, then the error if any.
    pub(super) fn feed(&mut self, slot: usize, stream: StreamId, bytes: &[u8]) {
        let max = self.max_packet_size;
        let Some(s) = self.slots[slot].as_mut() else {
            return;
        };
        let conn = s.conn;
        let (buf, version, failed) = if stream == StreamId::CONTROL {
            (&mut s.buf, &mut s.version, &mut s.failed)
        } else {
            let Some(data) = s.streams.get_mut(&stream.0) else {
                return;
            };
            (&mut data.buf, &mut s.version, &mut data.failed)
        };
        if *failed {
            return;
        }
        buf.extend_from_slice(bytes);
        let mut packets = Vec::new();
        let mut error = None;
        loop {
            match codec::decode_from_client(buf, *version, max) {
                Ok(Some(packet)) => {
                    if let Packet::Connect(c) = &packet {
                        *version = Some(c.protocol);
                        if c.protocol.is_v5() {
                            s.max_in = c.properties.maximum_packet_size.unwrap_or(u32::MAX);
                        }
                    }
                    packets.push(packet);
                }
                Ok(None) => break,
                Err(e) => {
                    *failed = true;
                    error = Some(e);
                    break;
                }
            }
        }
        for packet in packets {
            self.broker.handle_packet(conn, stream, packet, self.now);
        }
        if let Some(error) = error {
            self.decode_error(conn, stream, &error);
        }
    }

    fn decode_error(&mut self, conn: ConnId, stream: StreamId, error: &DecodeError) {
        if stream == StreamId::CONTROL {
            self.broker.handle_decode_error(conn, error, self.now);
        } else {
            self.broker
                .handle_stream_error(conn, stream, error, self.now);
        }
    }

    fn lose(&mut self, slot: usize) {
        if let Some(s) = self.slots[slot].take() {
            self.broker.connection_lost(s.conn, self.now);
        }
    }

    fn advance(&mut self, step: u8) {
        self.now += match step {
            255 => Duration::from_secs(3600),
            254 => Duration::from_secs(86_400 * 8),
            n => Duration::from_millis(u64::from(n) * 100),
        };
        self.broker.handle_timeout(self.now);
        if let Some(next) = self.broker.poll_timeout() {
            assert!(
                next > self.now,
                "a timer due now was left after handle_timeout"
            );
        }
    }

    fn written(&mut self, slot: usize) {
        if let Some(s) = self.slots[slot].as_mut() {
            let bytes = std::mem::take(&mut s.unwritten);
            self.broker.handle_written(s.conn, bytes, self.now);
        }
    }

    /// A QUIC data stream (client bidirectional ids 4, 8, 12, 16): opened by its first bytes,
    /// ended when bit 7 of `which` is set.
    fn stream(&mut self, slot: usize, which: u8, bytes: &[u8]) {
        let Some(s) = self.slots[slot].as_mut() else {
            return;
        };
        // The glue reads data streams only after a successful CONNACK.
        if !s.quic || s.version.is_none() {
            return;
        }
        let id = 4 * (u64::from(which & 3) + 1);
        let conn = s.conn;
        if which & 0x80 != 0 {
            if s.streams.remove(&id).is_some() {
                self.broker.stream_closed(conn, StreamId(id), self.now);
            }
            return;
        }
        if !s.streams.contains_key(&id) {
            s.streams.insert(
                id,
                Stream {
                    buf: BytesMut::new(),
                    failed: false,
                },
            );
            self.broker.stream_opened(conn, StreamId(id));
        }
        self.feed(slot, StreamId(id), bytes);
    }

    pub(super) fn datagram(&mut self, slot: usize, bytes: &[u8]) {
        let Some(s) = self.slots[slot].as_ref() else {
            return;
        };
        let (Some(version), true) = (s.version, s.quic) else {
            return;
        };
        let conn = s.conn;
        let event = crate::transport::quic_datagrams::classify(
            conn,
            Bytes::copy_from_slice(bytes),
            version,
            self.max_packet_size,
        );
        match event {
            Some(Event::DatagramProbe { conn }) => self.broker.datagram_probe(conn, self.now),
            Some(Event::DatagramMalformed { conn }) => self.broker.datagram_malformed(conn),
            Some(Event::Packets {
                conn,
                stream,
                packets,
                ..
            }) => {
                for packet in packets {
                    self.broker.handle_packet(conn, stream, packet, self.now);
                }
            }
            Some(_) => panic!("unexpected event for a datagram"),
            None => {}
        }
    }

    fn misc(&mut self, slot: usize, what: u8) {
        let conn = self.slots[slot].as_ref().map(|s| s.conn);
        let now = self.now;
        match (what % 9, conn) {
            (0, Some(conn)) => {
                self.broker
                    .peer_address_changed(conn, format!("quic:10.1.0.{what}:1"), now)
            }
            (1, Some(conn)) => self.broker.hold_will(conn),
            (2, Some(conn)) => self.broker.handshake_confirmed(conn, now),
            (3, _) => {
                let topics = ["a", "a/b", "$SYS/x", "t"];
                let message = Message {
                    topic: topics[usize::from(what >> 3) % topics.len()].into(),
                    payload: Bytes::from_static(b"app"),
                    qos: QoS::from_u8((what >> 5) % 3).unwrap_or(QoS::AtMostOnce),
                    retain: what & 0x80 != 0,
                    properties: Default::default(),
                    expires_at: None,
                    origin: None,
                    received_at: None,
                    cluster_seq: None,
                };
                let _ = self.broker.app_publish(message, now);
            }
            (4, _) => {
                let filters = ["#", "a/+", "$share/g/a", "+/b"];
                let filter = filters[usize::from(what >> 3) % filters.len()];
                let _ = self.broker.app_subscribe(
                    HandlerId(u64::from(what >> 5)),
                    filter,
                    QoS::AtMostOnce,
                );
            }
            // 5 was the glue's outbox overflow, now the broker's own output budget.
            (6, Some(conn)) => self.broker.quic_stream_refused(conn),
            (7, Some(conn)) => self.broker.datagrams_rate_limited(conn, u64::from(what)),
            _ => {}
        }
    }

    /// Drains the broker's outputs as the glue would and checks them.
    pub(super) fn settle(&mut self) {
        let outputs = self.broker.take_outputs();
        let mut closed_now = Vec::new();
        for output in outputs {
            match output {
                Output::Transmit(t) => {
                    assert!(
                        !self.closed.contains(&t.conn),
                        "packets for connection {} after its close",
                        t.conn.0
                    );
                    let slot = self.slots.iter_mut().flatten().find(|s| s.conn == t.conn);
                    let packets = t.packets();
                    assert_eq!(packets.len(), t.count, "Transmit::count is off");
                    let framed: usize = t.frames().map(<[u8]>::len).sum();
                    assert_eq!(framed, t.bytes.len(), "Transmit::bytes holds whole packets");
                    for packet in &packets {
                        check_sent(packet, t.version);
                        if let Some(s) = &slot {
                            let size = codec::encoded_len(packet, t.version);
                            // [MQTT-3.1.2-24]
                            assert!(
                                size <= s.max_in as usize,
                                "{size} byte packet to a client with Maximum Packet Size {}",
                                s.max_in
                            );
                        }
                    }
                    let accounted: usize =
                        packets.iter().map(|p| accounted_size(p, t.version)).sum();
                    assert_eq!(t.accounted, accounted, "Transmit::accounted is off");
                    if let Some(s) = slot {
                        s.unwritten += accounted;
                    }
                }
                Output::Close { conn, .. } => {
                    self.closed.insert(conn);
                    closed_now.push(conn);
                    for slot in &mut self.slots {
                        if slot.as_ref().is_some_and(|s| s.conn == conn) {
                            *slot = None;
                        }
                    }
                }
                Output::CloseStream { conn, stream, .. } => {
                    assert_ne!(
                        stream,
                        StreamId::CONTROL,
                        "CloseStream of the control stream"
                    );
                    if let Some(s) = self.slots.iter_mut().flatten().find(|s| s.conn == conn) {
                        s.streams.remove(&stream.0);
                    }
                }
                Output::ServerFlow { .. }
                | Output::App { .. }
                | Output::PauseReading { .. }
                | Output::Cluster(_) => {}
            }
        }
        if !closed_now.is_empty() {
            let known: HashSet<ConnId> = self.broker.clients().iter().map(|c| c.conn).collect();
            for conn in closed_now {
                assert!(
                    !known.contains(&conn),
                    "closed connection {} still known",
                    conn.0
                );
            }
        }
        if let Err(broken) = self.broker.check_invariants() {
            panic!("broker invariant broken: {broken}");
        }
    }
}

/// A packet the broker sends: a server-to-client type that a client can decode; for MQTT 5.0
/// equal to itself after a round trip (3.x drops properties and maps reason codes to return
/// codes, so there it only has to decode).
fn check_sent(packet: &Packet, version: ProtocolVersion) {
    assert!(
        !matches!(
            packet,
            Packet::Connect(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) | Packet::PingReq
        ),
        "the broker sent a client-only packet: {packet:?}"
    );
    if version.is_v5() {
        super::codec::round_trip(packet, version);
    } else {
        let mut out = BytesMut::new();
        codec::encode(packet, version, &mut out);
        assert_eq!(out.len(), codec::encoded_len(packet, version));
        match codec::decode(&mut out, Some(version), u32::MAX) {
            Ok(Some(_)) if out.is_empty() => {}
            other => panic!("sent {packet:?} does not decode for {version:?}: {other:?}"),
        }
    }
}
