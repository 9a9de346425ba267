//! One live connection per client id across the cluster, and persistent sessions that move
//! between nodes (README "Cluster", proto-ext/cluster.md).
//!
//! The sessions bucket (`PREFIX-sessions`) maps each client id (encoded like a topic) to the
//! node that holds its connection. When a client connects, its node claims the key with a
//! compare-and-set on the key's revision (create if absent, update from the revision read);
//! when that succeeds and another node held the key, that node gets a takeover request on its
//! control subject (`PREFIX.ctl.NODE`, header `Mqttd-Revision`: the new revision): it closes
//! its connection with DISCONNECT 0x8E, writes the session's final state (state.rs) and
//! answers. Two nodes claiming at once cannot both win: the loser's update fails, it reads
//! again and takes over from the winner (the last CONNECT wins, as on one node).
//!
//! A Clean Start 0 CONNECT on a node that does not hold the client id is a fetch: claim, wait
//! for the previous node's answer, read the state and hand it to the broker, which replays
//! what the session needs from the stream (state.rs).
//!
//! Fencing: a node gives a key up (its client's session ended) only with a delete that
//! expects the revision of its own claim, so a node that was taken over, slow or cut off,
//! cannot remove the new owner's claim; a takeover notice older than the node's own latest
//! claim is ignored; and the claim's revision is the fencing token of the session's state.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::subject::{decode_topic, encode_topic, MAX_ENCODED};
use super::{state, ClusterOutput, Names};
use crate::handoff::{ClusterEvent, Event};

/// Header of a takeover notice: the revision of the claim that took the client over.
const REVISION_HEADER: &str = "Mqttd-Revision";

/// Attempts at a claim that keeps losing compare-and-set races.
const CLAIM_ATTEMPTS: usize = 8;

/// How long a node waits for the previous holder of a client id to hand its session over
/// (write its final state) before it reads the state as it is. A node that is gone answers at
/// once (NATS: no responders).
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(2);

/// Operations handled per wake-up, so that repeated states of one session coalesce.
const OPS_BATCH: usize = 256;

/// This node's claim of a client id: the broker's claim number, the key's revision (the
/// fencing token of the session's state), the state key's last revision, and whether a state
/// was written (so ending the session leaves a tombstone).
#[derive(Clone, Copy)]
struct Held {
    claim: u64,
    revision: u64,
    state_revision: Option<u64>,
    wrote_state: bool,
}

/// What the sessions task works with.
pub(super) struct Sessions {
    pub client: async_nats::Client,
    pub claims: kv::Store,
    pub states: kv::Store,
    /// The wills bucket (wills.rs).
    pub wills: kv::Store,
    pub stream: async_nats::jetstream::stream::Stream,
    pub names: Names,
    pub events: mpsc::Sender<Event>,
}

