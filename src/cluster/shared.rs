//! Shared subscriptions served through NATS (proto-ext/cluster.md "Shared subscriptions"; the
//! rules are the broker's, `cluster_shared.rs`).
//!
//! While this node has a connected member of `$share/GROUP/FILTER` (the broker's
//! [`SharedOutput::Join`] until its [`SharedOutput::Leave`]), it serves the group:
//!
//! - QoS 0: a queue subscription to the filter's subjects under `PREFIX.m.`, queue group
//!   [`group_name`]: NATS gives each message to one subscribed node. Unlike the node's plain
//!   subscription, its own messages are not dropped: its members are members too.
//! - QoS 1/2: a pull from the group's durable consumer of the stream (one per subject, named
//!   from [`group_name`]), explicit acknowledgements: JetStream gives each message to one
//!   pulling node and gives it again (to any of them) when it is not acknowledged within
//!   `cluster.shared_ack_wait_ms` or is handed back (nak). The broker answers for each
//!   ([`SharedOutput::Done`]); this task then acks or naks it, and meanwhile tells JetStream
//!   that the work is in progress, for up to [`PATIENCE`] ack waits.
//!
//! NATS 2.9 has one filter subject per consumer: a filter ending in `/#` is two subjects (the
//! children `X.>` and the parent `X`, which `#` matches too), so two consumers.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, consumer, AckKind};
use bytestring::ByteString;
use futures_util::StreamExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::subject::{encode_topic, MAX_ENCODED};
use super::Names;
use crate::broker::{decode_message, Message, SharedOutput, SharedToken};
use crate::handoff::{ClusterEvent, Event};

/// Unacknowledged messages a group's consumer hands out at once (over all nodes).
pub const MAX_ACK_PENDING: i64 = 1000;

/// Messages asked for per pull request, at most.
const BATCH: usize = 100;

/// A group's QoS 1/2 messages a node holds at once (pulled and not yet acknowledged by its
/// members): a node whose members are slow takes no more, the others' take the rest.
pub const ROOM: usize = 100;

/// How long a pull request waits for messages before it is made again.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// Messages between the readers and the task that answers for them.
const INCOMING_QUEUE: usize = 1024;

/// Wait before trying again when NATS refused a subscription or a consumer.
const RETRY: Duration = Duration::from_secs(1);

/// While its node lives, a message waits this many ack waits for its member (JetStream is
/// told the work is in progress): a slow member is not overtaken. Past it, or when the node
/// dies, JetStream gives the message to the group again after one more ack wait.
pub const PATIENCE: u32 = 6;

/// The subjects (after `PREFIX.m.` or `PREFIX.q.`) that a filter matches: each level encoded
/// like a topic level, `+` as `*`, a last `#` as `>` plus, when it has a parent level, the
/// parent alone (`a/#` matches `a`). NATS's wildcards also match `$` topics and the broker
/// drops those [MQTT-4.7.2-1].
pub fn filter_subjects(filter: &str) -> Vec<String> {
    let levels: Vec<&str> = filter.split('/').collect();
    let token = |level: &str| match level {
        "+" => "*".to_string(),
        "#" => ">".to_string(),
        l => encode_topic(l),
    };
    let subject: Vec<String> = levels.iter().map(|l| token(l)).collect();
    let mut subjects = vec![subject.join(".")];
    if levels.len() > 1 && levels.last() == Some(&"#") {
        let parent: Vec<&str> = subject
            .iter()
            .take(subject.len() - 1)
            .map(String::as_str)
            .collect();
        subjects.push(parent.join("."));
    }
    subjects
}

/// FNV-1a, 64 bits: a hash every implementation can write in a few lines.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The name of a group in NATS: `PREFIX-share-` and the FNV-1a 64 hash of the shared filter
/// `$share/GROUP/FILTER` in 16 lower-case hex digits. It is the queue group of the QoS 0 queue
/// subscriptions and the durable name of the first consumer (the second, for a parent level,
/// adds `-parent`). A hash rather than the filter itself: consumer names cannot hold `.`, `*`,
/// `>` and are limited in length.
pub fn group_name(prefix: &str, group: &str, filter: &str) -> String {
    let h = fnv1a(format!("$share/{group}/{filter}").as_bytes());
    format!("{prefix}-share-{h:016x}")
}

