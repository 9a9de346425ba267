//! The wills bucket (`PREFIX-wills`, proto-ext/cluster.md "Wills"): the will of each client
//! connected to a node, so that another node publishes it if that node dies.
//!
//! Key: the client id encoded like a topic (as in the sessions bucket). Value: a record of
//! the node that holds the client, the revision of its claim in the sessions bucket, the will
//! delay, and the will message (the wire form of messages between nodes). The node that holds
//! the client writes it after its claim and deletes it when the will is published or
//! discarded there; writes are compare-and-set, so a node that was taken over cannot replace a
//! newer claim's record.
//!
//! When a node is declared dead (liveness.rs), every survivor walks the bucket and races to
//! delete each of its records with a delete that expects the record's revision: the one
//! whose delete succeeds owns the will. It publishes it after the will delay, and only if
//! the client's key in the sessions bucket still holds the claim the will was written under
//! (checked again after the delay): a client that connected to another node meanwhile has a
//! newer claim, and gets no will.

use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::kv;
use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::subject::{decode_topic, encode_topic, MAX_ENCODED};
use crate::broker::{decode_message, encode_message, ClusterWill, LivenessEvent};
use crate::handoff::{ClusterEvent, Event};

/// Version of the record layout.
const VERSION: u8 = 1;

/// Compare-and-set attempts at writing a record.
const ATTEMPTS: usize = 4;

/// One record of the wills bucket.
#[derive(Debug, PartialEq)]
pub(super) struct Record {
    pub node: String,
    pub claim_revision: u64,
    pub delay_secs: u32,
    /// The will message, as [`encode_message`] wrote it.
    pub message: Bytes,
}

impl Record {
    pub(super) fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(14 + self.node.len() + self.message.len());
        b.put_u8(VERSION);
        // Node names are at most 64 bytes (config).
        b.put_u8(u8::try_from(self.node.len()).unwrap_or(u8::MAX));
        b.put_slice(self.node.as_bytes());
        b.put_u64(self.claim_revision);
        b.put_u32(self.delay_secs);
        b.put_slice(&self.message);
        b.freeze()
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Record> {
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION {
            return None;
        }
        let (&len, rest) = rest.split_first()?;
        let (node, rest) = rest.split_at_checked(usize::from(len))?;
        let (revision, rest) = rest.split_at_checked(8)?;
        let (delay, message) = rest.split_at_checked(4)?;
        Some(Record {
            node: std::str::from_utf8(node).ok()?.to_string(),
            claim_revision: u64::from_be_bytes(revision.try_into().ok()?),
            delay_secs: u32::from_be_bytes(delay.try_into().ok()?),
            message: Bytes::copy_from_slice(message),
        })
    }
}

/// Writes (`Some`) or removes (`None`) the will of `client_id`, held here under the claim
/// `claim_revision` (`None`: the claim failed, nothing is written).
pub(super) async fn set(
    store: &kv::Store,
    node: &str,
    client_id: &str,
    claim_revision: Option<u64>,
    will: Option<ClusterWill>,
) {
    let Some(will) = will else {
        clear_own(store, node, client_id).await;
        return;
    };
    let (Some(claim_revision), key) = (claim_revision, encode_topic(client_id)) else {
        return;
    };
    if key.len() > MAX_ENCODED {
        return;
    }
    let value = Record {
        node: node.to_string(),
        claim_revision,
        delay_secs: will.delay_secs,
        message: Bytes::from(encode_message(
            &will.message,
            Instant::now(),
            SystemTime::now(),
        )),
    }
    .encode();
    for _ in 0..ATTEMPTS {
        let written = match store.entry(key.clone()).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put => {
                let newer =
                    Record::decode(&e.value).is_some_and(|r| r.claim_revision > claim_revision);
                if newer {
                    return; // A later claim (on another node) wrote its own.
                }
                store.update(&key, value.clone(), e.revision).await.is_ok()
            }
            Ok(Some(e)) => store.update(&key, value.clone(), e.revision).await.is_ok(),
            Ok(None) => store.create(&key, value.clone()).await.is_ok(),
            Err(e) => {
                tracing::warn!(error = %e, client = client_id, "cluster wills bucket");
                false
            }
        };
        if written {
            return;
        }
    }
    tracing::warn!(
        client = client_id,
        "will not written to the cluster's wills bucket"
    );
}

