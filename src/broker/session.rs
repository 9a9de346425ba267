//! Session state (4.1): what survives a connection when the session does.
//!
//! Subscriptions, outgoing QoS 1/2 messages inflight and queued, incoming QoS 2 packet ids that
//! await PUBREL, the pending will and the expiry. The network connection, if any, is only
//! referenced: a session may be served by one TCP socket, one QUIC stream or several.

use std::collections::VecDeque;
use std::time::Instant;

use ahash::{AHashMap, AHashSet};
use bytestring::ByteString;

use super::types::{ConnId, SharedMessage, StreamId};
use crate::codec::{ProtocolVersion, QoS, SubscriptionOptions};

/// One subscription of a session, as stored in the session and in the trie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubEntry {
    pub options: SubscriptionOptions,
    /// Subscription Identifier (3.8.2.1.2).
    pub id: Option<u32>,
    /// The stream the subscription was made on: deliveries go there.
    pub stream: StreamId,
    /// QoS 0 deliveries of this subscription may go in QUIC datagrams (SUBSCRIBE user
    /// property `quic-datagrams: on`, see `proto-ext/datagrams.md`).
    pub datagram: bool,
    /// Send priority of this subscription's server stream (SUBSCRIBE user property
    /// `quic-priority`), see `proto-ext/flows.md`.
    pub priority: i32,
}

/// One session's matching subscriptions folded into one delivery (3.3.4): the highest
/// granted QoS, Retain As Published if any asks for it, every subscription identifier.
#[derive(Debug)]
pub struct Matched {
    flow: bytestring::ByteString,
    priority: i32,
    qos: QoS,
    retain_as_published: bool,
    sub_ids: Vec<u32>,
    stream: StreamId,
    datagram: bool,
}

impl Matched {
    pub fn new(filter: &ByteString, entry: &SubEntry) -> Matched {
        Matched {
            qos: QoS::AtMostOnce,
            retain_as_published: false,
            sub_ids: Vec::new(),
            stream: entry.stream,
            datagram: true,
            flow: filter.clone(),
            priority: entry.priority,
        }
    }

    pub fn add(&mut self, entry: &SubEntry) {
        self.datagram &= entry.datagram;
        self.priority = self.priority.max(entry.priority);
        self.qos = self.qos.max(entry.options.qos);
        self.retain_as_published |= entry.options.retain_as_published;
        self.sub_ids.extend(entry.id);
    }

    /// The QoS the message goes out at to this session.
    pub fn qos(&self, msg: &SharedMessage) -> QoS {
        msg.qos.min(self.qos)
    }

    /// The RETAIN flag of the copy sent to this session.
    fn retain(&self, msg: &SharedMessage) -> bool {
        // [MQTT-3.3.1-12] [MQTT-3.3.1-13] Retain As Published.
        msg.retain && self.retain_as_published
    }

    /// The delivery as sending it needs it, borrowed: a QoS 0 message sent at once never
    /// becomes a [`Delivery`] (no reference count of the message per subscriber).
    pub fn outgoing<'a>(&'a self, msg: &'a SharedMessage) -> Outgoing<'a> {
        Outgoing {
            msg,
            qos: self.qos(msg),
            retain: self.retain(msg),
            sub_ids: &self.sub_ids,
            stream: self.stream,
            datagram: self.datagram,
            flow: Some(&self.flow),
            priority: self.priority,
        }
    }

    pub fn into_delivery(self, msg: &SharedMessage) -> Delivery {
        Delivery {
            msg: msg.clone(),
            qos: self.qos(msg),
            retain: self.retain(msg),
            sub_ids: self.sub_ids,
            stream: self.stream,
            datagram: self.datagram,
            flow: Some(self.flow),
            priority: self.priority,
            seq: 0,
        }
    }
}