pub(super) async fn run(
    tasks: Sessions,
    mut ops: mpsc::Receiver<ClusterOutput>,
    mut notices: async_nats::Subscriber,
) {
    let mut held: HashMap<ByteString, Held> = HashMap::new();
    // Claims taken over, kept until the broker handed the session over (its final state is
    // written under the old claim's token).
    let mut handing: HashMap<ByteString, Held> = HashMap::new();
    let mut batch = Vec::with_capacity(OPS_BATCH);
    loop {
        tokio::select! {
            n = ops.recv_many(&mut batch, OPS_BATCH) => {
                if n == 0 {
                    return;
                }
                // Only the last state of a session in the batch is written.
                let mut last_state: HashMap<ByteString, usize> = HashMap::new();
                for (i, op) in batch.iter().enumerate() {
                    if let ClusterOutput::State { client_id, .. } = op {
                        last_state.insert(client_id.clone(), i);
                    }
                }
                for (i, op) in batch.drain(..).enumerate() {
                    if let ClusterOutput::State { client_id, .. } = &op {
                        if last_state.get(client_id) != Some(&i) {
                            continue;
                        }
                    }
                    if !tasks.handle(op, &mut held, &mut handing).await {
                        return;
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
                let reply = m.reply.map(|r| r.to_string());
                let claim = match held.get(&client_id) {
                    // This node claimed the client again after that takeover.
                    Some(h) if h.revision > revision => {
                        if let Some(reply) = reply {
                            let _ = tasks.client.publish(reply, Bytes::new()).await;
                        }
                        continue;
                    }
                    Some(h) => h.claim,
                    None => 0,
                };
                if let Some(h) = held.remove(&client_id) {
                    handing.insert(client_id.clone(), h);
                }
                super::wills::clear_own(&tasks.wills, &tasks.names.node, &client_id).await;
                let event = ClusterEvent::TakenOver { client_id, claim, reply };
                if tasks.events.send(Event::Cluster(event)).await.is_err() {
                    return;
                }
            }
        }
    }
}

impl Sessions {
    /// One operation; false when the broker is gone.
    async fn handle(
        &self,
        op: ClusterOutput,
        held: &mut HashMap<ByteString, Held>,
        handing: &mut HashMap<ByteString, Held>,
    ) -> bool {
        match op {
            ClusterOutput::Claim { client_id, claim } => {
                if let Some((revision, previous)) = self.claim(&client_id).await {
                    let mut h = Held {
                        claim,
                        revision,
                        state_revision: None,
                        wrote_state: false,
                    };
                    if let Some(previous) = previous {
                        // A new session (Clean Start): whatever the other node held is gone,
                        // and a late final state of it must not come back.
                        self.hand_over(&previous, &client_id, revision).await;
                        let key = encode_topic(&client_id);
                        if let state::Written::Stored(rev) =
                            state::write(&self.states, &key, revision, None, None).await
                        {
                            h.state_revision = Some(rev);
                        }
                    }
                    held.insert(client_id, h);
                }
            }
            ClusterOutput::Fetch {
                conn,
                client_id,
                claim,
            } => {
                let Some((revision, previous)) = self.claim(&client_id).await else {
                    let event = ClusterEvent::Fetched {
                        conn,
                        client_id,
                        state: Err(()),
                    };
                    return self.events.send(Event::Cluster(event)).await.is_ok();
                };
                if let Some(previous) = previous {
                    self.hand_over(&previous, &client_id, revision).await;
                }
                let (record, state_revision) =
                    state::read(&self.states, &encode_topic(&client_id)).await;
                held.insert(
                    client_id.clone(),
                    Held {
                        claim,
                        revision,
                        state_revision,
                        wrote_state: record.is_some(),
                    },
                );
                let event = ClusterEvent::Fetched {
                    conn,
                    client_id,
                    state: Ok(record),
                };
                return self.events.send(Event::Cluster(event)).await.is_ok();
            }
            ClusterOutput::State { client_id, state } => {
                let Some(h) = held
                    .get(&client_id)
                    .or_else(|| handing.get(&client_id))
                    .copied()
                else {
                    return true;
                };
                let key = encode_topic(&client_id);
                match state::write(
                    &self.states,
                    &key,
                    h.revision,
                    Some(&state),
                    h.state_revision,
                )
                .await
                {
                    state::Written::Stored(rev) => {
                        let entry = match held.get_mut(&client_id) {
                            Some(h) => Some(h),
                            None => handing.get_mut(&client_id),
                        };
                        if let Some(h) = entry {
                            h.state_revision = Some(rev);
                            h.wrote_state = true;
                        }
                    }
                    state::Written::Fenced => {
                        tracing::debug!(client = %client_id, "session state not written: another node holds it");
                    }
                    state::Written::Failed => {
                        tracing::warn!(client = %client_id, "session state not written to the cluster");
                    }
                }
            }
            ClusterOutput::Will { client_id, will } => {
                let revision = held.get(&client_id).map(|h| h.revision);
                super::wills::set(&self.wills, &self.names.node, &client_id, revision, will).await;
            }
            ClusterOutput::Release { client_id } => {
                super::wills::clear_own(&self.wills, &self.names.node, &client_id).await;
                if let Some(h) = held.remove(&client_id) {
                    let key = encode_topic(&client_id);
                    if h.wrote_state {
                        let _ =
                            state::write(&self.states, &key, h.revision, None, h.state_revision)
                                .await;
                    }
                    // Fenced: only while the key is still this node's claim.
                    let _ = self
                        .claims
                        .delete_expect_revision(key, Some(h.revision))
                        .await;
                }
            }
            ClusterOutput::Replay {
                client_id,
                from,
                to,
            } => {
                tokio::spawn(state::replay(
                    self.stream.clone(),
                    self.names.clone(),
                    client_id,
                    from,
                    to,
                    self.events.clone(),
                ));
            }
            ClusterOutput::HandedOver { client_id, reply } => {
                handing.remove(&client_id);
                if let Err(e) = self.client.publish(reply, Bytes::new()).await {
                    tracing::warn!(error = %e, client = %client_id, "handover answer not sent");
                }
            }
            // Messages, retained changes and shared groups go elsewhere (outbound.rs).
            _ => {}
        }
        true
    }

    async fn claim(&self, client_id: &str) -> Option<(u64, Option<String>)> {
        claim_key(&self.claims, &self.names, client_id).await
    }

    /// Asks `node`, which held `client_id` before this node's claim `revision`, to end its
    /// session there and write its final state; waits for the answer (or that it is gone).
    async fn hand_over(&self, node: &str, client_id: &str, revision: u64) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(REVISION_HEADER, revision.to_string().as_str());
        let subject = self.names.control_subject(node);
        let request = self.client.request_with_headers(
            subject,
            headers,
            Bytes::from(encode_topic(client_id)),
        );
        match tokio::time::timeout(HANDOVER_TIMEOUT, request).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::info!(error = %e, client = client_id, %node, "previous node did not hand the session over")
            }
            Err(_) => {
                tracing::warn!(client = client_id, %node, "previous node did not answer the takeover in time")
            }
        }
    }
}

/// Makes this node the holder of `client_id`'s key: the new revision and the node that held
/// it before (when another one did), or `None` when NATS did not answer.
async fn claim_key(
    store: &kv::Store,
    names: &Names,
    client_id: &str,
) -> Option<(u64, Option<String>)> {
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
                let other = previous != names.node && crate::config::is_cluster_name(&previous);
                return Some((revision, other.then_some(previous)));
            }
            _ => {
                if let Ok(revision) = store.create(&key, me.clone()).await {
                    return Some((revision, None));
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
