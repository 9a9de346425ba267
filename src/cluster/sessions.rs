//! One live connection per client id across the cluster (README "Cluster").
//!
//! The sessions bucket (`PREFIX-sessions`) maps each client id (encoded like a topic) to the
//! node that holds its connection. When a client connects, its node claims the key with a
//! compare-and-set on the key's revision (create if absent, update from the revision read);
//! when that succeeds and another node held the key, that node is told on its control subject
//! (`PREFIX.ctl.NODE`, header `Mqttd-Revision`: the new revision) and closes its connection
//! with DISCONNECT 0x8E. Two nodes claiming at once cannot both win: the loser's update fails,
//! it reads again and takes over from the winner (the last CONNECT wins, as on one node).
//!
//! Fencing: a node gives a key up (its client's session ended) only with a delete that
//! expects the revision of its own claim, so a node that was taken over, slow or cut off,
//! cannot remove the new owner's claim; and a takeover notice older than the node's own
//! latest claim is ignored.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::subject::{decode_topic, encode_topic, MAX_ENCODED};
use super::Names;
use crate::handoff::{ClusterEvent, Event};

/// Header of a takeover notice: the revision of the claim that took the client over.
const REVISION_HEADER: &str = "Mqttd-Revision";

/// Attempts at a claim that keeps losing compare-and-set races.
const CLAIM_ATTEMPTS: usize = 8;

/// What the broker asks of the sessions task.
pub(super) enum SessionOp {
    Claim {
        client_id: ByteString,
        claim: u64,
    },
    Release {
        client_id: ByteString,
    },
    /// The will of a client held here was set or went (wills.rs).
    Will {
        client_id: ByteString,
        will: Option<crate::broker::ClusterWill>,
    },
}

/// This node's claim of a client id: the broker's claim number and the key's revision.
#[derive(Clone, Copy)]
struct Held {
    claim: u64,
    revision: u64,
}

pub(super) async fn run(
    client: async_nats::Client,
    store: kv::Store,
    wills: kv::Store,
    names: Names,
    mut ops: mpsc::Receiver<SessionOp>,
    mut notices: async_nats::Subscriber,
    events: mpsc::Sender<Event>,
) {
    let mut held: HashMap<ByteString, Held> = HashMap::new();
    loop {
        tokio::select! {
            op = ops.recv() => match op {
                None => return,
                Some(SessionOp::Claim { client_id, claim }) => {
                    if let Some(revision) = claim_key(&client, &store, &names, &client_id).await {
                        held.insert(client_id, Held { claim, revision });
                    }
                }
                Some(SessionOp::Will { client_id, will }) => {
                    let revision = held.get(&client_id).map(|h| h.revision);
                    super::wills::set(&wills, &names.node, &client_id, revision, will).await;
                }
                Some(SessionOp::Release { client_id }) => {
                    super::wills::clear_own(&wills, &names.node, &client_id).await;
                    if let Some(h) = held.remove(&client_id) {
                        // Fenced: only while the key is still this node's claim.
                        let _ = store
                            .delete_expect_revision(encode_topic(&client_id), Some(h.revision))
                            .await;
                    }
                }
            },
            notice = notices.next() => {
                let Some(m) = notice else { return };
                let Some(client_id) = decode_topic(&String::from_utf8_lossy(&m.payload)) else {
                    continue;
                };
                let revision = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(REVISION_HEADER))
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                    .unwrap_or(u64::MAX);
                let client_id = ByteString::from(client_id);
                let claim = match held.get(&client_id) {
                    // This node claimed the client again after that takeover.
                    Some(h) if h.revision > revision => continue,
                    Some(h) => h.claim,
                    None => 0,
                };
                held.remove(&client_id);
                super::wills::clear_own(&wills, &names.node, &client_id).await;
                let event = ClusterEvent::TakenOver { client_id, claim };
                if events.send(Event::Cluster(event)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Makes this node the holder of `client_id`'s key and tells the previous holder; the new
/// revision, or `None` when NATS did not answer.
async fn claim_key(
    client: &async_nats::Client,
    store: &kv::Store,
    names: &Names,
    client_id: &str,
) -> Option<u64> {
    let key = encode_topic(client_id);
    if key.len() > MAX_ENCODED {
        return None;
    }
    let me = Bytes::from(names.node.clone());
    for _ in 0..CLAIM_ATTEMPTS {
        let entry = match store.entry(key.clone()).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, client = client_id, "cluster sessions bucket");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let Ok(revision) = store.update(&key, me.clone(), e.revision).await else {
                    continue; // Another node wrote first: read again.
                };
                let previous = String::from_utf8_lossy(&e.value).into_owned();
                if previous != names.node && crate::config::is_cluster_name(&previous) {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(REVISION_HEADER, revision.to_string().as_str());
                    let subject = names.control_subject(&previous);
                    if let Err(e) = client
                        .publish_with_headers(subject, headers, Bytes::from(key.clone()))
                        .await
                    {
                        tracing::warn!(error = %e, client = client_id, node = %previous, "takeover notice not sent");
                    }
                }
                return Some(revision);
            }
            _ => {
                if let Ok(revision) = store.create(&key, me.clone()).await {
                    return Some(revision);
                }
            }
        }
    }
    tracing::warn!(
        client = client_id,
        "could not claim the client id in the cluster"
    );
    None
}
