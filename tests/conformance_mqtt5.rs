//! MQTT 5.0 conformance checks over raw TCP against the real `mqttd` binary with its default
//! settings.
//!
//! The list of checks follows the broker-facing checks of an independent third-party MQTT 5.0
//! conformance suite (the `mqtt5-conformance` crate of the `mqtt-lib` project), re-written here
//! from the specification: one `#[tokio::test]` per area, each statement's clause in a comment.
//! Where that suite expects a behaviour the specification leaves to the broker and `mqttd` made
//! another documented choice (README, "Behaviour where the spec leaves a choice"), the check here
//! asserts what the specification requires and the comment names the choice.
//!
//! Checks of that suite which `mqttd` answers differently, each a choice the specification
//! leaves open (README): a refused unknown protocol level gets the 3.1.1 CONNACK `20 02 00 01`,
//! not a 5.0 CONNACK 0x84 [MQTT-3.1.2-2]; overlapping subscriptions get one copy carrying every
//! Subscription Identifier, not one copy per subscription [MQTT-3.3.4-2] [MQTT-3.3.4-4]; an
//! incoming QoS 2 message is delivered before PUBREL (4.3.3, Method B); a malformed `$share/`
//! filter closes the connection (0x82) instead of getting SUBACK 0x8F (4.8.2).
//!
//! Valid packets are built with the crate's codec (`mqttd::codec::encode`) and everything the
//! broker sends is parsed with `mqttd::codec::decode`, which also enforces the fixed header flags
//! of server packets [MQTT-2.1.3-1]. Malformed packets are written byte by byte. Every wait is
//! bounded (at most [`WAIT`]); timer checks use the shortest intervals the protocol allows.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use mqttd::codec::{
    self, Ack, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe, SubscriptionOptions, Unsubscribe, Will,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::TestBroker;

const V5: ProtocolVersion = ProtocolVersion::V5;
/// Upper bound of every wait for something that must happen.
#[path = "common/in_process.rs"]
mod in_process;

const WAIT: Duration = Duration::from_secs(3);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// A raw MQTT 5.0 client: bytes out, decoded packets in.
// ---------------------------------------------------------------------------------------------

/// What a bounded read found.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Read {
    /// A packet and the first byte of its fixed header.
    Packet(u8, Packet),
    /// End of stream or connection reset.
    Closed,
    Timeout,
}

struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    /// The raw bytes of everything read, for checks on the exact encoding.
    seen: Vec<u8>,
}