/// A message on its way to one subscriber: the shared message plus what is particular to this
/// subscriber (granted QoS, retain flag to send, matching subscription identifiers).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub msg: SharedMessage,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    pub stream: StreamId,
    /// Every matching subscription asked for datagrams.
    pub datagram: bool,
    /// The filter of a matching subscription (the flow key of per-subscription streams) and
    /// the highest priority among the matching subscriptions.
    pub flow: Option<bytestring::ByteString>,
    pub priority: i32,
    /// Identity of this delivery in the store (unique per broker run and store), given when it
    /// reaches its session (`Broker::deliver`); 0 before.
    pub seq: u64,
}

/// What turning a message into a PUBLISH for one subscriber reads (route.rs `Wire::publish`),
/// borrowed from a [`Delivery`] or from a [`Matched`] fold.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub msg: &'a SharedMessage,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: &'a [u32],
    pub stream: StreamId,
    pub datagram: bool,
    pub flow: Option<&'a bytestring::ByteString>,
    pub priority: i32,
}

impl Delivery {
    pub fn outgoing(&self) -> Outgoing<'_> {
        Outgoing {
            msg: &self.msg,
            qos: self.qos,
            retain: self.retain,
            sub_ids: &self.sub_ids,
            stream: self.stream,
            datagram: self.datagram,
            flow: self.flow.as_ref(),
            priority: self.priority,
        }
    }

    /// What it counts against `max_queued_bytes`: the message's payload and topic (shared
    /// between the queues that hold it, so this over-counts, on the safe side).
    pub fn size(&self) -> usize {
        self.msg.payload.len() + self.msg.topic.len()
    }
}

/// Outgoing QoS 1/2 state per packet identifier (4.3.2, 4.3.3).
#[derive(Debug, Clone)]
pub enum Inflight {
    /// PUBLISH sent, PUBACK or PUBREC awaited.
    Published(Delivery),
    /// PUBREC received and PUBREL sent, PUBCOMP awaited.
    Released { stream: StreamId },
}

/// Outgoing QoS 1/2 flows by packet identifier, remembering the order they were sent in.
///
/// An open-addressing table indexed by the packet identifier itself (linear probing, at most
/// half full, backward-shift deletion), not a general hash map: the broker hands out packet
/// identifiers in sequence, so the flows in flight sit side by side in a small array
/// (100 in flight: 256 slots) that the PUBACK path finds without a cache miss, where a hashed
/// map scattered them over a table that, with a hundred busy subscribers, no longer fits in
/// the CPU cache (the lookup was 5-9% of the broker's time in fan-out QoS 1). Retransmission
/// [MQTT-4.4.0-1] and stream rebinding want send order, which the sequence number gives
/// (packet ids wrap).
#[derive(Debug, Default)]
pub struct Inflights {
    /// Empty, or a power of two at least twice `len`.
    slots: Vec<Option<InflightSlot>>,
    len: usize,
    /// Entries not in their home slot. While there are none (the usual case: identifiers
    /// handed out in sequence), a removal has nothing to move back.
    displaced: usize,
    next_seq: u64,
    /// Most flows at once since the table was last allocated: when it is given back, the next
    /// one starts at the size this needed instead of growing from 8 again.
    peak: usize,
    /// Slots the next table starts with (0: the smallest).
    regrow: usize,
    /// Found empty by the last [`Inflights::sweep`] (and nothing inserted since): the next
    /// one gives the table back.
    idle: bool,
}

#[derive(Debug)]
struct InflightSlot {
    id: u16,
    seq: u64,
    flow: Inflight,
}

/// Tables up to this many slots are kept however long they stay empty; larger ones are given
/// back once they stayed empty from one [`Inflights::sweep`] to the next.
const KEEP_SLOTS: usize = 64;