/// What the tasks serving groups need.
#[derive(Clone)]
pub(super) struct Context {
    pub client: async_nats::Client,
    pub stream: jetstream::stream::Stream,
    pub names: Names,
    pub ack_wait: Duration,
    /// A consumer no node pulls from for this long is deleted by NATS.
    pub inactive: Duration,
}

/// A message from a group's subscription or consumer, decoded.
struct Incoming {
    group: ByteString,
    filter: ByteString,
    message: Message,
    /// From the stream: the message to acknowledge, and its place in the node's room for
    /// the group (given back with the answer).
    js: Option<(jetstream::Message, OwnedSemaphorePermit)>,
}

pub(super) async fn run(
    cx: Context,
    mut ops: mpsc::Receiver<SharedOutput>,
    events: mpsc::Sender<Event>,
) {
    let (in_tx, mut in_rx) = mpsc::channel::<Incoming>(INCOMING_QUEUE);
    let mut served: HashMap<(ByteString, ByteString), Vec<JoinHandle<()>>> = HashMap::new();
    let mut pending: HashMap<u64, (jetstream::Message, Instant, OwnedSemaphorePermit)> =
        HashMap::new();
    let mut next_token = 0u64;
    let mut sweep = tokio::time::interval(cx.ack_wait / 3);
    // The stream's last sequence when this node joined: a node that routed no stream message
    // yet starts a new group's consumer after it.
    let joined_at = match cx.stream.clone().info().await {
        Ok(info) => info.state.last_sequence,
        Err(e) => {
            tracing::warn!(error = %e, "cluster stream info: new shared groups start at new messages");
            u64::MAX - 1
        }
    };
    loop {
        tokio::select! {
            op = ops.recv() => match op {
                None => break,
                Some(SharedOutput::Join { group, filter, after }) => {
                    if let Entry::Vacant(e) = served.entry((group.clone(), filter.clone())) {
                        tracing::debug!(%group, %filter, "serving a shared subscription");
                        let start = after.max(joined_at) + 1;
                        e.insert(serve(&cx, &group, &filter, start, &in_tx));
                    }
                }
                Some(SharedOutput::Leave { group, filter }) => {
                    if let Some(tasks) = served.remove(&(group, filter)) {
                        for t in tasks {
                            t.abort();
                        }
                    }
                }
                Some(SharedOutput::Done { token, ack }) => {
                    if let Some((m, _, _room)) = pending.remove(&token.0) {
                        let kind = if ack { AckKind::Ack } else { AckKind::Nak(None) };
                        if let Err(e) = m.ack_with(kind).await {
                            tracing::debug!(error = %e, "shared subscription: acknowledgement not sent");
                        }
                    }
                }
            },
            incoming = in_rx.recv() => {
                let Some(Incoming { group, filter, message, js }) = incoming else { break };
                let token = js.map(|(m, room)| {
                    next_token += 1;
                    pending.insert(next_token, (m, Instant::now(), room));
                    SharedToken(next_token)
                });
                let event = ClusterEvent::Shared { group, filter, message: Box::new(message), token };
                if events.send(Event::Cluster(event)).await.is_err() {
                    break;
                }
            }
            _ = sweep.tick() => {
                // Still with their member: in progress. Past the patience, JetStream
                // redelivers them: their answer would be meaningless.
                let patience = cx.ack_wait * PATIENCE;
                pending.retain(|_, (_, at, _)| at.elapsed() < patience);
                for (m, _, _) in pending.values() {
                    if let Err(e) = m.ack_with(AckKind::Progress).await {
                        tracing::debug!(error = %e, "shared subscription: progress not sent");
                    }
                }
            }
        }
    }
    for tasks in served.into_values() {
        for t in tasks {
            t.abort();
        }
    }
}

