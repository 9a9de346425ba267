//! The store's record format: a small versioned binary encoding of sessions, queued and
//! inflight deliveries and retained messages.
//!
//! Every record starts with a format version byte and a kind byte, so a record written by
//! another version is recognised and reported instead of misread. Integers are big-endian and
//! fixed width, strings and byte strings carry a `u32` length, optional values a 0/1 tag.
//! Deadlines (session expiry, will delay, message expiry) are stored as wall-clock Unix
//! milliseconds: an `Instant` means nothing after a restart.
//!
//! Decoding never panics: truncated, oversized or invalid input is a [`RecordError`].

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes};
use bytestring::ByteString;

use crate::broker::session::{Delivery, PendingWill, SubEntry};
use crate::broker::types::{Message, StreamId};
use crate::codec::{ProtocolVersion, QoS, SubscriptionOptions};

/// Version of the record layout below. Records of version 1 (no user name in the session
/// record) are read too; a record of another version is skipped (reported).
pub const FORMAT: u8 = 2;
const OLDEST_READABLE: u8 = 1;

const KIND_SESSION: u8 = 1;
const KIND_DELIVERY: u8 = 2;
const KIND_RETAINED: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record ends early")]
    Truncated,
    #[error("record format version {0} (this broker reads {FORMAT})")]
    Version(u8),
    #[error("record kind {found}, expected {expected}")]
    Kind { found: u8, expected: u8 },
    #[error("invalid {0}")]
    Invalid(&'static str),
    #[error("{0} bytes left after the record")]
    Trailing(usize),
}

/// Converts between the broker's `Instant`s and wall-clock Unix milliseconds, from one
/// reading of both clocks (the glue reads them; the broker reads no clock).
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    pub now: Instant,
    pub unix_ms: u64,
}

impl WallClock {
    pub fn new(now: Instant, wall: SystemTime) -> WallClock {
        let unix_ms = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64);
        WallClock { now, unix_ms }
    }

    pub fn to_unix_ms(self, at: Instant) -> u64 {
        if at >= self.now {
            let ahead = at.duration_since(self.now).as_millis();
            self.unix_ms
                .saturating_add(ahead.min(u128::from(u64::MAX)) as u64)
        } else {
            let behind = self.now.duration_since(at).as_millis();
            self.unix_ms
                .saturating_sub(behind.min(u128::from(u64::MAX)) as u64)
        }
    }

    /// A stored deadline as an `Instant`; one already past is `now`.
    pub fn to_instant(self, unix_ms: u64) -> Instant {
        let ahead = Duration::from_millis(unix_ms.saturating_sub(self.unix_ms));
        self.now.checked_add(ahead).unwrap_or(self.now)
    }
}

/// A session as stored (everything but its deliveries, which have records of their own).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub version: ProtocolVersion,
    pub expiry_secs: u32,
    /// Wall-clock expiry of a disconnected session; `None` while it was connected.
    pub expires_at_ms: Option<u64>,
    /// Full filter (with any `$share/group/` prefix) and the subscription.
    pub subscriptions: Vec<(ByteString, SubEntry)>,
    /// Incoming QoS 2 packet ids awaiting PUBREL.
    pub incoming_qos2: Vec<(StreamId, u16)>,
    /// Outgoing QoS 2 flows past PUBREC (PUBREL sent, PUBCOMP awaited).
    pub released: Vec<(u16, StreamId)>,
    pub will: Option<WillRecord>,
    /// The user name of the last connection, which the ACL rules of the session follow
    /// (format 2 on).
    pub username: Option<ByteString>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WillRecord {
    pub message: StoredMessage,
    pub delay_secs: u32,
    /// Wall-clock publication time once the connection is gone.
    pub publish_at_ms: Option<u64>,
}

/// An application message with its expiry as wall-clock time.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub message: Message,
    pub expires_at_ms: Option<u64>,
}