/// Removes the will record of `client_id` if this node wrote it.
pub(super) async fn clear_own(store: &kv::Store, node: &str, client_id: &str) {
    let key = encode_topic(client_id);
    if key.len() > MAX_ENCODED {
        return;
    }
    if let Ok(Some(e)) = store.entry(key.clone()).await {
        let ours = e.operation == kv::Operation::Put
            && Record::decode(&e.value).is_some_and(|r| r.node == node);
        if ours {
            let _ = store.delete_expect_revision(&key, Some(e.revision)).await;
        }
    }
}

/// What the survivors need to take a dead node's wills.
#[derive(Clone)]
pub(super) struct Heirs {
    pub wills: kv::Store,
    pub sessions: kv::Store,
    pub events: mpsc::Sender<Event>,
}

impl Heirs {
    /// Races for every will record of `dead` (module documentation); the wills won are
    /// published after their delay. The number of wills won.
    pub(super) async fn take_wills_of(&self, dead: &str) -> usize {
        let mut keys = match self.wills.keys().await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, node = dead, "cannot list the cluster's wills");
                return 0;
            }
        };
        let mut won = 0;
        while let Some(key) = keys.next().await {
            let Ok(key) = key else { continue };
            let Ok(Some(entry)) = self.wills.entry(key.clone()).await else {
                continue;
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let Some(record) = Record::decode(&entry.value).filter(|r| r.node == dead) else {
                continue;
            };
            let still_its = self.holds(&key, &record).await;
            // The race: one node deletes the record, the others' deletes fail.
            if self
                .wills
                .delete_expect_revision(&key, Some(entry.revision))
                .await
                .is_err()
            {
                continue;
            }
            if !still_its {
                continue; // Connected elsewhere since: no will; the record is just gone.
            }
            won += 1;
            let heirs = self.clone();
            tokio::spawn(async move { heirs.publish_later(key, record).await });
        }
        won
    }

    /// Whether the sessions bucket still holds the claim `record` was written under.
    async fn holds(&self, key: &str, record: &Record) -> bool {
        match self.sessions.entry(key.to_string()).await {
            Ok(Some(e)) => {
                e.operation == kv::Operation::Put
                    && e.revision == record.claim_revision
                    && e.value.as_ref() == record.node.as_bytes()
            }
            Ok(None) => false,
            Err(e) => {
                // Unknown: publishing a will for a live client is the worse mistake.
                tracing::warn!(error = %e, key, "cluster sessions bucket: will not published");
                false
            }
        }
    }

    async fn publish_later(self, key: String, record: Record) {
        if record.delay_secs > 0 {
            tokio::time::sleep(Duration::from_secs(u64::from(record.delay_secs))).await;
            // [MQTT-3.1.3-9] a new connection within the delay cancels the will.
            if !self.holds(&key, &record).await {
                return;
            }
        }
        let Some(client_id) = decode_topic(&key) else {
            return;
        };
        let message = match decode_message(&record.message, Instant::now(), SystemTime::now()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, client = %client_id, "undecodable will dropped");
                return;
            }
        };
        let event = LivenessEvent::Will {
            client_id: ByteString::from(client_id),
            message: Box::new(message),
        };
        let _ = self
            .events
            .send(Event::Cluster(ClusterEvent::Liveness(event)))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let r = Record {
            node: "node-1".into(),
            claim_revision: 42,
            delay_secs: 7,
            message: Bytes::from_static(b"\x01message"),
        };
        let bytes = r.encode();
        assert_eq!(Record::decode(&bytes), Some(r));
        assert_eq!(Record::decode(&[]), None);
        assert_eq!(Record::decode(&[2, 0]), None, "unknown version");
        assert_eq!(Record::decode(bytes.get(..10).unwrap_or_default()), None);
    }
}
