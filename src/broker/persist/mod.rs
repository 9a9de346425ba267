//! Persistence, sans-IO: the broker records what changed and hands it out as a [`ChangeSet`]
//! of encoded records; the server task writes it to the store (`crate::store`) and only then
//! releases the outputs of the events that caused it. At startup the server reads the store
//! and gives its records to [`Broker::restore`].
//!
//! What is stored: every session that outlives its connection (Session Expiry Interval > 0,
//! or a 3.1.1 clean session 0), and any session with a will (so a will survives a crash), with
//! its subscriptions (and the streams they were made on), incoming QoS 2 packet ids awaiting
//! PUBREL, outgoing QoS 2 flows awaiting PUBCOMP, the will and its delay, and the expiry
//! deadline; one record per queued or inflight delivery (with its packet id while inflight);
//! one record per retained message.
//!
//! Change tracking: any `get_mut` of a session marks it dirty ([`SessionMap`]), so no code
//! path that changes a session can forget to. At [`Broker::take_changes`] each dirty session
//! is compared with what was last written: its session record is written when its bytes
//! changed, and its deliveries are diffed by their sequence number (`Delivery::seq`), so a
//! message is written once when it reaches the session, again only if it changes state
//! (queued to inflight, another stream), and deleted when acknowledged or dropped. The cost
//! per batch is one pass over the dirty sessions' deliveries, not a re-encoding of them.

pub mod record;
mod restore;
mod sessions;

#[cfg(test)]
mod tests;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Instant, SystemTime};

use ahash::AHashMap;
use bytestring::ByteString;

pub use record::WallClock;
pub use restore::{Loaded, RestoreReport};
pub(crate) use sessions::SessionMap;

use super::session::{Inflight, Session};
use super::{Broker, SessionId, SharedMessage, StreamId};
use record::{DeliveryRecord, SessionRecord, StoredMessage, WillRecord};

/// One change to the store. Keys: a session by client identifier, a delivery by client
/// identifier and sequence number, a retained message by topic.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    PutSession {
        client_id: ByteString,
        record: Vec<u8>,
    },
    /// Removes the session record and every delivery of the client identifier.
    DeleteSession {
        client_id: ByteString,
    },
    PutDelivery {
        client_id: ByteString,
        seq: u64,
        record: Vec<u8>,
    },
    DeleteDelivery {
        client_id: ByteString,
        seq: u64,
    },
    PutRetained {
        topic: ByteString,
        record: Vec<u8>,
    },
    DeleteRetained {
        topic: ByteString,
    },
}

/// The changes of one batch, in the order they must be applied.
pub type ChangeSet = Vec<StoreOp>;

/// State of one stored delivery, compared at each flush to see whether it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DeliveryState {
    packet_id: Option<u16>,
    stream: StreamId,
}

/// What the store holds for one session, as last written.
#[derive(Debug)]
struct Stored {
    client_id: ByteString,
    record_digest: u64,
    /// Each stored delivery's state and the flush that last saw it in the session.
    deliveries: AHashMap<u64, (DeliveryState, u64)>,
    /// Flushes of this session so far.
    generation: u64,
}

/// The broker's persistence bookkeeping. Off until [`Broker::enable_persistence`].
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    enabled: bool,
    stored: AHashMap<SessionId, Stored>,
    retained: AHashMap<ByteString, Option<SharedMessage>>,
    next_seq: u64,
}

impl Tracker {
    pub fn retained_changed(&mut self, topic: &ByteString, msg: Option<&SharedMessage>) {
        if self.enabled {
            self.retained.insert(topic.clone(), msg.cloned());
        }
    }

    pub fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}

/// Whether a session is kept in the store: it outlives its connection, or has a will.
pub(crate) fn persistent(s: &Session) -> bool {
    s.expiry_secs > 0 || s.will.is_some()
}