impl StoredMessage {
    pub fn from_message(m: &Message, clock: &WallClock) -> StoredMessage {
        StoredMessage {
            message: Message {
                expires_at: None,
                received_at: None,
                cluster_seq: None,
                ..m.clone()
            },
            expires_at_ms: m.expires_at.map(|at| clock.to_unix_ms(at)),
        }
    }

    pub fn into_message(self, clock: &WallClock) -> Message {
        Message {
            expires_at: self.expires_at_ms.map(|ms| clock.to_instant(ms)),
            ..self.message
        }
    }
}

/// One queued or inflight delivery of a session.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    /// `Some` while inflight (PUBLISH sent, PUBACK/PUBREC awaited), `None` while queued.
    pub packet_id: Option<u16>,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    pub stream: StreamId,
    pub datagram: bool,
    pub flow: Option<ByteString>,
    pub priority: i32,
    pub message: StoredMessage,
}

impl DeliveryRecord {
    pub fn from_delivery(d: &Delivery, packet_id: Option<u16>, clock: &WallClock) -> Self {
        DeliveryRecord {
            packet_id,
            qos: d.qos,
            retain: d.retain,
            sub_ids: d.sub_ids.clone(),
            stream: d.stream,
            datagram: d.datagram,
            flow: d.flow.clone(),
            priority: d.priority,
            message: StoredMessage::from_message(&d.msg, clock),
        }
    }

    pub fn into_delivery(self, seq: u64, clock: &WallClock) -> Delivery {
        Delivery {
            msg: std::sync::Arc::new(self.message.into_message(clock)),
            qos: self.qos,
            retain: self.retain,
            sub_ids: self.sub_ids,
            stream: self.stream,
            datagram: self.datagram,
            flow: self.flow,
            priority: self.priority,
            seq,
        }
    }
}

impl WillRecord {
    pub fn from_will(w: &PendingWill, clock: &WallClock) -> WillRecord {
        WillRecord {
            message: StoredMessage::from_message(&w.message, clock),
            delay_secs: w.delay_secs,
            publish_at_ms: w.publish_at.map(|at| clock.to_unix_ms(at)),
        }
    }
}

// ---- encoding ----

struct Writer(Vec<u8>);

