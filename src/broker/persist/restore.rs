//! Recovery: the store's records back into broker state.
//!
//! A record that does not decode, or a delivery whose session is missing, is reported and
//! skipped; the rest loads. Every restored session is offline: one that was connected when
//! the broker stopped is treated as disconnected at restore time, so its expiry and will
//! delay start then (the moment of a crash is not known). Deadlines stored as wall-clock time
//! become `Instant`s relative to `now`; those already past fire at once.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytestring::ByteString;

use super::record::{self, WallClock};
use super::{digest, DeliveryState, Stored};
use crate::broker::session::{Inflight, PendingWill};
use crate::broker::timers::Timer;
use crate::broker::Broker;

/// Raw records read from the store.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Session records by client identifier.
    pub sessions: Vec<(String, Vec<u8>)>,
    /// Delivery records by client identifier and sequence number, in key order.
    pub deliveries: Vec<(String, u64, Vec<u8>)>,
    /// Retained messages by topic.
    pub retained: Vec<(String, Vec<u8>)>,
}

/// What [`Broker::restore`] loaded, and what it could not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    pub sessions: usize,
    pub deliveries: usize,
    pub retained: usize,
    /// One line per record skipped: its key and why.
    pub skipped: Vec<String>,
}

impl Broker {
    /// Loads what the store held, before any connection. Enables persistence.
    pub fn restore(&mut self, loaded: Loaded, now: Instant, wall: SystemTime) -> RestoreReport {
        self.enable_persistence();
        let clock = WallClock::new(now, wall);
        let mut report = RestoreReport::default();
        for (topic, bytes) in loaded.retained {
            match record::decode_retained(&bytes) {
                Ok(stored) => {
                    let msg = Arc::new(stored.into_message(&clock));
                    if msg.is_expired(now) {
                        self.persist.retained_changed(&msg.topic, None);
                    } else {
                        let topic = msg.topic.clone();
                        self.retained_bytes += super::super::route::retained_size(&msg);
                        self.retained.insert(&topic, msg);
                        report.retained += 1;
                    }
                }
                Err(e) => report.skipped.push(format!("retained {topic:?}: {e}")),
            }
        }
        let mut restored = Vec::new();
        for (client_id, bytes) in loaded.sessions {
            let rec = match record::decode_session(&bytes) {
                Ok(rec) => rec,
                Err(e) => {
                    report.skipped.push(format!("session {client_id:?}: {e}"));
                    continue;
                }
            };
            let client_id = ByteString::from(client_id);
            let sid = self.install_session(client_id.clone(), rec, &clock);
            self.persist.stored.insert(
                sid,
                Stored {
                    client_id,
                    record_digest: digest(&bytes),
                    deliveries: Default::default(),
                    generation: 0,
                },
            );
            restored.push(sid);
            report.sessions += 1;
        }
        for (client_id, seq, bytes) in loaded.deliveries {
            self.persist.next_seq = self.persist.next_seq.max(seq);
            let key = format!("delivery {client_id:?}/{seq}");
            let Some(sid) = self.client_ids.get(client_id.as_str()).copied() else {
                report.skipped.push(format!("{key}: no session record"));
                continue;
            };
            let rec = match record::decode_delivery(&bytes) {
                Ok(rec) => rec,
                Err(e) => {
                    report.skipped.push(format!("{key}: {e}"));
                    continue;
                }
            };
            let (Some(s), Some(stored)) = (
                self.sessions.get_mut(&sid),
                self.persist.stored.get_mut(&sid),
            ) else {
                continue;
            };
            let state = DeliveryState {
                packet_id: rec.packet_id,
                stream: rec.stream,
            };
            let delivery = rec.into_delivery(seq, &clock);
            match state.packet_id {
                Some(id) if s.inflight.contains_key(&id) => {
                    report
                        .skipped
                        .push(format!("{key}: packet identifier {id} used twice"));
                    continue;
                }
                Some(id) => {
                    s.inflight.insert(id, Inflight::Published(delivery));
                }
                None => s.push_queued(delivery),
            }
            stored.deliveries.insert(seq, (state, 0));
            report.deliveries += 1;
        }
        for sid in restored {
            self.restore_offline(sid, now);
        }
        report
    }

    /// Creates a session from its record (subscriptions into the trie, incoming QoS 2 ids,
    /// released flows, will, expiry, the ACL rules of its user): at restore, and when a session
    /// moves here from another node of a cluster (cluster_session.rs).
    pub(crate) fn install_session(
        &mut self,
        client_id: ByteString,
        rec: record::SessionRecord,
        clock: &WallClock,
    ) -> crate::broker::SessionId {
        let sid = self.create_session(client_id.clone(), rec.version);
        // The ACL rules follow the user name of the last connection (an ACL installed
        // later resolves them again, see access.rs).
        let rules = self.rules_for(rec.username.as_deref(), &client_id);
        for (filter, entry) in &rec.subscriptions {
            self.insert_into_trie(sid, filter, entry.clone());
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return sid;
        };
        s.expiry_secs = rec.expiry_secs;
        s.username = rec.username;
        s.rules = rules;
        for (filter, entry) in rec.subscriptions {
            s.subscriptions.insert((filter, entry.stream), entry);
        }
        s.incoming_qos2 = rec.incoming_qos2.into_iter().collect();
        for (id, stream) in rec.released {
            s.inflight.insert(id, Inflight::Released { stream });
        }
        s.will = rec.will.map(|w| PendingWill {
            message: Arc::new(w.message.into_message(clock)),
            delay_secs: w.delay_secs,
            publish_at: w.publish_at_ms.map(|ms| clock.to_instant(ms)),
        });
        s.expires_at = rec.expires_at_ms.map(|ms| clock.to_instant(ms));
        sid
    }

    /// Starts the clocks of a restored session as for a connection that just ended
    /// (`close.rs`, `drop_connection`), keeping deadlines that were already running.
    pub(crate) fn restore_offline(&mut self, sid: crate::broker::SessionId, now: Instant) {
        let clustered = self.is_clustered();
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if clustered {
            // A cluster node's wills are the cluster's: the restarted node takes them from the
            // wills bucket like any other node, so each is published once (cluster_wills.rs).
            s.will = None;
        }
        // The store keeps no send order across PUBREC (a released flow has no delivery record):
        // resend in packet identifier order [MQTT-4.4.0-1], as ids are handed out ascending.
        s.inflight.order_by_packet_id();
        let expiry = s.expiry_secs;
        if s.expires_at.is_none() && expiry != u32::MAX {
            s.expires_at = Some(now + Duration::from_secs(u64::from(expiry)));
        }
        if let Some(at) = s.expires_at {
            self.timers.schedule(at, Timer::SessionExpiry(sid));
        }
        if let Some(will) = s.will.as_mut() {
            // [MQTT-3.1.3-9] Will Delay Interval or session end, whichever first.
            let at = *will.publish_at.get_or_insert_with(|| {
                now + Duration::from_secs(u64::from(will.delay_secs.min(expiry)))
            });
            self.timers.schedule(at, Timer::Will(sid));
        }
    }
}