impl Raw {
    async fn open(addr: SocketAddr) -> Raw {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("TCP connect in time")
            .expect("TCP connect");
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            seen: Vec::new(),
        }
    }

    /// Opens a connection and completes a clean-start CONNECT for `id`.
    async fn connect(addr: SocketAddr, id: &str) -> Raw {
        Self::connect_with(addr, connect_packet(id)).await.0
    }

    /// Opens a connection, sends `connect` and expects a successful CONNACK.
    async fn connect_with(addr: SocketAddr, connect: Connect) -> (Raw, ConnAck) {
        let mut raw = Raw::open(addr).await;
        raw.send(Packet::Connect(Box::new(connect))).await;
        match raw.next("CONNACK").await {
            Packet::ConnAck(ack) => {
                assert_eq!(ack.code, ReasonCode::SUCCESS, "CONNACK {ack:?}");
                (raw, ack)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Writes bytes; a write error (the broker already closed) is ignored, the reads that
    /// follow observe the close.
    async fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        codec::encode(&packet, V5, &mut out);
        self.send_bytes(&out).await;
    }

    async fn read(&mut self, wait: Duration) -> Read {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(&first) = self.buf.first() {
                match codec::decode(&mut self.buf, Some(V5), u32::MAX) {
                    Ok(Some(packet)) => return Read::Packet(first, packet),
                    Ok(None) => {}
                    Err(e) => panic!(
                        "the broker sent an undecodable packet ({e}): {:02x?}",
                        self.buf
                    ),
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Read::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => return Read::Closed,
                Ok(Ok(n)) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.seen.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }

    /// The next packet; panics on a close or after [`WAIT`].
    async fn next(&mut self, what: &str) -> Packet {
        self.next_with_first_byte(what).await.1
    }

    async fn next_with_first_byte(&mut self, what: &str) -> (u8, Packet) {
        match self.read(WAIT).await {
            Read::Packet(first, packet) => (first, packet),
            other => panic!("waiting for {what}: {other:?}"),
        }
    }

    async fn next_publish(&mut self, what: &str) -> Publish {
        match self.next(what).await {
            Packet::Publish(p) => p,
            other => panic!("waiting for {what}: expected PUBLISH, got {other:?}"),
        }
    }

    /// Expects the broker to close the connection within [`WAIT`], optionally after one
    /// DISCONNECT (returned), and after nothing else.
    async fn closed(&mut self, what: &str) -> Option<Disconnect> {
        let mut disconnect = None;
        loop {
            match self.read(WAIT).await {
                Read::Closed => return disconnect,
                Read::Packet(_, Packet::Disconnect(d)) if disconnect.is_none() => {
                    disconnect = Some(d)
                }
                other => panic!("{what}: expected the connection to close, got {other:?}"),
            }
        }
    }

    /// Expects the close [MQTT-4.13.1-1], after a DISCONNECT with an error reason code
    /// (4.13.1 says SHOULD; mqttd always sends it, so it is required of mqttd).
    async fn refused(&mut self, what: &str) {
        match self.closed(what).await {
            Some(d) => assert!(d.code.is_error(), "{what}: DISCONNECT {:?}", d.code),
            None => assert!(!is_mqttd(), "{what}: closed without DISCONNECT"),
        }
    }

    /// Expects the connection to close before any CONNACK: a refused CONNECT gets no
    /// DISCONNECT [MQTT-3.14.0-1] and no successful CONNACK.
    async fn closed_before_connack(&mut self, what: &str) {
        loop {
            match self.read(WAIT).await {
                Read::Closed => return,
                Read::Packet(_, Packet::ConnAck(ack)) if ack.code.is_error() => {}
                other => panic!("{what}: expected the connection to close, got {other:?}"),
            }
        }
    }

    /// Asserts that nothing arrives (and the connection stays open) for [`QUIET`].
    async fn quiet(&mut self, what: &str) {
        match self.read(QUIET).await {
            Read::Timeout => {}
            other => panic!("{what}: expected nothing, got {other:?}"),
        }
    }

    /// PINGREQ answered by PINGRESP: the connection is alive.
    async fn ping(&mut self, what: &str) {
        self.send(Packet::PingReq).await;
        match self.next(what).await {
            Packet::PingResp => {}
            other => panic!("{what}: expected PINGRESP, got {other:?}"),
        }
    }

    async fn subscribe_with(&mut self, subscribe: Subscribe) -> Vec<ReasonCode> {
        let packet_id = subscribe.packet_id;
        self.send(Packet::Subscribe(subscribe)).await;
        match self.next("SUBACK").await {
            Packet::SubAck(ack) => {
                assert_eq!(ack.packet_id, packet_id, "[MQTT-3.8.4-2] SUBACK packet id");
                ack.codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Subscribes to one filter at `qos` and expects it granted.
    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        let codes = self.subscribe_with(subscribe(1, &[(filter, qos)])).await;
        assert_eq!(codes, vec![ReasonCode(qos as u8)], "SUBACK for {filter}");
    }

    async fn unsubscribe(&mut self, packet_id: u16, filters: &[&str]) -> Vec<ReasonCode> {
        self.send(Packet::Unsubscribe(Unsubscribe {
            packet_id,
            properties: Properties::default(),
            filters: filters.iter().map(|f| ByteString::from(*f)).collect(),
        }))
        .await;
        match self.next("UNSUBACK").await {
            Packet::UnsubAck(ack) => {
                assert_eq!(
                    ack.packet_id, packet_id,
                    "[MQTT-3.11.2-1] UNSUBACK packet id"
                );
                assert_eq!(
                    ack.codes.len(),
                    filters.len(),
                    "[MQTT-3.11.3-1] one code per filter"
                );
                ack.codes
            }
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    /// Publishes and completes the QoS flow; returns the PUBACK / PUBREC reason code.
    async fn publish(&mut self, publish: Publish) -> ReasonCode {
        let qos = publish.qos;
        let packet_id = publish.packet_id.unwrap_or(0);
        self.send(Packet::Publish(publish)).await;
        match qos {
            QoS::AtMostOnce => ReasonCode::SUCCESS,
            QoS::AtLeastOnce => match self.next("PUBACK").await {
                Packet::PubAck(a) => {
                    assert_eq!(a.packet_id, packet_id, "[MQTT-3.4.2-1] PUBACK packet id");
                    a.code
                }
                other => panic!("expected PUBACK, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                let code = match self.next("PUBREC").await {
                    Packet::PubRec(a) => {
                        assert_eq!(a.packet_id, packet_id, "[MQTT-3.5.2-1] PUBREC packet id");
                        a.code
                    }
                    other => panic!("expected PUBREC, got {other:?}"),
                };
                self.send(Packet::PubRel(Ack::new(packet_id))).await;
                match self.next("PUBCOMP").await {
                    Packet::PubComp(a) => {
                        assert_eq!(a.packet_id, packet_id, "[MQTT-3.7.2-1] PUBCOMP packet id");
                        assert_eq!(a.code, ReasonCode::SUCCESS, "PUBCOMP");
                    }
                    other => panic!("expected PUBCOMP, got {other:?}"),
                }
                code
            }
        }
    }

    async fn disconnect(mut self) {
        self.send(Packet::Disconnect(Disconnect::new(
            ReasonCode::NORMAL_DISCONNECTION,
        )))
        .await;
        let _ = self.stream.shutdown().await;
    }

    /// Receives one PUBLISH and acknowledges it (PUBACK, or PUBREC/PUBREL/PUBCOMP).
    async fn receive_and_ack(&mut self, what: &str) -> Publish {
        let p = self.next_publish(what).await;
        if let Some(id) = p.packet_id {
            self.ack_delivery(p.qos, id).await;
        }
        p
    }

    async fn ack_delivery(&mut self, qos: QoS, id: u16) {
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(Packet::PubAck(Ack::new(id))).await,
            QoS::ExactlyOnce => {
                self.send(Packet::PubRec(Ack::new(id))).await;
                match self.next("PUBREL").await {
                    Packet::PubRel(a) => assert_eq!(a.packet_id, id, "PUBREL packet id"),
                    other => panic!("expected PUBREL, got {other:?}"),
                }
                self.send(Packet::PubComp(Ack::new(id))).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Packet builders.
// ---------------------------------------------------------------------------------------------

fn connect_packet(id: &str) -> Connect {
    Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 60,
        properties: Properties::default(),
        client_id: ByteString::from(id),
        will: None,
        username: None,
        password: None,
    }
}

fn persistent(id: &str, clean_start: bool, expiry: u32) -> Connect {
    let mut c = connect_packet(id);
    c.clean_start = clean_start;
    c.properties.session_expiry_interval = Some(expiry);
    c
}

fn with_will(id: &str, topic: &str, retain: bool, properties: Properties) -> Connect {
    let mut c = connect_packet(id);
    c.will = Some(Will {
        topic: ByteString::from(topic),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtMostOnce,
        retain,
        properties,
    });
    c
}

fn publish(topic: &str, payload: &[u8], qos: QoS, packet_id: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteString::from(topic),
        packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload),
    }
}

fn retained(topic: &str, payload: &[u8], qos: QoS) -> Publish {
    Publish {
        retain: true,
        ..publish(topic, payload, qos, 1)
    }
}

fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

fn subscribe(packet_id: u16, filters: &[(&str, QoS)]) -> Subscribe {
    Subscribe {
        packet_id,
        properties: Properties::default(),
        filters: filters
            .iter()
            .map(|(f, q)| (ByteString::from(*f), options(*q)))
            .collect(),
    }
}

fn subscribe_opts(packet_id: u16, filter: &str, opts: SubscriptionOptions) -> Subscribe {
    Subscribe {
        packet_id,
        properties: Properties::default(),
        filters: vec![(ByteString::from(filter), opts)],
    }
}

/// Variable byte integer (1.5.5).
fn vbi(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A length-prefixed string or binary field (1.5.4, 1.5.6), whatever the bytes.
fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A whole packet from its first byte and its body.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(vbi(body.len()));
    out.extend_from_slice(body);
    out
}

/// A properties block (2.2.2).
fn props(bytes: &[u8]) -> Vec<u8> {
    let mut out = vbi(bytes.len());
    out.extend_from_slice(bytes);
    out
}

/// A 5.0 CONNECT with the given connect flags, properties and payload (client id first).
fn raw_connect(flags: u8, properties: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.push(5);
    body.push(flags);
    body.extend_from_slice(&60u16.to_be_bytes());
    body.extend(props(properties));
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

/// A PUBLISH with raw topic bytes and properties (packet id 1 when the QoS bits are set).
fn raw_publish(first: u8, topic: &[u8], properties: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    if (first >> 1) & 3 != 0 {
        body.extend_from_slice(&1u16.to_be_bytes());
    }
    body.extend(props(properties));
    body.extend_from_slice(payload);
    frame(first, &body)
}

/// Whether the broker under test is mqttd (not the reference broker of `MQTTD_TEST_BROKER`):
/// then its documented choices are checked too, beyond what the specification requires.
fn is_mqttd() -> bool {
    common::BrokerKind::from_env() == common::BrokerKind::Mqttd
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("conf-{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    in_process::within(WAIT, what, f).await
}

// ---------------------------------------------------------------------------------------------
// 1.5 Data representation.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn data_representation() {
    let broker = TestBroker::start();
    let addr = broker.addr;

    // [MQTT-1.5.4-1] a UTF-8 string must not encode a surrogate (U+D800 as ED A0 80).
    let mut raw = Raw::open(addr).await;
    raw.send_bytes(&raw_connect(0x02, &[], &field(&[0xED, 0xA0, 0x80])))
        .await;
    raw.closed_before_connack("client id with a surrogate")
        .await;

    // [MQTT-1.5.4-3] U+FEFF (BOM) is a valid character and must not be stripped.
    let topic = "\u{FEFF}bom/topic";
    let mut sub = Raw::connect(addr, &unique("bom-sub")).await;
    sub.subscribe(topic, QoS::AtMostOnce).await;
    let mut publisher = Raw::connect(addr, &unique("bom-pub")).await;
    publisher
        .publish(publish(topic, b"bom", QoS::AtMostOnce, 0))
        .await;
    let p = sub.next_publish("PUBLISH on a BOM topic").await;
    assert_eq!(&*p.topic, topic, "[MQTT-1.5.4-3] BOM preserved");
    assert_eq!(&p.payload[..], b"bom");

    // [MQTT-1.5.5-1] a variable byte integer has at most 4 bytes.
    let mut raw = Raw::open(addr).await;
    raw.send_bytes(&[0x10, 0x80, 0x80, 0x80, 0x80, 0x01]).await;
    raw.closed_before_connack("5-byte remaining length").await;

    // [MQTT-1.5.7-1] both strings of a user property must be valid UTF-8.
    let mut raw = Raw::connect(addr, &unique("utf8-prop")).await;
    let mut user_property = vec![0x26];
    user_property.extend(field(&[0xFF, 0xFE]));
    user_property.extend(field(b"value"));
    raw.send_bytes(&raw_publish(0x30, b"utf8/prop", &user_property, b"x"))
        .await;
    raw.refused("user property key not UTF-8").await;

    // [MQTT-4.7.3-3] a topic name of 65,535 bytes is still valid: handled without hanging.
    let mut raw = Raw::connect(addr, &unique("long-topic")).await;
    raw.send_bytes(&raw_publish(0x30, &vec![b'A'; 65_535], &[], b"payload"))
        .await;
    raw.ping("after a 65,535-byte topic").await;

    // [MQTT-4.7.3-2] a topic name must not contain U+0000.
    let mut raw = Raw::connect(addr, &unique("null-topic")).await;
    raw.send_bytes(&raw_publish(0x30, b"test\0/topic", &[], b"x"))
        .await;
    raw.closed("U+0000 in a topic name").await;
}

// ---------------------------------------------------------------------------------------------
// 3.1 CONNECT, 3.2 CONNACK.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn connect_and_connack() {
    let broker = TestBroker::start();
    let addr = broker.addr;

    // [MQTT-3.1.0-1] the first packet must be CONNECT.
    let mut raw = Raw::open(addr).await;
    raw.send(Packet::Publish(publish(
        "test/topic",
        b"hello",
        QoS::AtMostOnce,
        0,
    )))
    .await;
    raw.closed_before_connack("PUBLISH before CONNECT").await;

    // [MQTT-3.1.4-6] [MQTT-3.2.0-1] a valid CONNECT gets CONNACK Success first;
    // [MQTT-3.2.2-1] reserved acknowledge flags are 0; [MQTT-3.1.4-3] clean start: no session.
    let mut raw = Raw::open(addr).await;
    raw.send(Packet::Connect(Box::new(connect_packet(&unique(
        "connack",
    )))))
    .await;
    let (first, packet) = raw.next_with_first_byte("CONNACK").await;
    assert_eq!(first, 0x20, "[MQTT-2.1.3-1] CONNACK first byte");
    let Packet::ConnAck(ack) = packet else {
        panic!("expected CONNACK, got {packet:?}")
    };
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    assert!(
        !ack.session_present,
        "[MQTT-3.1.4-3] session present 0 on clean start"
    );
    assert_eq!(raw.seen[2] & 0xFE, 0, "[MQTT-3.2.2-1] reserved flag bits");

    // [MQTT-3.2.0-2] only one CONNACK per connection, whatever follows.
    raw.subscribe("test/connack", QoS::AtMostOnce).await;
    raw.send(Packet::Publish(publish(
        "test/connack",
        b"x",
        QoS::AtMostOnce,
        0,
    )))
    .await;
    match raw.next("own message").await {
        Packet::Publish(_) => {}
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    raw.quiet("no second CONNACK").await;

    // [MQTT-3.1.0-2] [MQTT-4.13.2-1] a second CONNECT is a protocol error: DISCONNECT with an
    // error code from the DISCONNECT set [MQTT-3.14.2-1], never carrying a Session Expiry
    // Interval [MQTT-3.14.2-2], then the close.
    raw.send(Packet::Connect(Box::new(connect_packet("second-connect"))))
        .await;
    match raw.closed("second CONNECT").await {
        Some(d) => {
            assert_eq!(d.code, ReasonCode::PROTOCOL_ERROR);
            assert_eq!(
                d.properties.session_expiry_interval, None,
                "[MQTT-3.14.2-2]"
            );
        }
        None => assert!(!is_mqttd(), "mqttd sends DISCONNECT 0x82"),
    }

    // [MQTT-3.1.2-1] the protocol name must be "MQTT".
    let mut body = field(b"XXXX");
    body.extend_from_slice(&[5, 0x02, 0, 60, 0]);
    body.extend(field(b"proto-name"));
    let mut raw = Raw::open(addr).await;
    raw.send_bytes(&frame(0x10, &body)).await;
    raw.closed_before_connack("protocol name XXXX").await;

    // [MQTT-3.1.2-2] an unsupported protocol level: at most a refusing CONNACK, then the
    // close; Session Present 0 [MQTT-3.2.2-6]; no DISCONNECT before CONNACK [MQTT-3.14.0-1].
    // mqttd answers in the 3.1.1 encoding, return code 1 (3.1.1 [MQTT-3.1.2-2] requires it,
    // 5.0 allows a 0x84 CONNACK, the level of the client is unknown): `20 02 00 01`.
    let mut body = field(b"MQTT");
    body.extend_from_slice(&[99, 0x02, 0, 60, 0]);
    body.extend(field(b"level-99"));
    let mut raw = Raw::open(addr).await;
    raw.send_bytes(&frame(0x10, &body)).await;
    let mut got = Vec::new();
    let mut chunk = [0u8; 64];
    loop {
        match within("close after level 99", raw.stream.read(&mut chunk)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    if !got.is_empty() {
        assert_eq!(
            got[0], 0x20,
            "[MQTT-3.14.0-1] only a CONNACK may come: {got:02x?}"
        );
        assert_eq!(
            got[2] & 1,
            0,
            "[MQTT-3.2.2-6] session present 0: {got:02x?}"
        );
        if is_mqttd() {
            assert_eq!(got, [0x20, 0x02, 0x00, 0x01], "mqttd's refusing CONNACK");
        }
    }

    // [MQTT-3.1.2-3] the reserved connect flag must be 0; [MQTT-3.1.2-11] [MQTT-3.1.2-13]
    // without a will, will QoS and will retain must be 0; [MQTT-3.1.2-12] will QoS 3 is
    // malformed.
    for flags in [0x03u8, 0x0A, 0x22, 0x1E] {
        let mut payload = field(b"flags-client");
        if flags & 0x04 != 0 {
            payload.push(0);
            payload.extend(field(b"will/topic"));
            payload.extend(field(b"will-payload"));
        }
        let mut raw = Raw::open(addr).await;
        raw.send_bytes(&raw_connect(flags, &[], &payload)).await;
        raw.closed_before_connack(&format!("connect flags {flags:#04x}"))
            .await;
    }

    // [MQTT-2.1.3-1] CONNECT fixed header flags must be 0.
    let mut packet = raw_connect(0x02, &[], &field(b"header-flags"));
    packet[0] = 0x11;
    let mut raw = Raw::open(addr).await;
    raw.send_bytes(&packet).await;
    raw.closed_before_connack("CONNECT with header flags 1")
        .await;

    // [MQTT-3.1.3-5] 1 to 23 characters 0-9a-zA-Z are always allowed.
    Raw::connect(addr, "abcABC012345").await.disconnect().await;

    // [MQTT-3.1.3-6] [MQTT-3.2.2-16] an empty client id gets a unique Assigned Client
    // Identifier.
    let mut assigned = HashSet::new();
    for _ in 0..2 {
        let (_raw, ack) = Raw::connect_with(addr, connect_packet("")).await;
        let id = ack
            .properties
            .assigned_client_identifier
            .clone()
            .expect("[MQTT-3.1.3-6] Assigned Client Identifier");
        assert!(
            assigned.insert(id),
            "[MQTT-3.2.2-16] assigned ids are unique"
        );
    }

    // [MQTT-3.1.4-1] a truncated CONNECT (remaining length 50, 3 bytes sent) closes.
    let mut raw = Raw::open(addr).await;
    raw.send_bytes(&[0x10, 50, 0x00, 0x04, 0x4D]).await;
    let _ = raw.stream.shutdown().await;
    raw.closed_before_connack("truncated CONNECT").await;

    // [MQTT-3.1.4-2] [MQTT-2.2.2-2]: Session Expiry Interval twice.
    let mut raw = Raw::open(addr).await;
    let dup = [0x11, 0, 0, 1, 44, 0x11, 0, 0, 2, 88];
    raw.send_bytes(&raw_connect(0x02, &dup, &field(b"dup-prop")))
        .await;
    raw.closed_before_connack("duplicate property").await;

    // [MQTT-3.1.2-17] User Name Flag set without a user name is malformed.
    let mut raw = Raw::open(addr).await;
    raw.send_bytes(&raw_connect(0x82, &[], &field(b"no-username")))
        .await;
    raw.closed_before_connack("user name flag without user name")
        .await;

    // [MQTT-3.1.2-16] [MQTT-3.1.2-18] [MQTT-3.1.2-19] user name and password present as
    // flagged; 5.0 allows a password without a user name.
    for (flags, fields) in [
        (0x82u8, vec![&b"testuser"[..]]),
        (0xC2, vec![&b"testuser"[..], &b"secret"[..]]),
        (0x42, vec![&b"secret"[..]]),
    ] {
        let mut payload = field(unique("credentials").as_bytes());
        for f in fields {
            payload.extend(field(f));
        }
        let mut raw = Raw::open(addr).await;
        raw.send_bytes(&raw_connect(flags, &[], &payload)).await;
        match raw.next("CONNACK").await {
            Packet::ConnAck(ack) => assert_eq!(ack.code, ReasonCode::SUCCESS, "flags {flags:#x}"),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    // [MQTT-3.1.3-11] will topic and [MQTT-3.1.3-12] user name must be UTF-8.
    let mut payload = field(b"bad-will");
    payload.push(0);
    payload.extend(field(&[0xFF, 0xFE]));
    payload.extend(field(b"will-payload"));
    let mut raw = Raw::open(addr).await;
    raw.send_bytes(&raw_connect(0x06, &[], &payload)).await;
    raw.closed_before_connack("will topic not UTF-8").await;
    let mut payload = field(b"bad-user");
    payload.extend(field(&[0xFF, 0xFE]));
    let mut raw = Raw::open(addr).await;
    raw.send_bytes(&raw_connect(0x82, &[], &payload)).await;
    raw.closed_before_connack("user name not UTF-8").await;

    // [MQTT-3.1.2-28] Request Response Information 0: no Response Information.
    let mut c = connect_packet(&unique("rri"));
    c.properties.request_response_information = Some(0);
    let (_raw, ack) = Raw::connect_with(addr, c).await;
    assert_eq!(ack.properties.response_information, None, "[MQTT-3.1.2-28]");

    // [MQTT-4.12.0-1] an unsupported Authentication Method is refused (0x8C) and the
    // connection closed. [MQTT-3.2.2-19] With a Maximum Packet Size of 30 the CONNACK still
    // fits, without a Reason String.
    let mut p = vec![0x15];
    p.extend(field(b"SCRAM-SHA-1"));
    p.extend_from_slice(&[0x27, 0, 0, 0, 30]);
    let mut raw = Raw::open(addr).await;
    raw.send_bytes(&raw_connect(0x02, &p, &field(unique("auth").as_bytes())))
        .await;
    match raw.next("CONNACK").await {
        Packet::ConnAck(ack) => {
            assert_eq!(ack.code, ReasonCode::BAD_AUTHENTICATION_METHOD);
            assert!(!ack.session_present, "[MQTT-3.2.2-6]");
            assert_eq!(ack.properties.reason_string, None, "[MQTT-3.2.2-19]");
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(
        raw.seen.len() <= 30,
        "[MQTT-3.2.2-19] {} bytes",
        raw.seen.len()
    );
    // [MQTT-3.2.2-7] a CONNACK >= 0x80 is followed by the close.
    raw.closed_before_connack("after CONNACK 0x8C").await;
}

// ---------------------------------------------------------------------------------------------
// Sessions: 3.1.2.4 Clean Start, 3.1.2.11.2 Session Expiry, 3.1.4 takeover, 4.1.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sessions() {
    let broker = TestBroker::start();
    let addr = broker.addr;
    let mut publisher = Raw::connect(addr, &unique("sess-pub")).await;

    // [MQTT-3.1.2-4] Clean Start 1 discards an existing session.
    let id = unique("clean");
    let (mut c, _) = Raw::connect_with(addr, persistent(&id, true, 300)).await;
    c.subscribe("sess/clean", QoS::AtMostOnce).await;
    c.disconnect().await;
    let (c, ack) = Raw::connect_with(addr, persistent(&id, true, 300)).await;
    assert!(!ack.session_present, "[MQTT-3.1.2-4] [MQTT-3.1.4-3]");
    c.disconnect().await;

    // [MQTT-3.1.2-5] [MQTT-3.1.4-4] [MQTT-3.1.2-23] Clean Start 0 resumes a stored session,
    // subscriptions included.
    let id = unique("resume");
    let (mut c, _) = Raw::connect_with(addr, persistent(&id, true, 300)).await;
    c.subscribe("sess/resume", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let (mut c, ack) = Raw::connect_with(addr, persistent(&id, false, 300)).await;
    assert!(ack.session_present, "[MQTT-3.1.4-4] session present 1");
    publisher
        .publish(publish("sess/resume", b"kept", QoS::AtMostOnce, 0))
        .await;
    let p = c.next_publish("message on the resumed subscription").await;
    assert_eq!(&p.payload[..], b"kept", "[MQTT-3.1.2-23]");

    // [MQTT-4.1.0-1] session state lasts while connected.
    c.subscribe("sess/active", QoS::AtMostOnce).await;
    c.send(Packet::Publish(publish(
        "sess/active",
        b"alive",
        QoS::AtMostOnce,
        0,
    )))
    .await;
    assert_eq!(&c.next_publish("own message").await.payload[..], b"alive");
    c.disconnect().await;

    // [MQTT-3.1.4-3] takeover: the existing connection gets DISCONNECT 0x8E and is closed.
    let id = unique("takeover");
    let mut first = Raw::connect(addr, &id).await;
    let _second = Raw::connect(addr, &id).await;
    match first.closed("taken over").await {
        Some(d) => assert_eq!(d.code, ReasonCode::SESSION_TAKEN_OVER, "[MQTT-3.1.4-3]"),
        None => assert!(!is_mqttd(), "mqttd sends DISCONNECT 0x8E"),
    }

    // [MQTT-4.1.0-2] the session is discarded once its expiry interval (1 s) has passed.
    let id = unique("expiry");
    let (mut c, _) = Raw::connect_with(addr, persistent(&id, true, 1)).await;
    c.subscribe("sess/expiry", QoS::AtMostOnce).await;
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (_c, ack) = Raw::connect_with(addr, persistent(&id, false, 300)).await;
    assert!(
        !ack.session_present,
        "[MQTT-4.1.0-2] expired session discarded"
    );
}

// ---------------------------------------------------------------------------------------------
// Will messages: 3.1.2.5 to 3.1.2.7, 3.1.3.2, 3.1.4-5, 3.14.4-3.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn will_messages() {
    let broker = TestBroker::start();
    let addr = broker.addr;
    let mut sub = Raw::connect(addr, &unique("will-sub")).await;
    sub.subscribe("will/#", QoS::AtMostOnce).await;

    // [MQTT-3.1.4-5] [MQTT-3.1.2-8] the will is published when the connection ends without
    // DISCONNECT; [MQTT-3.1.2-14] Will Retain 0: as a non-retained message.
    let c = Raw::connect_with(
        addr,
        with_will(&unique("w"), "will/drop", false, Properties::default()),
    )
    .await
    .0;
    drop(c);
    let p = sub.next_publish("will after a dropped connection").await;
    assert_eq!((&*p.topic, &p.payload[..]), ("will/drop", &b"offline"[..]));
    assert!(!p.retain, "[MQTT-3.1.2-14]");

    // [MQTT-3.14.4-3] [MQTT-3.1.4-5] DISCONNECT 0x00 discards the will.
    let c = Raw::connect_with(
        addr,
        with_will(&unique("w"), "will/normal", false, Properties::default()),
    )
    .await
    .0;
    c.disconnect().await;
    sub.quiet("no will after DISCONNECT 0x00").await;

    // DISCONNECT 0x04 (Disconnect with Will Message) publishes it (3.14.2.1).
    let mut c = Raw::connect_with(
        addr,
        with_will(&unique("w"), "will/0x04", false, Properties::default()),
    )
    .await
    .0;
    c.send(Packet::Disconnect(Disconnect::new(
        ReasonCode::DISCONNECT_WITH_WILL,
    )))
    .await;
    assert_eq!(
        &*sub.next_publish("will after 0x04").await.topic,
        "will/0x04"
    );

    // [MQTT-3.1.3-10] will user properties keep their order.
    let mut wp = Properties::default();
    for (k, v) in [("key1", "val1"), ("key2", "val2"), ("key3", "val3")] {
        wp.user_properties.push((k.into(), v.into()));
    }
    let c = Raw::connect_with(
        addr,
        with_will(&unique("w"), "will/props", false, wp.clone()),
    )
    .await
    .0;
    drop(c);
    let p = sub.next_publish("will with user properties").await;
    assert_eq!(
        p.properties.user_properties, wp.user_properties,
        "[MQTT-3.1.3-10]"
    );

    // [MQTT-3.1.2-15] Will Retain 1: published as a retained message.
    let c = Raw::connect_with(
        addr,
        with_will(&unique("w"), "will/retained", true, Properties::default()),
    )
    .await
    .0;
    drop(c);
    sub.next_publish("retained will (live)").await;
    let mut late = Raw::connect(addr, &unique("will-late")).await;
    late.subscribe("will/retained", QoS::AtMostOnce).await;
    let p = late.next_publish("retained will").await;
    assert!(p.retain, "[MQTT-3.1.2-15]");
    late.publish(retained("will/retained", b"", QoS::AtMostOnce))
        .await;
    sub.next_publish("the clearing message").await;

    // [MQTT-3.1.3-9] Will Delay Interval 1 s: a reconnect before it passes cancels the will;
    // without one the will is published once it has passed, not before.
    let delay = Properties::from(mqttd::codec::PropertyValues {
        will_delay_interval: Some(1),
        ..mqttd::codec::PropertyValues::default()
    });
    let cancelled = unique("w-cancel");
    let mut c = with_will(&cancelled, "will/cancelled", false, delay.clone());
    c.properties.session_expiry_interval = Some(300);
    drop(Raw::connect_with(addr, c).await.0);
    let mut c = with_will(&unique("w-delay"), "will/delayed", false, delay);
    c.properties.session_expiry_interval = Some(300);
    let started = Instant::now();
    drop(Raw::connect_with(addr, c).await.0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (reconnected, ack) = Raw::connect_with(addr, persistent(&cancelled, false, 300)).await;
    assert!(ack.session_present);
    sub.quiet("no will before the delay").await;
    let p = sub.next_publish("delayed will").await;
    assert_eq!(
        &*p.topic, "will/delayed",
        "[MQTT-3.1.3-9] only the un-cancelled will"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "published before the delay"
    );
    sub.quiet("cancelled will stays cancelled").await;
    reconnected.disconnect().await;
}

// ---------------------------------------------------------------------------------------------
// 3.12 PINGREQ / PINGRESP, 3.1.2.10 Keep Alive.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ping_and_keep_alive() {
    let broker = TestBroker::start();
    let addr = broker.addr;

    // [MQTT-3.12.4-1] every PINGREQ gets a PINGRESP.
    let mut raw = Raw::connect(addr, &unique("ping")).await;
    for _ in 0..3 {
        raw.ping("PINGRESP").await;
    }

    let keep_alive = |id: String, secs: u16| {
        let mut c = connect_packet(&id);
        c.keep_alive = secs;
        c
    };
    // [MQTT-3.1.2-11] silent past 1.5 x Keep Alive (1 s): the broker closes the connection.
    let silent = async {
        let (mut raw, _) = Raw::connect_with(addr, keep_alive(unique("ka-1"), 1)).await;
        let started = Instant::now();
        raw.closed("keep alive expired").await;
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "closed too early"
        );
    };
    // Keep Alive 0: no timeout.
    let disabled = async {
        let (mut raw, _) = Raw::connect_with(addr, keep_alive(unique("ka-0"), 0)).await;
        tokio::time::sleep(Duration::from_millis(2000)).await;
        raw.ping("keep alive 0").await;
    };
    // PINGREQ resets the keep alive timer.
    let pinging = async {
        let (mut raw, _) = Raw::connect_with(addr, keep_alive(unique("ka-ping"), 1)).await;
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            raw.ping("PINGREQ within keep alive").await;
        }
    };
    tokio::join!(silent, disabled, pinging);
}

// ---------------------------------------------------------------------------------------------
// 3.3 PUBLISH: packets the broker must refuse.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn publish_validation() {
    let broker = TestBroker::start();
    let addr = broker.addr;
    let mut response_topic = vec![0x08];
    response_topic.extend(field(b"reply/#"));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // [MQTT-3.3.1-4] QoS 3.
        ("QoS 3", raw_publish(0x36, b"test/qos3", &[], b"bad")),
        // [MQTT-3.3.1-2] DUP with QoS 0.
        (
            "DUP with QoS 0",
            raw_publish(0x38, b"test/dup", &[], b"bad"),
        ),
        // [MQTT-3.3.2-2] wildcards in a topic name.
        ("wildcard topic", raw_publish(0x30, b"test/#", &[], b"bad")),
        // [MQTT-3.3.2-1] empty topic name without a topic alias.
        ("empty topic", raw_publish(0x30, b"", &[], b"bad")),
        // [MQTT-3.3.2-8] Topic Alias 0.
        (
            "topic alias 0",
            raw_publish(0x30, b"test/alias", &[0x23, 0, 0], b"bad"),
        ),
        // [MQTT-3.3.4-6] Subscription Identifier from a client.
        (
            "subscription id",
            raw_publish(0x30, b"test/subid", &[0x0B, 42], b"bad"),
        ),
        // [MQTT-3.3.2-14] wildcards in the Response Topic.
        (
            "wildcard response topic",
            raw_publish(0x30, b"test/rt", &response_topic, b"bad"),
        ),
    ];
    for (what, bytes) in cases {
        let mut raw = Raw::connect(addr, &unique("bad-pub")).await;
        raw.send_bytes(&bytes).await;
        raw.refused(what).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3.3.1.3 RETAIN, 3.3.2.3.3 Message Expiry, 3.8.3.1 Retain Handling.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn retained_messages() {
    let broker = TestBroker::start();
    let addr = broker.addr;
    let mut publisher = Raw::connect(addr, &unique("ret-pub")).await;

    // Expiry checks first, so their wait overlaps the others.
    let mut expiring = retained("ret/expired", b"ephemeral", QoS::AtLeastOnce);
    expiring.properties.message_expiry_interval = Some(1);
    publisher.publish(expiring).await;
    let mut aging = retained("ret/aging", b"aging", QoS::AtLeastOnce);
    aging.properties.message_expiry_interval = Some(30);
    publisher.publish(aging).await;
    let expiry_start = Instant::now();

    // [MQTT-3.3.1-5] a retained message is stored and sent to new subscribers.
    publisher
        .publish(retained("ret/store", b"retained-payload", QoS::AtLeastOnce))
        .await;
    let mut sub = Raw::connect(addr, &unique("ret-sub")).await;
    sub.subscribe("ret/store", QoS::AtMostOnce).await;
    let p = sub.next_publish("retained message").await;
    assert_eq!(&p.payload[..], b"retained-payload", "[MQTT-3.3.1-5]");
    assert!(p.retain, "retained on subscribe");

    // [MQTT-3.3.1-6] [MQTT-3.3.1-7] an empty retained payload removes it and is not stored.
    publisher
        .publish(retained("ret/clear", b"will-be-cleared", QoS::AtLeastOnce))
        .await;
    publisher
        .publish(retained("ret/clear", b"", QoS::AtLeastOnce))
        .await;
    sub.subscribe("ret/clear", QoS::AtMostOnce).await;
    sub.quiet("cleared retained message").await;

    // [MQTT-3.3.1-8] RETAIN 0 neither stores nor replaces.
    publisher
        .publish(retained("ret/keep", b"original", QoS::AtLeastOnce))
        .await;
    publisher
        .publish(publish("ret/keep", b"update", QoS::AtLeastOnce, 2))
        .await;
    let mut sub2 = Raw::connect(addr, &unique("ret-sub2")).await;
    sub2.subscribe("ret/keep", QoS::AtMostOnce).await;
    assert_eq!(
        &sub2.next_publish("retained").await.payload[..],
        b"original"
    );
    sub2.quiet("only the retained message").await;

    // [MQTT-3.3.1-9] [MQTT-3.8.4-4] Retain Handling 0 sends retained messages on every
    // subscribe; [MQTT-3.3.1-10] 1 only for a new subscription; [MQTT-3.3.1-11] 2 never.
    publisher
        .publish(retained("ret/rh", b"rh", QoS::AtLeastOnce))
        .await;
    let mut rh = Raw::connect(addr, &unique("rh")).await;
    for (handling, new, resubscribe) in [(0u8, true, true), (1, true, false), (2, false, false)] {
        let opts = SubscriptionOptions {
            retain_handling: handling,
            ..options(QoS::AtMostOnce)
        };
        for expect in [new, resubscribe] {
            rh.subscribe_with(subscribe_opts(1, "ret/rh", opts)).await;
            if expect {
                let p = rh.next_publish("retained on subscribe").await;
                assert_eq!(&p.payload[..], b"rh", "retain handling {handling}");
            } else {
                rh.quiet(&format!("retain handling {handling}: nothing"))
                    .await;
            }
        }
        rh.unsubscribe(2, &["ret/rh"]).await;
    }

    // [MQTT-3.3.1-12] Retain As Published 0 clears RETAIN on forwarded messages;
    // [MQTT-3.3.1-13] 1 keeps it.
    let mut rap = Raw::connect(addr, &unique("rap")).await;
    for (filter, rap_flag) in [("ret/rap0", false), ("ret/rap1", true)] {
        let opts = SubscriptionOptions {
            retain_as_published: rap_flag,
            retain_handling: 2,
            ..options(QoS::AtMostOnce)
        };
        rap.subscribe_with(subscribe_opts(1, filter, opts)).await;
        publisher
            .publish(retained(filter, b"rap", QoS::AtLeastOnce))
            .await;
        let p = rap.next_publish("live retained message").await;
        assert_eq!(p.retain, rap_flag, "retain as published {rap_flag}");
    }

    // [MQTT-3.3.4-3] a retained message sent on subscribe carries the Subscription Identifier.
    publisher
        .publish(retained("ret/subid", b"id", QoS::AtLeastOnce))
        .await;
    let mut s = subscribe(1, &[("ret/subid", QoS::AtMostOnce)]);
    s.properties.subscription_identifiers = vec![42];
    let mut sid = Raw::connect(addr, &unique("ret-subid")).await;
    sid.subscribe_with(s).await;
    let p = sid.next_publish("retained with subscription id").await;
    assert_eq!(
        p.properties.subscription_identifiers,
        vec![42],
        "[MQTT-3.3.4-3]"
    );

    // [MQTT-3.8.4-8] retained at QoS 1, subscribed at QoS 0: delivered at QoS 0.
    publisher
        .publish(retained("ret/minqos", b"q", QoS::AtLeastOnce))
        .await;
    let mut mq = Raw::connect(addr, &unique("ret-minqos")).await;
    mq.subscribe("ret/minqos", QoS::AtMostOnce).await;
    assert_eq!(
        mq.next_publish("retained").await.qos,
        QoS::AtMostOnce,
        "[MQTT-3.8.4-8]"
    );

    // [MQTT-3.3.2-5] an expired retained message is not delivered; [MQTT-3.3.2-6] the
    // Message Expiry Interval sent is the received one minus the time held.
    let held = Duration::from_millis(1500).saturating_sub(expiry_start.elapsed());
    tokio::time::sleep(held).await;
    let mut ex = Raw::connect(addr, &unique("ret-exp")).await;
    ex.subscribe("ret/expired", QoS::AtLeastOnce).await;
    ex.quiet("[MQTT-3.3.2-5] expired retained message").await;
    ex.subscribe("ret/aging", QoS::AtLeastOnce).await;
    let p = ex.receive_and_ack("aging retained message").await;
    let left = p
        .properties
        .message_expiry_interval
        .expect("[MQTT-3.3.2-6] expiry interval forwarded");
    assert!(
        left < 30,
        "[MQTT-3.3.2-6] expiry interval {left} not decremented"
    );
}

// ---------------------------------------------------------------------------------------------
// 3.3 PUBLISH forwarding: QoS, properties, flags, overlapping subscriptions, No Local, 4.6.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn publish_forwarding() {
    let broker = TestBroker::start();
    let addr = broker.addr;
    let mut publisher = Raw::connect(addr, &unique("fwd-pub")).await;
    let mut sub = Raw::connect(addr, &unique("fwd-sub")).await;
    sub.subscribe("fwd/#", QoS::ExactlyOnce).await;

    // [MQTT-3.3.4-1] QoS 0, 1 and 2 messages are delivered (QoS 2 exactly once).
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let code = publisher.publish(publish("fwd/qos", b"m", qos, 7)).await;
        assert_eq!(code, ReasonCode::SUCCESS, "{qos:?} acknowledged");
        let p = sub.receive_and_ack("forwarded message").await;
        assert_eq!((p.qos, &p.payload[..]), (qos, &b"m"[..]));
        // [MQTT-3.3.1-3] [MQTT-4.3.1-1] [MQTT-4.3.2-2] [MQTT-4.3.3-2] DUP 0 on first delivery.
        assert!(!p.dup);
    }
    sub.quiet("QoS 2 delivered once").await;

    // [MQTT-3.3.1-3] the DUP flag of an incoming PUBLISH is not propagated.
    let mut dup = publish("fwd/dup", b"dup", QoS::AtLeastOnce, 9);
    dup.dup = true;
    publisher.publish(dup).await;
    assert!(
        !sub.receive_and_ack("DUP message").await.dup,
        "[MQTT-3.3.1-3]"
    );

    // [MQTT-3.3.2-4] [MQTT-3.3.2-20] [MQTT-3.3.2-13] [MQTT-3.3.2-15] [MQTT-3.3.2-16]
    // [MQTT-3.3.2-17] [MQTT-3.3.2-18] Payload Format Indicator, Content Type, Response Topic,
    // Correlation Data and User Properties (order and duplicates kept) are forwarded unaltered.
    let mut p = publish("fwd/props", b"{}", QoS::AtMostOnce, 0);
    p.properties.payload_format_indicator = Some(1);
    p.properties.content_type = Some("application/json".into());
    p.properties.response_topic = Some("reply/topic".into());
    p.properties.correlation_data = Some(Bytes::from_static(&[0xDE, 0xAD, 0xBE, 0xEF]));
    for (k, v) in [
        ("key-a", "value-1"),
        ("key-b", "value-2"),
        ("key-a", "value-3"),
    ] {
        p.properties.user_properties.push((k.into(), v.into()));
    }
    let sent = p.properties.clone();
    publisher.publish(p).await;
    let got = sub.next_publish("message with properties").await.properties;
    assert_eq!(got.payload_format_indicator, sent.payload_format_indicator);
    assert_eq!(got.content_type, sent.content_type);
    assert_eq!(got.response_topic, sent.response_topic);
    assert_eq!(got.correlation_data, sent.correlation_data);
    assert_eq!(got.user_properties, sent.user_properties);

    // [MQTT-3.3.2-3] the topic name sent is the published one, not the matching filter.
    let mut wild = Raw::connect(addr, &unique("fwd-wild")).await;
    wild.subscribe("fwd/+/sensor", QoS::AtMostOnce).await;
    publisher
        .publish(publish("fwd/x/sensor", b"t", QoS::AtMostOnce, 0))
        .await;
    assert_eq!(
        &*wild.next_publish("wildcard match").await.topic,
        "fwd/x/sensor"
    );
    sub.next_publish("fwd/# copy").await;

    // [MQTT-3.8.3-3] No Local: a client's own messages are not sent to its subscription.
    let mut own = Raw::connect(addr, &unique("nolocal")).await;
    let opts = SubscriptionOptions {
        no_local: true,
        ..options(QoS::AtLeastOnce)
    };
    own.subscribe_with(subscribe_opts(1, "fwd/nolocal/+", opts))
        .await;
    own.publish(publish("fwd/nolocal/data", b"echo", QoS::AtMostOnce, 0))
        .await;
    assert_eq!(
        &sub.next_publish("other subscriber").await.payload[..],
        b"echo"
    );
    own.quiet("[MQTT-3.8.3-3] no echo").await;

    // [MQTT-3.3.4-2] overlapping subscriptions: at least one copy at the highest granted QoS;
    // [MQTT-3.3.4-4] a single copy carries every matching Subscription Identifier,
    // [MQTT-3.3.4-5] several copies carry one each. (mqttd sends one copy, README.)
    let mut ov = Raw::connect(addr, &unique("overlap")).await;
    for (filter, qos, id) in [
        ("ov/+", QoS::AtMostOnce, 10),
        ("ov/#", QoS::AtLeastOnce, 20),
    ] {
        let mut s = subscribe(1, &[(filter, qos)]);
        s.properties.subscription_identifiers = vec![id];
        ov.subscribe_with(s).await;
    }
    publisher
        .publish(publish("ov/data", b"o", QoS::AtLeastOnce, 3))
        .await;
    let mut copies = vec![ov.receive_and_ack("overlapping delivery").await];
    while let Read::Packet(_, Packet::Publish(p)) = ov.read(QUIET).await {
        if let Some(id) = p.packet_id {
            ov.ack_delivery(p.qos, id).await;
        }
        copies.push(p);
    }
    assert_eq!(
        copies.iter().map(|p| p.qos).max(),
        Some(QoS::AtLeastOnce),
        "[MQTT-3.3.4-2]"
    );
    let mut ids: Vec<u32> = copies
        .iter()
        .flat_map(|p| p.properties.subscription_identifiers.clone())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![10, 20], "[MQTT-3.3.4-4] [MQTT-3.3.4-5]");
    if copies.len() > 1 {
        assert!(copies
            .iter()
            .all(|p| p.properties.subscription_identifiers.len() == 1));
    }

    // [MQTT-3.1.2-24] [MQTT-3.1.2-25] nothing larger than the client's Maximum Packet Size
    // (128) is sent to it: the message is dropped, smaller ones still arrive.
    let mut small = connect_packet(&unique("maxpkt"));
    small.properties.maximum_packet_size = Some(128);
    let (mut small, _) = Raw::connect_with(addr, small).await;
    small.subscribe("fwd/mp", QoS::AtMostOnce).await;
    publisher
        .publish(publish("fwd/mp", &[b'X'; 200], QoS::AtMostOnce, 0))
        .await;
    publisher
        .publish(publish("fwd/mp", b"ok", QoS::AtMostOnce, 0))
        .await;
    assert_eq!(
        &small.next_publish("small message").await.payload[..],
        b"ok"
    );
    while let Read::Packet(..) = sub.read(Duration::from_millis(100)).await {}

    // [MQTT-4.6.0-5] messages on one topic at one QoS keep their order.
    let mut order = Raw::connect(addr, &unique("order")).await;
    order.subscribe("fwd/order", QoS::AtLeastOnce).await;
    for i in 0..5u8 {
        publisher
            .publish(publish(
                "fwd/order",
                &[i],
                QoS::AtLeastOnce,
                10 + u16::from(i),
            ))
            .await;
    }
    for i in 0..5u8 {
        assert_eq!(
            &order.receive_and_ack("ordered").await.payload[..],
            &[i],
            "[MQTT-4.6.0-5]"
        );
    }

    // [MQTT-4.7.3-4] no Unicode normalization: U+00C5 and A U+030A are different topics.
    let (pre, dec) = ("uni/\u{00C5}", "uni/A\u{030A}");
    let mut s_pre = Raw::connect(addr, &unique("uni-pre")).await;
    s_pre.subscribe(pre, QoS::AtMostOnce).await;
    let mut s_dec = Raw::connect(addr, &unique("uni-dec")).await;
    s_dec.subscribe(dec, QoS::AtMostOnce).await;
    publisher
        .publish(publish(pre, b"pre", QoS::AtMostOnce, 0))
        .await;
    publisher
        .publish(publish(dec, b"dec", QoS::AtMostOnce, 0))
        .await;
    assert_eq!(&s_pre.next_publish("precomposed").await.payload[..], b"pre");
    assert_eq!(&s_dec.next_publish("decomposed").await.payload[..], b"dec");
    s_pre.quiet("[MQTT-4.7.3-4]").await;
    s_dec.quiet("[MQTT-4.7.3-4]").await;
}

// ---------------------------------------------------------------------------------------------
// 3.3.2.3.4 Topic Alias.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn topic_aliases() {
    let broker = TestBroker::start();
    let addr = broker.addr;
    let alias = |topic: &str, payload: &[u8], alias: u16| {
        let mut p = publish(topic, payload, QoS::AtMostOnce, 0);
        p.properties.topic_alias = Some(alias);
        Packet::Publish(p)
    };
    let mut sub = Raw::connect(addr, &unique("alias-sub")).await;
    sub.subscribe("alias/#", QoS::AtMostOnce).await;
    let mut publisher = Raw::connect(addr, &unique("alias-pub")).await;

    // [MQTT-3.3.2-12] an alias set with a topic, then used alone, resolves to that topic;
    // [MQTT-3.1.2-26] [MQTT-3.1.2-27] [MQTT-3.3.2-11] the subscriber set no Topic Alias
    // Maximum: what it gets carries the full topic and no alias.
    publisher.send(alias("alias/a", b"first", 1)).await;
    publisher.send(alias("", b"second", 1)).await;
    for payload in [&b"first"[..], b"second"] {
        let p = sub.next_publish("aliased message").await;
        assert_eq!((&*p.topic, &p.payload[..]), ("alias/a", payload));
        assert_eq!(p.properties.topic_alias, None, "[MQTT-3.1.2-27]");
    }
    // [MQTT-3.3.2-12] the mapping can be changed by a new topic with the same alias.
    publisher.send(alias("alias/b", b"remap", 1)).await;
    publisher.send(alias("", b"reuse", 1)).await;
    for payload in [&b"remap"[..], b"reuse"] {
        let p = sub.next_publish("remapped alias").await;
        assert_eq!((&*p.topic, &p.payload[..]), ("alias/b", payload));
    }

    // [MQTT-3.3.2-7] aliases belong to one network connection: another connection, or the
    // same client after reconnecting, cannot use them (protocol error).
    let id = unique("alias-recon");
    let mut first = Raw::connect(addr, &id).await;
    first.send(alias("alias/c", b"setup", 3)).await;
    sub.next_publish("setup").await;
    let mut other = Raw::connect(addr, &unique("alias-other")).await;
    other.send(alias("", b"bad", 3)).await;
    other.refused("alias from another connection").await;
    first.disconnect().await;
    let mut again = Raw::connect(addr, &id).await;
    again.send(alias("", b"bad", 3)).await;
    again.refused("alias from the previous connection").await;
    sub.quiet("nothing delivered for unknown aliases").await;
}

// ---------------------------------------------------------------------------------------------
// 3.4 to 3.7 acknowledgements, 4.3 QoS flows, 4.4 redelivery.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn qos_flows() {
    let broker = TestBroker::start();
    let addr = broker.addr;
    let mut publisher = Raw::connect(addr, &unique("qos-pub")).await;

    // [MQTT-3.4.0-1] [MQTT-3.4.2-1] PUBACK with the packet id, 0x00 or 0x10 (no subscribers);
    // [MQTT-3.5.0-1] [MQTT-3.5.2-1] PUBREC likewise; [MQTT-2.1.3-1] first bytes 0x40, 0x50.
    publisher
        .send(Packet::Publish(publish(
            "qos/none",
            b"x",
            QoS::AtLeastOnce,
            42,
        )))
        .await;
    let (first, packet) = publisher.next_with_first_byte("PUBACK").await;
    assert_eq!(first, 0x40);
    let Packet::PubAck(a) = packet else {
        panic!("expected PUBACK, got {packet:?}")
    };
    assert_eq!(a.packet_id, 42);
    assert!(matches!(a.code.0, 0x00 | 0x10), "PUBACK {:?}", a.code);
    assert!(matches!(
        publisher
            .publish(publish("qos/none", b"x", QoS::ExactlyOnce, 100))
            .await
            .0,
        0x00 | 0x10
    ));

    // 4.3.3: a QoS 2 message is delivered exactly once. (mqttd starts onward delivery when the
    // PUBLISH arrives and remembers the packet id until PUBREL: Method B of Figure 4.3, which
    // the spec allows; delivery before PUBREL is therefore not checked.) After PUBCOMP the
    // packet id is free and the same id is a new message [MQTT-4.3.3-9] [MQTT-4.3.3-12].
    let mut sub = Raw::connect(addr, &unique("qos-sub")).await;
    sub.subscribe("qos/two", QoS::ExactlyOnce).await;
    for payload in [&b"first"[..], b"second"] {
        assert_eq!(
            publisher
                .publish(Publish {
                    payload: Bytes::copy_from_slice(payload),
                    ..publish("qos/two", b"", QoS::ExactlyOnce, 7)
                })
                .await,
            ReasonCode::SUCCESS
        );
        assert_eq!(
            &sub.receive_and_ack("QoS 2 message").await.payload[..],
            payload
        );
    }

    // [MQTT-4.3.3-10] a retransmitted QoS 2 PUBLISH (DUP) before PUBREL is acknowledged again
    // but not delivered again.
    publisher
        .send(Packet::Publish(publish(
            "qos/two",
            b"once",
            QoS::ExactlyOnce,
            50,
        )))
        .await;
    assert!(matches!(publisher.next("PUBREC").await, Packet::PubRec(a) if a.packet_id == 50));
    let mut again = publish("qos/two", b"once", QoS::ExactlyOnce, 50);
    again.dup = true;
    publisher.send(Packet::Publish(again)).await;
    assert!(matches!(publisher.next("PUBREC").await, Packet::PubRec(a) if a.packet_id == 50));
    publisher.send(Packet::PubRel(Ack::new(50))).await;
    assert!(
        matches!(publisher.next("PUBCOMP").await, Packet::PubComp(a) if a.packet_id == 50 && a.code == ReasonCode::SUCCESS)
    );
    assert_eq!(
        &sub.receive_and_ack("QoS 2 once").await.payload[..],
        b"once"
    );
    sub.quiet("[MQTT-4.3.3-10] no second delivery").await;

    // [MQTT-3.6.2-1] [MQTT-3.7.2-1] PUBREL for an unknown packet id: PUBCOMP 0x92.
    publisher.send(Packet::PubRel(Ack::new(999))).await;
    match publisher.next("PUBCOMP").await {
        Packet::PubComp(a) => {
            assert_eq!(a.packet_id, 999);
            assert!(matches!(a.code.0, 0x92 | 0x00), "PUBCOMP {:?}", a.code);
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }

    // Outbound flows. [MQTT-4.3.2-1] [MQTT-2.2.1-4] non-zero packet ids, unique while in use,
    // [MQTT-4.3.2-2] DUP 0; [MQTT-4.4.0-1] no retransmission on a live connection.
    let mut out = Raw::connect(addr, &unique("qos-out")).await;
    out.subscribe("qos/out/#", QoS::ExactlyOnce).await;
    let mut ids = HashSet::new();
    for i in 0..3u16 {
        publisher
            .publish(publish("qos/out/1", b"q1", QoS::AtLeastOnce, 20 + i))
            .await;
        let p = out.next_publish("QoS 1 delivery").await;
        let id = p.packet_id.expect("packet id");
        assert!(
            id != 0 && ids.insert(id) && !p.dup,
            "[MQTT-4.3.2-1] [MQTT-4.3.2-2] {p:?}"
        );
    }
    out.quiet("[MQTT-4.4.0-1] no retransmission").await;
    for id in ids {
        out.send(Packet::PubAck(Ack::new(id))).await;
    }
    // [MQTT-4.4.0-2] a PUBACK >= 0x80 also ends the flow: no retransmission.
    publisher
        .publish(publish("qos/out/1", b"nack", QoS::AtLeastOnce, 30))
        .await;
    let p = out.next_publish("QoS 1 delivery").await;
    out.send(Packet::PubAck(Ack {
        code: ReasonCode::UNSPECIFIED_ERROR,
        ..Ack::new(p.packet_id.unwrap())
    }))
    .await;
    out.quiet("[MQTT-4.4.0-2]").await;

    // [MQTT-4.3.3-1] [MQTT-4.3.3-2] QoS 2: non-zero id, DUP 0; [MQTT-4.3.3-3] no PUBREL before
    // PUBREC; [MQTT-4.3.3-5] [MQTT-3.6.1-1] PUBREL (0x62) with the id after PUBREC.
    publisher
        .publish(publish("qos/out/2", b"q2", QoS::ExactlyOnce, 31))
        .await;
    let p = out.next_publish("QoS 2 delivery").await;
    let id = p.packet_id.unwrap();
    assert!(id != 0 && !p.dup && p.qos == QoS::ExactlyOnce);
    out.quiet("[MQTT-4.3.3-3] no PUBREL before PUBREC").await;
    out.send(Packet::PubRec(Ack::new(id))).await;
    let (first, packet) = out.next_with_first_byte("PUBREL").await;
    assert_eq!(first, 0x62, "[MQTT-3.6.1-1]");
    assert!(
        matches!(packet, Packet::PubRel(a) if a.packet_id == id && a.code == ReasonCode::SUCCESS)
    );
    out.send(Packet::PubComp(Ack::new(id))).await;

    // [MQTT-4.3.3-4] a PUBREC >= 0x80 ends the flow: no PUBREL.
    publisher
        .publish(publish("qos/out/2", b"reject", QoS::ExactlyOnce, 32))
        .await;
    let id = out.next_publish("QoS 2 delivery").await.packet_id.unwrap();
    out.send(Packet::PubRec(Ack {
        code: ReasonCode::UNSPECIFIED_ERROR,
        ..Ack::new(id)
    }))
    .await;
    out.quiet("[MQTT-4.3.3-4] no PUBREL after an error PUBREC")
        .await;

    // [MQTT-3.6.1-1] a PUBREL with flags other than 0010 is malformed.
    publisher
        .send(Packet::Publish(publish(
            "qos/none",
            b"x",
            QoS::ExactlyOnce,
            1,
        )))
        .await;
    publisher.next("PUBREC").await;
    publisher.send_bytes(&[0x60, 0x02, 0x00, 0x01]).await;
    publisher.refused("PUBREL with flags 0000").await;

    // [MQTT-4.3.3-7] once the PUBLISH is sent, message expiry does not stop the flow toward the
    // subscriber; [MQTT-4.3.3-13] nor the flow from the publisher. Both waits overlap.
    let mut publisher = Raw::connect(addr, &unique("qos-exp")).await;
    let mut expiring = publish("qos/out/exp", b"exp", QoS::ExactlyOnce, 10);
    expiring.properties.message_expiry_interval = Some(1);
    publisher.publish(expiring.clone()).await;
    let id = out.next_publish("expiring QoS 2").await.packet_id.unwrap();
    expiring.packet_id = Some(20);
    publisher.send(Packet::Publish(expiring)).await;
    assert!(matches!(publisher.next("PUBREC").await, Packet::PubRec(a) if a.packet_id == 20));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    out.send(Packet::PubRec(Ack::new(id))).await;
    // A broker that delivers on PUBLISH (4.3.3 Method B) has sent the second message already;
    // one that delivers on PUBREL (Method A) sends it, or drops it as expired, later.
    let mut second = None;
    loop {
        match out.next("PUBREL").await {
            Packet::PubRel(a) => {
                assert_eq!(a.packet_id, id, "[MQTT-4.3.3-7]");
                break;
            }
            Packet::Publish(p) => second = p.packet_id,
            other => panic!("expected PUBREL, got {other:?}"),
        }
    }
    out.send(Packet::PubComp(Ack::new(id))).await;
    publisher.send(Packet::PubRel(Ack::new(20))).await;
    assert!(
        matches!(publisher.next("PUBCOMP").await, Packet::PubComp(a) if a.packet_id == 20),
        "[MQTT-4.3.3-13]"
    );
    if let Some(second) = second {
        out.ack_delivery(QoS::ExactlyOnce, second).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3.8 SUBSCRIBE, 3.9 SUBACK, 3.10 UNSUBSCRIBE, 3.11 UNSUBACK.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn subscribe_and_unsubscribe() {
    let broker = TestBroker::start();
    let addr = broker.addr;

    let mut invalid_utf8 = 1u16.to_be_bytes().to_vec();
    invalid_utf8.push(0);
    invalid_utf8.extend(field(&[0xFF, 0xFE]));
    let mut sub_utf8 = invalid_utf8.clone();
    sub_utf8.push(0);
    let mut one = 1u16.to_be_bytes().to_vec();
    one.push(0);
    one.extend(field(b"test/topic"));
    let mut reserved_bits = one.clone();
    reserved_bits.push(0xC0);
    let mut sub_ok = one.clone();
    sub_ok.push(0);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // [MQTT-3.8.1-1] SUBSCRIBE flags must be 0010.
        ("SUBSCRIBE flags 0000", frame(0x80, &sub_ok)),
        // [MQTT-3.8.3-2] at least one topic filter.
        ("SUBSCRIBE without filters", frame(0x82, &[0, 1, 0])),
        // [MQTT-3.8.3-5] reserved subscription option bits must be 0.
        ("subscription options 0xC0", frame(0x82, &reserved_bits)),
        // [MQTT-3.8.3-1] filters are UTF-8.
        ("SUBSCRIBE filter not UTF-8", frame(0x82, &sub_utf8)),
        // [MQTT-3.10.1-1] UNSUBSCRIBE flags must be 0010.
        ("UNSUBSCRIBE flags 0000", frame(0xA0, &one)),
        // [MQTT-3.10.3-2] at least one topic filter.
        ("UNSUBSCRIBE without filters", frame(0xA2, &[0, 1, 0])),
        // [MQTT-3.10.3-1] filters are UTF-8.
        ("UNSUBSCRIBE filter not UTF-8", frame(0xA2, &invalid_utf8)),
    ];
    for (what, bytes) in cases {
        let mut raw = Raw::connect(addr, &unique("bad-sub")).await;
        raw.send_bytes(&bytes).await;
        raw.refused(what).await;
    }

    let mut raw = Raw::connect(addr, &unique("sub")).await;
    // [MQTT-3.8.4-1] [MQTT-3.8.4-2] SUBACK with the packet id; [MQTT-3.8.4-6] one code per
    // filter; [MQTT-3.8.4-7] the requested QoS is granted (default Maximum QoS 2).
    let codes = raw
        .subscribe_with(subscribe(
            42,
            &[
                ("sub/a", QoS::AtMostOnce),
                ("sub/b", QoS::AtLeastOnce),
                ("sub/c", QoS::ExactlyOnce),
            ],
        ))
        .await;
    assert_eq!(codes, vec![ReasonCode(0), ReasonCode(1), ReasonCode(2)]);

    // [MQTT-3.11.2-1] [MQTT-3.11.3-1] [MQTT-3.11.3-2] UNSUBACK: Success for an existing
    // subscription, 0x11 for none, once removed 0x11 again.
    let codes = raw.unsubscribe(42, &["sub/a", "sub/never", "sub/b"]).await;
    assert_eq!(
        codes,
        vec![
            ReasonCode::SUCCESS,
            ReasonCode::NO_SUBSCRIPTION_EXISTED,
            ReasonCode::SUCCESS
        ]
    );
    assert_eq!(
        raw.unsubscribe(43, &["sub/a"]).await,
        vec![ReasonCode::NO_SUBSCRIPTION_EXISTED]
    );

    // [MQTT-3.8.4-3] a subscription to the same filter replaces the old one: one copy, at the
    // new QoS.
    let mut publisher = Raw::connect(addr, &unique("sub-pub")).await;
    raw.subscribe("sub/replace", QoS::AtMostOnce).await;
    raw.subscribe("sub/replace", QoS::AtLeastOnce).await;
    publisher
        .publish(publish("sub/replace", b"once", QoS::AtLeastOnce, 1))
        .await;
    assert_eq!(
        raw.receive_and_ack("replaced subscription").await.qos,
        QoS::AtLeastOnce
    );
    raw.quiet("[MQTT-3.8.4-3] one copy").await;

    // [MQTT-3.8.4-8] delivered QoS = min(published, granted): sub 0 / pub 1 -> 0,
    // sub 1 / pub 2 -> 1.
    raw.subscribe("sub/min0", QoS::AtMostOnce).await;
    raw.subscribe("sub/min1", QoS::AtLeastOnce).await;
    publisher
        .publish(publish("sub/min0", b"m", QoS::AtLeastOnce, 2))
        .await;
    assert_eq!(raw.receive_and_ack("min QoS").await.qos, QoS::AtMostOnce);
    publisher
        .publish(publish("sub/min1", b"m", QoS::ExactlyOnce, 3))
        .await;
    assert_eq!(raw.receive_and_ack("min QoS").await.qos, QoS::AtLeastOnce);

    // [MQTT-3.10.4-1] after UNSUBSCRIBE no more messages for the filter; the others go on.
    raw.subscribe_with(subscribe(
        5,
        &[
            ("sub/keep", QoS::AtMostOnce),
            ("sub/remove", QoS::AtMostOnce),
        ],
    ))
    .await;
    assert_eq!(
        raw.unsubscribe(6, &["sub/remove", "sub/never-existed"])
            .await,
        vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
    );
    publisher
        .publish(publish("sub/remove", b"gone", QoS::AtMostOnce, 0))
        .await;
    publisher
        .publish(publish("sub/keep", b"still-here", QoS::AtMostOnce, 0))
        .await;
    assert_eq!(
        &raw.next_publish("remaining subscription").await.payload[..],
        b"still-here"
    );
    raw.quiet("[MQTT-3.10.4-1]").await;
}

// ---------------------------------------------------------------------------------------------
// 4.7 Topic names and filters, 4.5 delivery to matching subscriptions.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn topic_filters() {
    let broker = TestBroker::start();
    let addr = broker.addr;

    // [MQTT-4.7.1-1] '#' last and alone in its level; [MQTT-4.7.1-2] '+' alone in its level;
    // [MQTT-4.7.3-1] at least one character. Refused either with SUBACK 0x8F or (mqttd: a
    // malformed filter makes the packet malformed) DISCONNECT and close.
    for filter in [
        "sport/tennis/#/ranking",
        "sport/tennis#",
        "sport+",
        "sport/+tennis",
        "",
    ] {
        let mut raw = Raw::connect(addr, &unique("bad-filter")).await;
        raw.send(Packet::Subscribe(subscribe(
            1,
            &[(filter, QoS::AtMostOnce)],
        )))
        .await;
        match raw.read(WAIT).await {
            Read::Packet(_, Packet::SubAck(a)) => assert_eq!(
                a.codes,
                vec![ReasonCode::TOPIC_FILTER_INVALID],
                "{filter:?}"
            ),
            Read::Packet(_, Packet::Disconnect(d)) => {
                assert!(d.code.is_error(), "{filter:?}");
                raw.closed(filter).await;
            }
            Read::Closed => assert!(!is_mqttd(), "mqttd sends DISCONNECT"),
            other => panic!("filter {filter:?}: {other:?}"),
        }
    }

    // Valid wildcard filters are granted.
    let mut raw = Raw::connect(addr, &unique("good-filter")).await;
    let valid = [
        ("sport/+", QoS::AtMostOnce),
        ("sport/#", QoS::AtMostOnce),
        ("+/tennis/#", QoS::AtMostOnce),
        ("#", QoS::AtMostOnce),
        ("+", QoS::AtMostOnce),
    ];
    assert_eq!(
        raw.subscribe_with(subscribe(1, &valid)).await,
        vec![ReasonCode::SUCCESS; 5]
    );

    // [MQTT-4.7.2-1] topics starting with '$' are not matched by filters starting with a
    // wildcard.
    let mut hash = Raw::connect(addr, &unique("dollar-hash")).await;
    hash.subscribe("#", QoS::AtMostOnce).await;
    let mut plus = Raw::connect(addr, &unique("dollar-plus")).await;
    plus.subscribe("+/info", QoS::AtMostOnce).await;
    let mut publisher = Raw::connect(addr, &unique("dollar-pub")).await;
    publisher
        .publish(publish("$SYS/test", b"sys", QoS::AtMostOnce, 0))
        .await;
    publisher
        .publish(publish("$SYS/info", b"sys", QoS::AtMostOnce, 0))
        .await;
    publisher
        .publish(publish("x/info", b"plain", QoS::AtMostOnce, 0))
        .await;
    // One publisher, one QoS: ordered [MQTT-4.6.0-5], so x/info first means no $SYS message.
    assert_eq!(
        &*hash.next_publish("x/info on #").await.topic,
        "x/info",
        "[MQTT-4.7.2-1]"
    );
    assert_eq!(
        &*plus.next_publish("x/info on +/info").await.topic,
        "x/info",
        "[MQTT-4.7.2-1]"
    );
    hash.quiet("[MQTT-4.7.2-1] no $SYS on #").await;
    plus.quiet("[MQTT-4.7.2-1] no $SYS on +/info").await;
    drop((hash, plus));

    // [MQTT-4.7.1-2] '+' matches exactly one level; [MQTT-4.7.1-1] '#' matches the parent and
    // every descendant; [MQTT-4.5.0-1] only matching subscriptions get a message.
    let mut one = Raw::connect(addr, &unique("plus-one")).await;
    one.subscribe("sport/+/player", QoS::AtMostOnce).await;
    let mut all = Raw::connect(addr, &unique("hash-all")).await;
    all.subscribe("sport/#", QoS::AtMostOnce).await;
    let mut none = Raw::connect(addr, &unique("none")).await;
    none.subscribe("sport/+/player/+", QoS::AtMostOnce).await;
    for topic in [
        "sport",
        "sport/tennis",
        "sport/tennis/player",
        "sport/tennis/doubles/player",
    ] {
        publisher
            .publish(publish(topic, topic.as_bytes(), QoS::AtMostOnce, 0))
            .await;
    }
    assert_eq!(
        &*one.next_publish("sport/+/player").await.topic,
        "sport/tennis/player"
    );
    for topic in [
        "sport",
        "sport/tennis",
        "sport/tennis/player",
        "sport/tennis/doubles/player",
    ] {
        assert_eq!(&*all.next_publish("sport/#").await.topic, topic);
    }
    one.quiet("[MQTT-4.7.1-2]").await;
    none.quiet("[MQTT-4.5.0-1]").await;
}

// ---------------------------------------------------------------------------------------------
// 4.8.2 Shared subscriptions.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn shared_subscriptions() {
    let broker = TestBroker::start();
    let addr = broker.addr;
    let mut publisher = Raw::connect(addr, &unique("share-pub")).await;

    // [MQTT-4.8.2-1] `$share/{ShareName}/{filter}` is accepted.
    let mut raw = Raw::connect(addr, &unique("share-valid")).await;
    raw.subscribe("$share/mygroup/sensor/+", QoS::AtMostOnce)
        .await;

    // [MQTT-4.8.2-1] [MQTT-4.8.2-2] a ShareName with '+' or '#', or no filter after it, is
    // refused: SUBACK 0x8F or DISCONNECT. (mqttd: a protocol error, 0x82, as the mosquitto
    // corpus expects; README.)
    for filter in [
        "$share/gr+oup/topic",
        "$share/gr#oup/topic",
        "$share/grouponly",
    ] {
        let mut raw = Raw::connect(addr, &unique("share-bad")).await;
        raw.send(Packet::Subscribe(subscribe(
            1,
            &[(filter, QoS::AtMostOnce)],
        )))
        .await;
        match raw.read(WAIT).await {
            Read::Packet(_, Packet::SubAck(a)) => {
                assert_eq!(a.codes, vec![ReasonCode::TOPIC_FILTER_INVALID], "{filter}")
            }
            Read::Packet(_, Packet::Disconnect(d)) => {
                assert!(d.code.is_error(), "{filter}");
                raw.closed(filter).await;
            }
            Read::Closed => assert!(!is_mqttd(), "mqttd sends DISCONNECT"),
            other => panic!("{filter}: {other:?}"),
        }
    }

    // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
    let mut raw = Raw::connect(addr, &unique("share-nolocal")).await;
    let opts = SubscriptionOptions {
        no_local: true,
        ..options(QoS::AtLeastOnce)
    };
    raw.send(Packet::Subscribe(subscribe_opts(
        1,
        "$share/workers/tasks/+",
        opts,
    )))
    .await;
    raw.refused("No Local on a shared subscription").await;

    // [MQTT-4.8.2-4] messages are distributed over the group; a plain subscription to the same
    // filter and another group each get every message.
    let mut w1 = Raw::connect(addr, &unique("share-w1")).await;
    w1.subscribe("$share/workers/tasks", QoS::AtMostOnce).await;
    let mut w2 = Raw::connect(addr, &unique("share-w2")).await;
    w2.subscribe("$share/workers/tasks", QoS::AtMostOnce).await;
    let mut solo = Raw::connect(addr, &unique("share-solo")).await;
    solo.subscribe("$share/other/tasks", QoS::AtMostOnce).await;
    let mut plain = Raw::connect(addr, &unique("share-plain")).await;
    plain.subscribe("tasks", QoS::AtMostOnce).await;
    for i in 0..6u8 {
        publisher
            .publish(publish("tasks", &[i], QoS::AtMostOnce, 0))
            .await;
    }
    for i in 0..6u8 {
        assert_eq!(
            &plain.next_publish("plain subscriber").await.payload[..],
            &[i]
        );
        assert_eq!(
            &solo.next_publish("sole member of a group").await.payload[..],
            &[i]
        );
    }
    let mut counts = [0, 0];
    for (n, w) in [&mut w1, &mut w2].into_iter().enumerate() {
        while let Read::Packet(_, Packet::Publish(_)) = w.read(QUIET).await {
            counts[n] += 1;
        }
    }
    assert_eq!(
        counts[0] + counts[1],
        6,
        "each message to one member: {counts:?}"
    );
    assert!(
        counts[0] >= 1 && counts[1] >= 1,
        "both members get messages: {counts:?}"
    );

    // [MQTT-4.8.2-4] after UNSUBSCRIBE the member gets nothing more.
    assert_eq!(
        w1.unsubscribe(2, &["$share/workers/tasks"]).await,
        vec![ReasonCode::SUCCESS]
    );
    publisher
        .publish(publish("tasks", b"after", QoS::AtMostOnce, 0))
        .await;
    assert_eq!(
        &w2.next_publish("remaining member").await.payload[..],
        b"after"
    );
    w1.quiet("unsubscribed member").await;

    // Retained messages are not sent to a shared subscription (mqttd, README; 4.8.2), but to
    // a plain one.
    publisher
        .publish(retained("share/temp", b"25.5", QoS::AtLeastOnce))
        .await;
    let mut s = Raw::connect(addr, &unique("share-ret")).await;
    s.subscribe("$share/readers/share/temp", QoS::AtMostOnce)
        .await;
    s.quiet("no retained message on a shared subscription")
        .await;
    s.subscribe("share/temp", QoS::AtMostOnce).await;
    assert_eq!(
        &s.next_publish("retained on the plain subscription")
            .await
            .payload[..],
        b"25.5"
    );
    publisher
        .publish(retained("share/temp", b"", QoS::AtMostOnce))
        .await;
    s.next_publish("clearing message").await;

    // [MQTT-4.8.2-3] delivered at min(published QoS, granted QoS).
    let mut q = Raw::connect(addr, &unique("share-qos")).await;
    q.subscribe("$share/qgrp/share/qos", QoS::AtMostOnce).await;
    publisher
        .publish(publish("share/qos", b"q1", QoS::AtLeastOnce, 5))
        .await;
    assert_eq!(
        q.next_publish("shared delivery").await.qos,
        QoS::AtMostOnce,
        "[MQTT-4.8.2-3]"
    );

    // [MQTT-4.8.2-6] a message refused with PUBACK >= 0x80 is not sent again.
    let mut e = Raw::connect(addr, &unique("share-err")).await;
    e.subscribe("$share/errgrp/share/err", QoS::AtLeastOnce)
        .await;
    publisher
        .publish(publish("share/err", b"reject-me", QoS::AtLeastOnce, 6))
        .await;
    let id = e.next_publish("shared QoS 1").await.packet_id.unwrap();
    e.send(Packet::PubAck(Ack {
        code: ReasonCode::UNSPECIFIED_ERROR,
        ..Ack::new(id)
    }))
    .await;
    e.quiet("[MQTT-4.8.2-6] not redistributed").await;
}

// ---------------------------------------------------------------------------------------------
// 4.9 Flow control (Receive Maximum), 3.3.4-9.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn flow_control() {
    let broker = TestBroker::start();
    let addr = broker.addr;
    let mut publisher = Raw::connect(addr, &unique("fc-pub")).await;
    let limited = |id: String, max: u16| {
        let mut c = connect_packet(&id);
        c.properties.receive_maximum = Some(max);
        c
    };

    // [MQTT-3.3.4-9] [MQTT-4.9.0-1] [MQTT-4.9.0-2] no more unacknowledged QoS 1 PUBLISH than
    // the client's Receive Maximum (2); the rest follow as PUBACKs free the quota.
    let (mut sub, _) = Raw::connect_with(addr, limited(unique("fc-2"), 2)).await;
    sub.subscribe("fc/q1", QoS::AtLeastOnce).await;
    for i in 1..=5u8 {
        publisher
            .publish(publish("fc/q1", &[i], QoS::AtLeastOnce, u16::from(i)))
            .await;
    }
    let mut first = Vec::new();
    while let Read::Packet(_, Packet::Publish(p)) = sub.read(QUIET).await {
        first.push(p);
    }
    assert_eq!(first.len(), 2, "[MQTT-4.9.0-2] within Receive Maximum 2");
    // [MQTT-4.9.0-3] at zero quota other packets are still answered.
    sub.ping("PINGREQ at zero quota").await;
    sub.subscribe("fc/other", QoS::AtMostOnce).await;
    let mut got: Vec<u8> = first.iter().map(|p| p.payload[0]).collect();
    for p in &first {
        sub.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
            .await;
    }
    while got.len() < 5 {
        got.push(sub.receive_and_ack("queued message").await.payload[0]);
    }
    assert_eq!(
        got,
        vec![1, 2, 3, 4, 5],
        "[MQTT-4.9.0-1] all delivered, in order"
    );

    // QoS 2 with Receive Maximum 1: the slot is held until PUBCOMP, not just PUBREC.
    let (mut sub, _) = Raw::connect_with(addr, limited(unique("fc-q2"), 1)).await;
    sub.subscribe("fc/q2", QoS::ExactlyOnce).await;
    publisher
        .publish(publish("fc/q2", b"fill", QoS::ExactlyOnce, 10))
        .await;
    publisher
        .publish(publish("fc/q2", b"queued", QoS::ExactlyOnce, 11))
        .await;
    let id = sub.next_publish("first QoS 2").await.packet_id.unwrap();
    sub.quiet("[MQTT-4.9.0-2] second withheld").await;
    sub.ping("[MQTT-4.9.0-3] PINGREQ at zero quota").await;
    sub.subscribe("fc/other2", QoS::AtMostOnce).await;
    sub.send(Packet::PubRec(Ack::new(id))).await;
    assert!(matches!(sub.next("PUBREL").await, Packet::PubRel(a) if a.packet_id == id));
    sub.quiet("[MQTT-4.9.0-2] still withheld until PUBCOMP")
        .await;
    sub.send(Packet::PubComp(Ack::new(id))).await;
    let p = sub.receive_and_ack("second QoS 2").await;
    assert_eq!(&p.payload[..], b"queued");
    assert_ne!(p.packet_id, Some(0));
}

// ---------------------------------------------------------------------------------------------
// 3.14 DISCONNECT, 3.15 AUTH, 4.13 error handling.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn disconnect_and_errors() {
    let broker = TestBroker::start();
    let addr = broker.addr;

    // [MQTT-4.13.1-1] a malformed packet (type 0) closes the connection.
    let mut raw = Raw::connect(addr, &unique("garbage")).await;
    raw.send_bytes(&[0x00, 0x00]).await;
    raw.refused("packet type 0").await;

    // [MQTT-4.12.0-6] without an Authentication Method in CONNECT the broker sends no AUTH
    // (Raw::connect takes the CONNACK as the first packet); [MQTT-4.12.0-7] an AUTH from such a
    // client is a protocol error.
    let mut raw = Raw::connect(addr, &unique("no-auth")).await;
    raw.ping("plain connection").await;
    let mut method = vec![0x15];
    method.extend(field(b"SOME-METHOD"));
    let mut body = vec![0x19];
    body.extend(props(&method));
    raw.send_bytes(&frame(0xF0, &body)).await;
    raw.refused("AUTH without an Authentication Method in CONNECT")
        .await;

    // [MQTT-3.15.1-1] AUTH with reserved flags set is malformed.
    let mut raw = Raw::connect(addr, &unique("auth-flags")).await;
    raw.send_bytes(&[0xF1, 0x02, 0x00, 0x00]).await;
    raw.refused("AUTH flags 0001").await;

    // [MQTT-3.14.2-1] DISCONNECT with a valid reason code (0x00, 0x04, 0x80) from the client:
    // the broker closes, sending nothing [MQTT-3.14.4-1] [MQTT-3.14.4-2].
    for code in [0x00u8, 0x04, 0x80] {
        let mut raw = Raw::connect(addr, &unique("disc")).await;
        raw.send_bytes(&[0xE0, 0x02, code, 0x00]).await;
        assert!(raw.closed("client DISCONNECT").await.is_none(), "{code:#x}");
    }
    // An invalid reason code (0x03) is malformed: the connection closes.
    let mut raw = Raw::connect(addr, &unique("disc-bad")).await;
    raw.send_bytes(&[0xE0, 0x02, 0x03, 0x00]).await;
    raw.closed("DISCONNECT 0x03").await;

    // [MQTT-3.14.4-1] nothing is answered after the client's DISCONNECT.
    let mut raw = Raw::connect(addr, &unique("disc-ping")).await;
    raw.send(Packet::Disconnect(Disconnect::new(
        ReasonCode::NORMAL_DISCONNECTION,
    )))
    .await;
    raw.send(Packet::PingReq).await;
    assert!(raw.closed("no PINGRESP after DISCONNECT").await.is_none());
}