// Open addressing: every index is `& self.mask()` of a power-of-two table length (or comes from
// `find`, which returns such an index), so indexing `slots` cannot go out of bounds.
#[allow(clippy::indexing_slicing)]
impl Inflights {
    pub fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// The slot holding `id`.
    fn find(&self, id: u16) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = usize::from(id) & mask;
        // Terminates: at most half the slots are full.
        loop {
            match &self.slots[i] {
                None => return None,
                Some(slot) if slot.id == id => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    pub fn contains_key(&self, id: &u16) -> bool {
        self.find(*id).is_some()
    }

    pub fn get(&self, id: &u16) -> Option<&Inflight> {
        let i = self.find(*id)?;
        self.slots[i].as_ref().map(|slot| &slot.flow)
    }

    /// Adds a flow, or replaces one keeping its place in the send order (PUBREC -> PUBREL).
    pub fn insert(&mut self, id: u16, inflight: Inflight) {
        if let Some(i) = self.find(id) {
            if let Some(slot) = self.slots[i].as_mut() {
                slot.flow = inflight;
            }
            return;
        }
        self.insert_new(id, inflight);
    }

    /// Adds a flow under an identifier not in use (`Session::allocate_packet_id` checked it)
    /// and returns it as stored, in one probe: the send path's insert, then read it back to
    /// encode the PUBLISH from it.
    pub fn insert_new(&mut self, id: u16, inflight: Inflight) -> Option<&Inflight> {
        debug_assert!(self.find(id).is_none(), "packet identifier {id} in use");
        if (self.len + 1) * 2 > self.slots.len() {
            let slots = if self.slots.is_empty() {
                std::mem::take(&mut self.regrow)
            } else {
                self.slots.len() * 2
            };
            self.resize(slots.max(8));
        }
        let i = self.place(InflightSlot {
            id,
            seq: self.next_seq,
            flow: inflight,
        });
        self.next_seq += 1;
        self.len += 1;
        self.peak = self.peak.max(self.len);
        self.idle = false;
        self.slots[i].as_ref().map(|slot| &slot.flow)
    }

    /// Puts `slot` in the first free slot from its home (there is one: at most half full);
    /// returns where.
    fn place(&mut self, slot: InflightSlot) -> usize {
        let mask = self.mask();
        let home = usize::from(slot.id) & mask;
        let mut i = home;
        while self.slots[i].is_some() {
            i = (i + 1) & mask;
        }
        if i != home {
            self.displaced += 1;
        }
        self.slots[i] = Some(slot);
        i
    }

    fn resize(&mut self, slots: usize) {
        let old = std::mem::take(&mut self.slots);
        self.displaced = 0;
        self.slots.resize_with(slots, || None);
        for slot in old.into_iter().flatten() {
            self.place(slot);
        }
    }

    /// Empties slot `i` and moves later entries of its probe run back, so that every entry
    /// stays reachable from its home slot without tombstones.
    fn remove_at(&mut self, mut i: usize) -> Option<Inflight> {
        let removed = self.slots[i].take()?;
        self.len -= 1;
        let mask = self.mask();
        if usize::from(removed.id) & mask != i {
            self.displaced -= 1;
        }
        let mut j = i;
        while self.displaced > 0 {
            j = (j + 1) & mask;
            let Some(slot) = &self.slots[j] else { break };
            let home = usize::from(slot.id) & mask;
            // The entry at j may move to the hole at i unless its home lies cyclically in
            // (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                if home == i {
                    self.displaced -= 1;
                }
                self.slots[i] = self.slots[j].take();
                i = j;
            }
        }
        Some(removed.flow)
    }

    /// Whether the table holds memory (tests).
    #[cfg(test)]
    pub fn allocated(&self) -> bool {
        !self.slots.is_empty()
    }

    /// The broker's periodic pass (`Timer::SweepInflights`): a large table found empty twice
    /// in a row, with nothing inserted in between, is given back. An emptied table used to be
    /// freed at once, and a QoS 1 subscriber whose window drains and refills (fan-out at full
    /// speed) allocated and cleared its 26 KB table every window (~1.5 % of the broker). Now a
    /// busy session keeps it and an idle one gives it back within two sweeps.
    pub fn sweep(&mut self) {
        if self.len > 0 || self.slots.len() <= KEEP_SLOTS {
            self.idle = false;
            return;
        }
        if !std::mem::replace(&mut self.idle, true) {
            return;
        }
        self.idle = false;
        self.slots = Vec::new();
        self.displaced = 0;
        // At most half full: what the peak needed, not what a one-off burst grew to.
        self.regrow = (std::mem::take(&mut self.peak) * 2).next_power_of_two();
    }