fn digest(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

impl Broker {
    /// Starts recording changes for [`Broker::take_changes`]. Call before any event (after
    /// [`Broker::restore`] is fine too: it enables it).
    pub fn enable_persistence(&mut self) {
        self.persist.enabled = true;
        self.sessions.track(true);
    }

    /// The store operations that bring the store up to date with the broker, encoded (and,
    /// in a cluster, the session states for the other nodes as outputs: cluster_session.rs). `now`
    /// and `wall` are one reading of the monotonic and the wall clock (deadlines are stored as
    /// wall-clock time). Empty when nothing persistent changed.
    pub fn take_changes(&mut self, now: Instant, wall: SystemTime) -> ChangeSet {
        let mut ops = Vec::new();
        let clock = WallClock::new(now, wall);
        let mut dirty = self.sessions.take_dirty();
        dirty.sort_unstable();
        // In a cluster the same changes also go to the cluster's session state.
        self.cluster_checkpoint(&dirty, &clock);
        if !self.persist.enabled {
            return ops;
        }
        // Deletions first: a new session may reuse the client identifier of one that ended.
        for sid in &dirty {
            let keep = self.sessions.get(sid).is_some_and(persistent);
            if !keep {
                if let Some(stored) = self.persist.stored.remove(sid) {
                    ops.push(StoreOp::DeleteSession {
                        client_id: stored.client_id,
                    });
                }
            }
        }
        for sid in &dirty {
            let Some(session) = self.sessions.get(sid).filter(|s| persistent(s)) else {
                continue;
            };
            let first = !self.persist.stored.contains_key(sid);
            let stored = self.persist.stored.entry(*sid).or_insert_with(|| Stored {
                client_id: session.client_id.clone(),
                record_digest: 0,
                deliveries: AHashMap::new(),
                generation: 0,
            });
            let client_id = &session.client_id;
            if first {
                // Clears whatever an earlier session of this client identifier left behind.
                ops.push(StoreOp::DeleteSession {
                    client_id: client_id.clone(),
                });
            }
            let record = record::encode_session(&session_record(session, &clock));
            let d = digest(&record);
            if first || d != stored.record_digest {
                stored.record_digest = d;
                ops.push(StoreOp::PutSession {
                    client_id: client_id.clone(),
                    record,
                });
            }
            diff_deliveries(session, stored, &clock, &mut ops);
        }
        let mut retained: Vec<_> = self.persist.retained.drain().collect();
        retained.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (topic, msg) in retained {
            ops.push(match msg {
                Some(msg) => StoreOp::PutRetained {
                    record: record::encode_retained(&StoredMessage::from_message(&msg, &clock)),
                    topic,
                },
                None => StoreOp::DeleteRetained { topic },
            });
        }
        ops
    }
}

/// Puts deliveries that are new or changed state, deletes those that are gone: one hash lookup
/// per delivery of the session, no allocation, and a pass over the stored ones only when some
/// are gone.
fn diff_deliveries(session: &Session, stored: &mut Stored, clock: &WallClock, ops: &mut ChangeSet) {
    stored.generation += 1;
    let generation = stored.generation;
    let current = session
        .inflight
        .iter()
        .filter_map(|(id, f)| match f {
            Inflight::Published(d) => Some((d, Some(*id))),
            Inflight::Released { .. } => None,
        })
        .chain(session.queue.iter().map(|d| (d, None)));
    let mut seen = 0;
    for (delivery, packet_id) in current {
        seen += 1;
        let state = DeliveryState {
            packet_id,
            stream: delivery.stream,
        };
        let unchanged = match stored.deliveries.get_mut(&delivery.seq) {
            Some((old, at)) => {
                *at = generation;
                std::mem::replace(old, state) == state
            }
            None => {
                stored.deliveries.insert(delivery.seq, (state, generation));
                false
            }
        };
        if !unchanged {
            ops.push(StoreOp::PutDelivery {
                client_id: session.client_id.clone(),
                seq: delivery.seq,
                record: record::encode_delivery(&DeliveryRecord::from_delivery(
                    delivery, packet_id, clock,
                )),
            });
        }
    }
    if stored.deliveries.len() > seen {
        let mut gone = Vec::new();
        stored.deliveries.retain(|seq, (_, at)| {
            let keep = *at == generation;
            if !keep {
                gone.push(*seq);
            }
            keep
        });
        gone.sort_unstable();
        for seq in gone {
            ops.push(StoreOp::DeleteDelivery {
                client_id: session.client_id.clone(),
                seq,
            });
        }
    }
}

pub(crate) fn session_record(s: &Session, clock: &WallClock) -> SessionRecord {
    let mut subscriptions: Vec<_> = s
        .subscriptions
        .iter()
        .map(|((filter, _), e)| (filter.clone(), e.clone()))
        .collect();
    subscriptions.sort_unstable_by(|a, b| (&a.0, a.1.stream).cmp(&(&b.0, b.1.stream)));
    let mut incoming_qos2: Vec<_> = s.incoming_qos2.iter().copied().collect();
    incoming_qos2.sort_unstable();
    let released = s
        .inflight
        .iter()
        .filter_map(|(id, f)| match f {
            Inflight::Released { stream } => Some((*id, *stream)),
            Inflight::Published(_) => None,
        })
        .collect();
    SessionRecord {
        version: s.version,
        expiry_secs: s.expiry_secs,
        expires_at_ms: s
            .expires_at
            .filter(|_| s.conn.is_none())
            .map(|at| clock.to_unix_ms(at)),
        subscriptions,
        incoming_qos2,
        released,
        will: s.will.as_ref().map(|w| WillRecord::from_will(w, clock)),
        username: s.username.clone(),
    }
}