/// Starts the readers of one group: per subject a queue subscription and a consumer.
fn serve(
    cx: &Context,
    group: &ByteString,
    filter: &ByteString,
    start: u64,
    to: &mpsc::Sender<Incoming>,
) -> Vec<JoinHandle<()>> {
    // A new consumer starts at `start`; [`u64::MAX`]: at new messages (the stream's position
    // is unknown).
    let deliver_policy = match start {
        u64::MAX => consumer::DeliverPolicy::New,
        start_sequence => consumer::DeliverPolicy::ByStartSequence { start_sequence },
    };
    let name = group_name(&cx.names.prefix, group, filter);
    let room = Arc::new(Semaphore::new(ROOM));
    let mut tasks = Vec::new();
    for (i, subject) in filter_subjects(filter).into_iter().enumerate() {
        if subject.len() > MAX_ENCODED {
            // Such topics never cross NATS either (outbound.rs).
            tracing::warn!(%group, filter_len = filter.len(), "shared subscription filter too long for NATS: not served");
            continue;
        }
        let durable = if i == 0 {
            name.clone()
        } else {
            format!("{name}-parent")
        };
        let reader = Reader {
            group: group.clone(),
            filter: filter.clone(),
            to: to.clone(),
        };
        tasks.push(tokio::spawn(read_core(
            cx.client.clone(),
            cx.names.qos0_subject(&subject),
            name.clone(),
            reader.clone(),
        )));
        let config = consumer::pull::Config {
            durable_name: Some(durable.clone()),
            description: Some(format!("$share/{group}/{filter}")),
            filter_subject: cx.names.stream_subject(&subject),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: cx.ack_wait,
            deliver_policy,
            max_ack_pending: MAX_ACK_PENDING,
            inactive_threshold: cx.inactive,
            ..Default::default()
        };
        tasks.push(tokio::spawn(read_stream(
            cx.stream.clone(),
            durable,
            config,
            reader,
            room.clone(),
        )));
    }
    tasks
}

#[derive(Clone)]
struct Reader {
    group: ByteString,
    filter: ByteString,
    to: mpsc::Sender<Incoming>,
}

impl Reader {
    /// Decodes and hands on; false when the task that answers is gone.
    async fn hand_on(
        &self,
        payload: &[u8],
        js: Option<(jetstream::Message, OwnedSemaphorePermit)>,
    ) -> bool {
        let message = match decode_message(payload, Instant::now(), SystemTime::now()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable message for a shared subscription dropped");
                if let Some((js, _room)) = js {
                    let _ = js.ack_with(AckKind::Term).await;
                }
                return true;
            }
        };
        let incoming = Incoming {
            group: self.group.clone(),
            filter: self.filter.clone(),
            message,
            js,
        };
        self.to.send(incoming).await.is_ok()
    }
}