    /// Removes the flow `id` if `ends` says the acknowledgement ends it, in one lookup (the
    /// PUBACK path); returns what was there: `Ok` removed, `Err` left in place, `None` absent.
    pub fn take_if(
        &mut self,
        id: u16,
        ends: impl FnOnce(&Inflight) -> bool,
    ) -> Option<Result<Inflight, ()>> {
        let i = self.find(id)?;
        let slot = self.slots[i].as_ref()?;
        if !ends(&slot.flow) {
            return Some(Err(()));
        }
        self.remove_at(i).map(Ok)
    }

    pub fn remove(&mut self, id: &u16) -> Option<Inflight> {
        let i = self.find(*id)?;
        self.remove_at(i)
    }

    /// Makes the send order the packet identifier order (for flows restored from the store,
    /// which does not keep the order of flows past PUBREC).
    pub fn order_by_packet_id(&mut self) {
        let mut all: Vec<&mut InflightSlot> = self.slots.iter_mut().flatten().collect();
        all.sort_unstable_by_key(|slot| slot.id);
        for (seq, slot) in all.into_iter().enumerate() {
            slot.seq = seq as u64;
        }
        self.next_seq = self.len as u64;
    }

    /// Every flow, in the order it was first sent.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&u16, &mut Inflight)> {
        let mut all: Vec<&mut InflightSlot> = self.slots.iter_mut().flatten().collect();
        all.sort_unstable_by_key(|slot| slot.seq);
        all.into_iter().map(|slot| (&slot.id, &mut slot.flow))
    }

    /// Every flow, in the order it was first sent.
    pub fn iter(&self) -> impl Iterator<Item = (&u16, &Inflight)> {
        let mut all: Vec<&InflightSlot> = self.slots.iter().flatten().collect();
        all.sort_unstable_by_key(|slot| slot.seq);
        all.into_iter().map(|slot| (&slot.id, &slot.flow))
    }
}

/// A will waiting for its delay to pass or its session to end (3.1.3.2.2).
#[derive(Debug, Clone)]
pub struct PendingWill {
    pub message: SharedMessage,
    pub delay_secs: u32,
    /// Set once the connection is gone.
    pub publish_at: Option<Instant>,
}

#[derive(Debug)]
pub struct Session {
    pub client_id: ByteString,
    pub conn: Option<ConnId>,
    pub version: ProtocolVersion,
    /// By full filter string (shared ones with their `$share/group/` prefix) and the stream that
    /// made the subscription.
    pub subscriptions: AHashMap<(ByteString, StreamId), SubEntry>,
    pub inflight: Inflights,
    /// Only through `push_queued` / `pop_queued` / `unpop_queued`, which keep `queued_bytes`.
    pub queue: VecDeque<Delivery>,
    /// Payload and topic bytes of `queue` (`limits.max_queued_bytes`).
    pub queued_bytes: usize,
    /// Incoming QoS 2 packet ids awaiting PUBREL, per stream (ids are per stream on QUIC).
    pub incoming_qos2: AHashSet<(StreamId, u16)>,
    next_packet_id: u16,
    /// Session Expiry Interval in seconds; u32::MAX never expires.
    pub expiry_secs: u32,
    /// When a disconnected session expires.
    pub expires_at: Option<Instant>,
    /// The will of the current (or last) connection.
    pub will: Option<PendingWill>,
    /// The user name of the current (or last) connection (`None`: anonymous).
    pub username: Option<ByteString>,
    /// Its ACL rules, resolved at CONNECT; `None` without an ACL (see access.rs).
    pub rules: Option<std::sync::Arc<crate::auth::ClientRules>>,
    /// Already in the session map's dirty set (persistence change tracking): a session
    /// borrowed mutably many times between two commits is added once, by a flag check.
    pub(crate) dirty_marked: bool,
    /// In a cluster, a session that moved here got the stream's messages up to this sequence
    /// from a replay; later ones come live (cluster_session.rs). 0 otherwise.
    pub cluster_floor: u64,
}

