//! Persistent sessions' state in NATS, so a session resumes on any node (README "Cluster",
//! proto-ext/cluster.md "Session state").
//!
//! The state bucket (`PREFIX-state`, key = the client id encoded like a topic) holds, for each
//! client id, the last state its holder wrote: a fencing token (the revision of the holder's
//! claim in the sessions bucket, which only grows) and either the broker's state record
//! (`crate::broker::StateRecord`) or a tombstone (no session). A write never replaces a value
//! whose token is higher than the writer's: a node that was taken over, however slow or cut
//! off, cannot overwrite the state of the node that took the client. Writes are
//! compare-and-set on the key's revision (the writer's last one, read again on conflict).
//!
//! The messages a moved session needs again are read from the messages stream by a
//! short-lived ordered consumer from the oldest sequence it needs ([`replay`]).

use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, kv};
use bytes::{BufMut, Bytes};
use bytestring::ByteString;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::Names;
use crate::broker::decode_message;
use crate::handoff::{ClusterEvent, Event};

/// Value kinds after the fencing token.
const TOMBSTONE: u8 = 0;
const RECORD: u8 = 1;

/// Messages handed to the broker at once during a replay.
const REPLAY_BATCH: usize = 256;

/// How long a replay waits for the stream's next message before it ends (the messages it
/// needs are already stored: a wait this long means the stream has no more).
const REPLAY_IDLE: Duration = Duration::from_secs(2);

/// The fencing token and the state record of a stored value, if it holds one.
pub(super) fn parse(value: &[u8]) -> Option<(u64, Option<&[u8]>)> {
    let (token, rest) = value.split_first_chunk::<8>()?;
    let token = u64::from_be_bytes(*token);
    match rest.split_first() {
        Some((&RECORD, record)) => Some((token, Some(record))),
        Some((&TOMBSTONE, _)) => Some((token, None)),
        _ => None,
    }
}

fn value(token: u64, record: Option<&[u8]>) -> Bytes {
    let mut v = Vec::with_capacity(9 + record.map_or(0, <[u8]>::len));
    v.put_u64(token);
    match record {
        Some(r) => {
            v.put_u8(RECORD);
            v.put_slice(r);
        }
        None => v.put_u8(TOMBSTONE),
    }
    Bytes::from(v)
}

/// The outcome of a fenced write.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Written {
    /// Stored; the key's new revision.
    Stored(u64),
    /// A node with a newer claim wrote the key: this node no longer holds the session.
    Fenced,
    /// NATS did not take it.
    Failed,
}

/// Writes `record` (a tombstone when `None`) under fencing token `token`. `last` is the key's
/// revision this node last wrote or read, tried first.
pub(super) async fn write(
    store: &kv::Store,
    key: &str,
    token: u64,
    record: Option<&[u8]>,
    last: Option<u64>,
) -> Written {
    let v = value(token, record);
    let mut expected = last;
    for _ in 0..4 {
        if let Some(rev) = expected {
            if let Ok(rev) = store.update(key, v.clone(), rev).await {
                return Written::Stored(rev);
            }
        }
        match store.entry(key.to_string()).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put => {
                if parse(&e.value).is_some_and(|(t, _)| t > token) {
                    return Written::Fenced;
                }
                expected = Some(e.revision);
            }
            Ok(_) => match store.create(key, v.clone()).await {
                Ok(rev) => return Written::Stored(rev),
                Err(_) => expected = None,
            },
            Err(e) => {
                tracing::warn!(error = %e, key, "cluster state bucket");
                return Written::Failed;
            }
        }
    }
    Written::Failed
}

/// The state stored for a client id: its record (if a session is stored) and the key's
/// revision.
pub(super) async fn read(store: &kv::Store, key: &str) -> (Option<Vec<u8>>, Option<u64>) {
    match store.entry(key.to_string()).await {
        Ok(Some(e)) if e.operation == kv::Operation::Put => {
            let record = parse(&e.value).and_then(|(_, r)| r.map(<[u8]>::to_vec));
            (record, Some(e.revision))
        }
        Ok(_) => (None, None),
        Err(e) => {
            tracing::warn!(error = %e, key, "cluster state bucket: read failed, new session");
            (None, None)
        }
    }
}

/// Reads the messages stream from `from` to `to` for the session of `client_id` and hands
/// the messages to the broker in batches, the last one marked done (also when the stream
/// no longer has some of them: they aged out, and the broker logs what is missing).
pub(super) async fn replay(
    stream: jetstream::stream::Stream,
    names: Names,
    client_id: ByteString,
    from: u64,
    to: u64,
    events: mpsc::Sender<Event>,
) {
    let mut batch = Vec::new();
    match stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: names.stream_subject(">"),
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await
    {
        Err(e) => tracing::warn!(error = %e, client = %client_id, "session replay not started"),
        Ok(consumer) => match consumer.messages().await {
            Err(e) => tracing::warn!(error = %e, client = %client_id, "session replay"),
            Ok(mut messages) => loop {
                let Ok(Some(Ok(m))) = tokio::time::timeout(REPLAY_IDLE, messages.next()).await
                else {
                    break;
                };
                let Ok(info) = m.info() else {
                    continue;
                };
                let (seq, pending) = (info.stream_sequence, info.pending);
                if seq > to {
                    break;
                }
                match decode_message(&m.payload, Instant::now(), SystemTime::now()) {
                    Ok(mut msg) => {
                        msg.cluster_seq = Some(seq);
                        batch.push(msg);
                    }
                    Err(e) => tracing::warn!(error = %e, seq, "undecodable message skipped"),
                }
                if batch.len() >= REPLAY_BATCH {
                    let event = ClusterEvent::Replayed {
                        client_id: client_id.clone(),
                        messages: std::mem::take(&mut batch),
                        done: false,
                    };
                    if events.send(Event::Cluster(event)).await.is_err() {
                        return;
                    }
                }
                if seq >= to || pending == 0 {
                    break;
                }
            },
        },
    }
    let event = ClusterEvent::Replayed {
        client_id,
        messages: batch,
        done: true,
    };
    let _ = events.send(Event::Cluster(event)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_the_token_and_the_record() {
        assert_eq!(parse(&value(7, Some(b"abc"))), Some((7, Some(&b"abc"[..]))));
        assert_eq!(parse(&value(u64::MAX, None)), Some((u64::MAX, None)));
        assert_eq!(parse(b"short"), None);
        let mut bad = value(1, None).to_vec();
        bad[8] = 5;
        assert_eq!(parse(&bad), None);
    }
}