impl Writer {
    fn new(kind: u8) -> Writer {
        let mut w = Writer(Vec::with_capacity(64));
        w.0.put_u8(FORMAT);
        w.0.put_u8(kind);
        w
    }
    fn u8(&mut self, v: u8) {
        self.0.put_u8(v);
    }
    fn bool(&mut self, v: bool) {
        self.0.put_u8(u8::from(v));
    }
    fn u16(&mut self, v: u16) {
        self.0.put_u16(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.put_u32(v);
    }
    fn i32(&mut self, v: i32) {
        self.0.put_i32(v);
    }
    fn u64(&mut self, v: u64) {
        self.0.put_u64(v);
    }
    fn len(&mut self, n: usize) {
        // Every length fits: MQTT bounds strings to 65535 bytes and packets to 256 MiB.
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.put_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Writer, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }
    fn message(&mut self, m: &StoredMessage) {
        let msg = &m.message;
        self.str(&msg.topic);
        self.bytes(&msg.payload);
        self.u8(msg.qos as u8);
        self.bool(msg.retain);
        self.opt(m.expires_at_ms, Writer::u64);
        self.opt(msg.origin.as_deref(), Writer::str);
        // The forwarded properties only (see `connect::forwardable`).
        let p = &msg.properties;
        self.opt(p.payload_format_indicator, Writer::u8);
        self.opt(p.content_type.as_deref(), Writer::str);
        self.opt(p.response_topic.as_deref(), Writer::str);
        self.opt(p.correlation_data.as_deref(), Writer::bytes);
        self.len(p.user_properties.len());
        for (k, v) in &p.user_properties {
            self.str(k);
            self.str(v);
        }
    }
    fn stream(&mut self, s: StreamId) {
        self.u64(s.0);
    }
}

pub fn encode_session(s: &SessionRecord) -> Vec<u8> {
    let mut w = Writer::new(KIND_SESSION);
    w.u8(s.version.level());
    w.u32(s.expiry_secs);
    w.opt(s.expires_at_ms, Writer::u64);
    w.len(s.subscriptions.len());
    for (filter, e) in &s.subscriptions {
        w.str(filter);
        w.stream(e.stream);
        w.u8(e.options.qos as u8);
        w.bool(e.options.no_local);
        w.bool(e.options.retain_as_published);
        w.u8(e.options.retain_handling);
        w.opt(e.id, Writer::u32);
        w.bool(e.datagram);
        w.i32(e.priority);
    }
    w.len(s.incoming_qos2.len());
    for (stream, id) in &s.incoming_qos2 {
        w.stream(*stream);
        w.u16(*id);
    }
    w.len(s.released.len());
    for (id, stream) in &s.released {
        w.u16(*id);
        w.stream(*stream);
    }
    w.opt(s.will.as_ref(), |w, will| {
        w.message(&will.message);
        w.u32(will.delay_secs);
        w.opt(will.publish_at_ms, Writer::u64);
    });
    w.opt(s.username.as_deref(), Writer::str);
    w.0
}

pub fn encode_delivery(d: &DeliveryRecord) -> Vec<u8> {
    let mut w = Writer::new(KIND_DELIVERY);
    w.opt(d.packet_id, Writer::u16);
    w.u8(d.qos as u8);
    w.bool(d.retain);
    w.len(d.sub_ids.len());
    for id in &d.sub_ids {
        w.u32(*id);
    }
    w.stream(d.stream);
    w.bool(d.datagram);
    w.opt(d.flow.as_deref(), Writer::str);
    w.i32(d.priority);
    w.message(&d.message);
    w.0
}

pub fn encode_retained(m: &StoredMessage) -> Vec<u8> {
    let mut w = Writer::new(KIND_RETAINED);
    w.message(m);
    w.0
}

// ---- decoding ----

struct Reader<'a>(&'a [u8], u8);

impl<'a> Reader<'a> {
    fn open(data: &'a [u8], kind: u8) -> Result<Reader<'a>, RecordError> {
        let mut r = Reader(data, FORMAT);
        let version = r.u8()?;
        if !(OLDEST_READABLE..=FORMAT).contains(&version) {
            return Err(RecordError::Version(version));
        }
        r.1 = version;
        let found = r.u8()?;
        if found != kind {
            return Err(RecordError::Kind {
                found,
                expected: kind,
            });
        }
        Ok(r)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }
    fn bool(&mut self) -> Result<bool, RecordError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RecordError::Invalid("boolean")),
        }
    }
    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// A count of items at least `min_item` bytes each: bounded by what is left, so a damaged
    /// length cannot make us allocate more than the record holds.
    fn count(&mut self, min_item: usize) -> Result<usize, RecordError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.0.len() {
            return Err(RecordError::Truncated);
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&'a [u8], RecordError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Result<ByteString, RecordError> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(ByteString::from)
            .map_err(|_| RecordError::Invalid("UTF-8 string"))
    }
    fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, RecordError>,
    ) -> Result<Option<T>, RecordError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err(RecordError::Invalid("option tag")),
        }
    }
    fn qos(&mut self) -> Result<QoS, RecordError> {
        QoS::from_u8(self.u8()?).ok_or(RecordError::Invalid("QoS"))
    }
    fn stream(&mut self) -> Result<StreamId, RecordError> {
        Ok(StreamId(self.u64()?))
    }
    fn message(&mut self) -> Result<StoredMessage, RecordError> {
        let topic = self.str()?;
        let payload = Bytes::copy_from_slice(self.bytes()?);
        let qos = self.qos()?;
        let retain = self.bool()?;
        let expires_at_ms = self.opt(Reader::u64)?;
        let origin = self.opt(Reader::str)?;
        let mut values = crate::codec::PropertyValues {
            payload_format_indicator: self.opt(Reader::u8)?,
            content_type: self.opt(Reader::str)?,
            response_topic: self.opt(Reader::str)?,
            correlation_data: self.opt(|r| r.bytes().map(Bytes::copy_from_slice))?,
            ..Default::default()
        };
        let n = self.count(8)?;
        for _ in 0..n {
            values.user_properties.push((self.str()?, self.str()?));
        }
        // No allocation for a message without properties (codec::Properties).
        let properties = if values == crate::codec::PropertyValues::default() {
            crate::codec::Properties::default()
        } else {
            values.into()
        };
        Ok(StoredMessage {
            message: Message {
                topic,
                payload,
                qos,
                retain,
                properties,
                expires_at: None,
                origin,
                received_at: None,
                cluster_seq: None,
            },
            expires_at_ms,
        })
    }
    fn finish(self) -> Result<(), RecordError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RecordError::Trailing(self.0.len()))
        }
    }
}