impl Session {
    pub fn new(client_id: ByteString, version: ProtocolVersion) -> Session {
        Session {
            client_id,
            conn: None,
            version,
            subscriptions: AHashMap::new(),
            inflight: Inflights::default(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            incoming_qos2: AHashSet::new(),
            next_packet_id: 1,
            expiry_secs: 0,
            expires_at: None,
            will: None,
            username: None,
            rules: None,
            dirty_marked: false,
            cluster_floor: 0,
        }
    }

    /// Whether the session already got `msg` from the replay of the cluster's stream when it
    /// moved here from another node (cluster_session.rs): then it is not delivered again.
    pub fn replayed(&self, msg: &super::Message) -> bool {
        msg.cluster_seq.is_some_and(|seq| seq <= self.cluster_floor)
    }

    pub fn push_queued(&mut self, delivery: Delivery) {
        self.queued_bytes += delivery.size();
        self.queue.push_back(delivery);
    }

    pub fn pop_queued(&mut self) -> Option<Delivery> {
        let delivery = self.queue.pop_front()?;
        self.queued_bytes -= delivery.size();
        Some(delivery)
    }

    /// Puts back what `pop_queued` just took.
    pub fn unpop_queued(&mut self, delivery: Delivery) {
        self.queued_bytes += delivery.size();
        self.queue.push_front(delivery);
    }

    /// A free packet identifier for an outgoing QoS 1/2 PUBLISH, or `None` when all 65535 are
    /// in use [MQTT-2.2.1-4].
    pub fn allocate_packet_id(&mut self) -> Option<u16> {
        if self.inflight.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.inflight.contains_key(&id) {
                return Some(id);
            }
        }
    }
}