/// QoS 0: one queue subscription, made again if NATS ends it.
async fn read_core(client: async_nats::Client, subject: String, queue: String, r: Reader) {
    loop {
        match client.queue_subscribe(subject.clone(), queue.clone()).await {
            Ok(mut sub) => {
                while let Some(m) = sub.next().await {
                    if !r.hand_on(&m.payload, None).await {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, %subject, "shared subscription: queue subscription")
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// QoS 1/2: pulls from the group's durable consumer (made if no node made it yet), again
/// after an error.
async fn read_stream(
    stream: jetstream::stream::Stream,
    durable: String,
    config: consumer::pull::Config,
    r: Reader,
    room: Arc<Semaphore>,
) {
    loop {
        let result = match stream
            .get_or_create_consumer(&durable, config.clone())
            .await
        {
            Ok(c) => pull(&c, &r, &room).await,
            Err(e) => Err(e.to_string()),
        };
        match result {
            // The task that answers is gone.
            Ok(()) => return,
            // A lost connection, a deleted consumer: pull again from a consumer found or
            // made anew.
            Err(e) => {
                tracing::warn!(error = %e, consumer = %durable, "shared subscription consumer")
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Asks for as many messages as this node has room for (at least one: it waits for room),
/// in requests that last at most [`PULL_EXPIRES`]. `Ok` when the task that answers is gone.
async fn pull(
    consumer: &consumer::Consumer<consumer::pull::Config>,
    r: &Reader,
    room: &Arc<Semaphore>,
) -> Result<(), String> {
    loop {
        let first = room
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let mut permits = vec![first];
        while permits.len() < BATCH {
            match room.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let mut batch = consumer
            .batch()
            .max_messages(permits.len())
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| e.to_string())?;
            // JetStream sends no more than asked; a permit travels with each message until
            // its answer.
            let Some(permit) = permits.pop() else { break };
            let payload = m.payload.clone();
            if !r.hand_on(&payload, Some((m, permit))).await {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_of_filters() {
        assert_eq!(filter_subjects("a/b"), vec!["a.b"]);
        assert_eq!(filter_subjects("a/+/c"), vec!["a.*.c"]);
        assert_eq!(filter_subjects("#"), vec![">"]);
        assert_eq!(filter_subjects("a/#"), vec!["a.>", "a"]);
        assert_eq!(filter_subjects("+/#"), vec!["*.>", "*"]);
        assert_eq!(
            filter_subjects("$app/x.y/#"),
            vec!["=24app.x=2Ey.>", "=24app.x=2Ey"]
        );
        assert_eq!(filter_subjects("/+"), vec!["=.*"]);
    }

    /// The subjects match exactly the topics the filter matches, `$` topics aside (the
    /// broker drops those).
    #[test]
    fn subjects_match_what_the_filter_matches() {
        fn nats_match(pattern: &str, subject: &str) -> bool {
            let p: Vec<&str> = pattern.split('.').collect();
            let s: Vec<&str> = subject.split('.').collect();
            for (i, t) in p.iter().enumerate() {
                match *t {
                    ">" => return s.len() > i,
                    "*" if i < s.len() => {}
                    t if s.get(i) == Some(&t) => {}
                    _ => return false,
                }
            }
            p.len() == s.len()
        }
        let filters = ["a/#", "#", "+", "a/+", "+/b/#", "a//#", "/#", "a/b"];
        let topics = ["a", "a/b", "a/b/c", "b", "/", "a/", "x/b/y", "x/b", "a//c"];
        for f in filters {
            for t in topics {
                let nats = filter_subjects(f)
                    .iter()
                    .any(|p| nats_match(p, &encode_topic(t)));
                assert_eq!(nats, crate::topic::matches(f, t), "{f} {t}");
            }
        }
    }

    /// The table of proto-ext/cluster.md "Shared subscriptions" is what the code writes.
    #[test]
    fn the_documented_table_holds() {
        let doc = include_str!("../../proto-ext/cluster.md");
        let table = doc
            .split("| filter | subjects | consumers |")
            .nth(1)
            .unwrap();
        let mut rows = 0;
        for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let filter = cells[1].trim_matches('`');
            let subjects: Vec<&str> = cells[2]
                .split(" and ")
                .map(|s| s.trim_matches('`'))
                .collect();
            assert_eq!(filter_subjects(filter), subjects, "{line}");
            rows += 1;
        }
        assert_eq!(rows, 5);
        assert!(doc.contains(&format!("for up to {PATIENCE} `ack_wait`s")));
        assert!(
            doc.contains("`$share/g/a/#` with prefix `mqttd` is `mqttd-share-bff824b5e1e1124e`")
        );
    }

    #[test]
    fn group_names_are_stable_and_valid() {
        // FNV-1a 64 of "$share/g/a/#": fixed, so that every node (and version) agrees.
        assert_eq!(
            group_name("mqttd", "g", "a/#"),
            "mqttd-share-bff824b5e1e1124e"
        );
        assert_ne!(
            group_name("mqttd", "g", "a/#"),
            group_name("mqttd", "g", "a/+")
        );
        assert_ne!(
            group_name("mqttd", "g1", "a"),
            group_name("mqttd", "g", "1/a")
        );
        assert!(crate::config::is_cluster_name(&group_name(
            "p", "g", "x y.z"
        )));
    }
}