pub fn decode_session(data: &[u8]) -> Result<SessionRecord, RecordError> {
    let mut r = Reader::open(data, KIND_SESSION)?;
    let version = match r.u8()? {
        3 => ProtocolVersion::V3_1,
        4 => ProtocolVersion::V3_1_1,
        5 => ProtocolVersion::V5,
        _ => return Err(RecordError::Invalid("protocol level")),
    };
    let expiry_secs = r.u32()?;
    let expires_at_ms = r.opt(Reader::u64)?;
    let n = r.count(22)?;
    let mut subscriptions = Vec::with_capacity(n);
    for _ in 0..n {
        let filter = r.str()?;
        let stream = r.stream()?;
        let options = SubscriptionOptions {
            qos: r.qos()?,
            no_local: r.bool()?,
            retain_as_published: r.bool()?,
            retain_handling: r.u8()?,
        };
        if options.retain_handling > 2 {
            return Err(RecordError::Invalid("retain handling"));
        }
        let id = r.opt(Reader::u32)?;
        let datagram = r.bool()?;
        let priority = r.i32()?;
        subscriptions.push((
            filter,
            SubEntry {
                options,
                id,
                stream,
                datagram,
                priority,
            },
        ));
    }
    let n = r.count(10)?;
    let mut incoming_qos2 = Vec::with_capacity(n);
    for _ in 0..n {
        incoming_qos2.push((r.stream()?, r.u16()?));
    }
    let n = r.count(10)?;
    let mut released = Vec::with_capacity(n);
    for _ in 0..n {
        released.push((r.u16()?, r.stream()?));
    }
    let will = r.opt(|r| {
        Ok(WillRecord {
            message: r.message()?,
            delay_secs: r.u32()?,
            publish_at_ms: r.opt(Reader::u64)?,
        })
    })?;
    let username = if r.1 >= 2 { r.opt(Reader::str)? } else { None };
    r.finish()?;
    Ok(SessionRecord {
        version,
        expiry_secs,
        expires_at_ms,
        subscriptions,
        incoming_qos2,
        released,
        will,
        username,
    })
}

pub fn decode_delivery(data: &[u8]) -> Result<DeliveryRecord, RecordError> {
    let mut r = Reader::open(data, KIND_DELIVERY)?;
    let packet_id = r.opt(Reader::u16)?;
    if packet_id == Some(0) {
        return Err(RecordError::Invalid("packet identifier 0"));
    }
    let qos = r.qos()?;
    let retain = r.bool()?;
    let n = r.count(4)?;
    let mut sub_ids = Vec::with_capacity(n);
    for _ in 0..n {
        sub_ids.push(r.u32()?);
    }
    let record = DeliveryRecord {
        packet_id,
        qos,
        retain,
        sub_ids,
        stream: r.stream()?,
        datagram: r.bool()?,
        flow: r.opt(Reader::str)?,
        priority: r.i32()?,
        message: r.message()?,
    };
    r.finish()?;
    Ok(record)
}

pub fn decode_retained(data: &[u8]) -> Result<StoredMessage, RecordError> {
    let mut r = Reader::open(data, KIND_RETAINED)?;
    let m = r.message()?;
    r.finish()?;
    Ok(m)
}