#[cfg(test)]
mod inflights_tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::{Inflight, Inflights};
    use crate::broker::StreamId;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16),
        Remove(u16),
        TakeIf(u16, bool),
        Get(u16),
        OrderById,
    }

    fn id() -> impl Strategy<Value = u16> {
        // Mostly a narrow range (collisions, probe runs that wrap around the table), some
        // anywhere (wrapping identifiers).
        prop_oneof![4 => 1u16..300, 1 => 1u16..=u16::MAX]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => id().prop_map(Op::Insert),
            2 => id().prop_map(Op::Remove),
            2 => (id(), any::<bool>()).prop_map(|(i, b)| Op::TakeIf(i, b)),
            1 => id().prop_map(Op::Get),
            1 => Just(Op::OrderById),
        ]
    }

    /// The flow records which stream it was "sent" on, so replacements are visible.
    fn flow(tag: u64) -> Inflight {
        Inflight::Released {
            stream: StreamId(tag),
        }
    }

    fn tag(f: &Inflight) -> u64 {
        match f {
            Inflight::Released { stream } => stream.0,
            Inflight::Published(_) => unreachable!(),
        }
    }

    proptest! {
        /// Agrees with a hash map plus an insertion counter, operation by operation, and
        /// iterates in first-insertion order.
        #[test]
        fn behaves_like_a_map_in_send_order(ops in proptest::collection::vec(op(), 1..400)) {
            let mut table = Inflights::default();
            let mut model: HashMap<u16, (u64, u64)> = HashMap::new();
            let mut seq = 0u64;
            for (n, op) in ops.into_iter().enumerate() {
                let n = n as u64;
                match op {
                    Op::Insert(id) if !model.contains_key(&id) && n.is_multiple_of(2) => {
                        // The send path's insert of an identifier not in use.
                        prop_assert_eq!(table.insert_new(id, flow(n)).map(tag), Some(n));
                        model.insert(id, (seq, n));
                        seq += 1;
                    }
                    Op::Insert(id) => {
                        table.insert(id, flow(n));
                        match model.get_mut(&id) {
                            Some(entry) => entry.1 = n,
                            None => {
                                model.insert(id, (seq, n));
                                seq += 1;
                            }
                        }
                    }
                    Op::Remove(id) => {
                        let got = table.remove(&id).map(|f| tag(&f));
                        prop_assert_eq!(got, model.remove(&id).map(|e| e.1));
                    }
                    Op::TakeIf(id, ends) => {
                        let got = table.take_if(id, |_| ends).map(|r| r.map(|f| tag(&f)));
                        let want = match model.get(&id) {
                            None => None,
                            Some(_) if !ends => Some(Err(())),
                            Some(_) => model.remove(&id).map(|e| Ok(e.1)),
                        };
                        prop_assert_eq!(got, want);
                    }
                    Op::Get(id) => {
                        prop_assert_eq!(table.get(&id).map(tag), model.get(&id).map(|e| e.1));
                    }
                    Op::OrderById => {
                        table.order_by_packet_id();
                        let mut ids: Vec<u16> = model.keys().copied().collect();
                        ids.sort_unstable();
                        for (i, id) in ids.into_iter().enumerate() {
                            if let Some(e) = model.get_mut(&id) {
                                e.0 = i as u64;
                            }
                        }
                        seq = model.len() as u64;
                    }
                }
                prop_assert_eq!(table.len(), model.len());
                let mask = table.slots.len().wrapping_sub(1);
                let displaced = table
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| s.as_ref().is_some_and(|s| usize::from(s.id) & mask != *i))
                    .count();
                prop_assert_eq!(table.displaced, displaced);
                for id in model.keys() {
                    prop_assert!(table.contains_key(id));
                }
                let order: Vec<(u16, u64)> = table.iter().map(|(id, f)| (*id, tag(f))).collect();
                let mut want: Vec<(u64, u16, u64)> =
                    model.iter().map(|(id, (s, t))| (*s, *id, *t)).collect();
                want.sort_unstable();
                let want: Vec<(u16, u64)> = want.into_iter().map(|(_, id, t)| (id, t)).collect();
                prop_assert_eq!(order, want);
            }
        }
    }

    #[test]
    fn an_emptied_large_table_gives_its_memory_back() {
        let mut table = Inflights::default();
        for id in 1..=200 {
            table.insert(id, flow(0));
        }
        assert!(table.slots.len() >= 400);
        for id in 1..=200 {
            assert!(table.remove(&id).is_some());
        }
        assert_eq!(table.len(), 0);
        assert!(
            !table.slots.is_empty(),
            "kept until a sweep finds it idle twice"
        );
        table.sweep();
        assert!(
            !table.slots.is_empty(),
            "one sweep: maybe between two windows"
        );
        table.sweep();
        assert!(table.slots.is_empty());
    }

    #[test]
    fn a_table_in_use_between_two_sweeps_is_kept() {
        let mut table = Inflights::default();
        for id in 1..=100 {
            table.insert_new(id, flow(0));
        }
        for id in 1..=100 {
            table.remove(&id);
        }
        table.sweep();
        // A window refilled and drained again between the sweeps: still busy.
        table.insert_new(101, flow(0));
        table.remove(&101);
        table.sweep();
        assert_eq!(table.slots.len(), 256);
        table.sweep();
        assert!(table.slots.is_empty());
    }

    #[test]
    fn a_refill_starts_at_the_size_the_last_peak_needed() {
        let mut table = Inflights::default();
        let fill = |table: &mut Inflights, ids: std::ops::RangeInclusive<u16>| {
            for id in ids {
                table.insert_new(id, flow(0));
            }
        };
        let give_back = |table: &mut Inflights| {
            table.sweep();
            table.sweep();
            assert!(table.slots.is_empty());
        };
        fill(&mut table, 1..=100);
        assert_eq!(table.slots.len(), 256);
        for id in 1..=100 {
            table.remove(&id);
        }
        give_back(&mut table);
        // The next window's first flow gets the whole table at once.
        fill(&mut table, 101..=101);
        assert_eq!(table.slots.len(), 256);
        fill(&mut table, 102..=200);
        assert_eq!(table.slots.len(), 256);
        for id in 101..=200 {
            table.remove(&id);
        }
        // One flow at a time from then on: that window's peak was 1, so after it the table
        // is back to the smallest.
        give_back(&mut table);
        fill(&mut table, 201..=201);
        assert_eq!(table.slots.len(), 256);
        table.remove(&201);
        give_back(&mut table);
        fill(&mut table, 202..=202);
        assert_eq!(table.slots.len(), 8);
    }
}
