//! Sessions that move between the nodes of a cluster (README "Cluster", proto-ext/cluster.md
//! "Session state"), sans-IO.
//!
//! In a cluster every QoS 1/2 message is delivered from the cluster's stream, on every node,
//! the publisher's own included (route.rs): so a subscriber's position is a stream sequence
//! number that any node can resume from, and what a session holds is described by sequence
//! numbers rather than by copies of messages. A persistent session's state is a
//! [`StateRecord`]: its [`SessionRecord`] (subscriptions, incoming QoS 2 ids, released flows,
//! expiry) plus the stream sequences of its inflight PUBLISHes (with their packet ids), of
//! its first queued message, and the node's stream position. The broker hands it out as
//! [`ClusterOutput::State`] when the session changed (at the end of a batch, with the
//! persistence changes), and the cluster actor keeps it in the state bucket.
//!
//! A client that connects with Clean Start 0 to a node that does not hold its session waits
//! (its CONNECT parked, [`ConnState::Fetching`]) while the cluster actor claims the client id,
//! asks the previous node to hand the session over (that node ends it and writes its final
//! state) and reads the state ([`Broker::cluster_fetched`]). The session is installed, and the
//! stream read again from the oldest sequence it needs ([`ClusterOutput::Replay`],
//! [`Broker::cluster_replayed`]): inflight messages come back with their packet ids, queued
//! and unseen ones in stream order, ahead of what arrives meanwhile. Then the CONNACK goes out
//! with Session Present 1 and the session continues as on one node [MQTT-3.1.2-5]
//! [MQTT-4.4.0-1]. After the loss of the session's node, the state is the last one it wrote:
//! messages the client acknowledged after that write come again (QoS 1 and 2 alike).

use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::{Buf, BufMut, Bytes};
use bytestring::ByteString;

use super::connection::ConnState;
use super::persist::record::{self, RecordError, SessionRecord, WallClock};
use super::persist::{persistent, session_record};
use super::session::{Delivery, Inflight, Matched};
use super::timers::Timer;
use super::{Broker, ClusterOutput, ConnId, Message, Packet, SessionId, StreamId};
use crate::codec::{Connect, QoS, ReasonCode};

/// A session's state goes out at most this often (README "Cluster": after the loss of a
/// node, what its clients acknowledged in the last interval may come again).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// Format of [`StateRecord`]'s encoding.
const STATE_FORMAT: u8 = 1;

/// Packets a client may send after its CONNECT while its session is fetched; past it the
/// connection is closed (a client that floods before its CONNACK).
const MAX_EARLY_PACKETS: usize = 1024;

/// A persistent session's state as the other nodes see it.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRecord {
    /// Every stream message up to this sequence was routed on the writing node.
    pub position: u64,
    /// Sequence of the first queued message from the stream, if any is queued.
    pub queued_from: Option<u64>,
    /// PUBLISHes sent and not yet acknowledged: packet id and stream sequence.
    pub inflight: Vec<(u16, u64)>,
    pub session: SessionRecord,
}

impl StateRecord {
    pub fn encode(&self) -> Vec<u8> {
        let session = record::encode_session(&self.session);
        let mut out = Vec::with_capacity(30 + 10 * self.inflight.len() + session.len());
        out.put_u8(STATE_FORMAT);
        out.put_u64(self.position);
        out.put_u64(self.queued_from.unwrap_or(0));
        out.put_u32(u32::try_from(self.inflight.len()).unwrap_or(u32::MAX));
        for (packet_id, seq) in &self.inflight {
            out.put_u16(*packet_id);
            out.put_u64(*seq);
        }
        out.put_slice(&session);
        out
    }

    pub fn decode(mut data: &[u8]) -> Result<StateRecord, RecordError> {
        if data.remaining() < 21 {
            return Err(RecordError::Truncated);
        }
        let format = data.get_u8();
        if format != STATE_FORMAT {
            return Err(RecordError::Version(format));
        }
        let position = data.get_u64();
        let queued_from = Some(data.get_u64()).filter(|&s| s != 0);
        let n = data.get_u32() as usize;
        if data.remaining() < n.saturating_mul(10) {
            return Err(RecordError::Truncated);
        }
        let inflight = (0..n).map(|_| (data.get_u16(), data.get_u64())).collect();
        Ok(StateRecord {
            position,
            queued_from,
            inflight,
            session: record::decode_session(data)?,
        })
    }
}

/// A session being read again from the stream before its client gets its CONNACK.
#[derive(Debug)]
pub(super) struct Replay {
    /// The connection whose CONNECT waits for it.
    conn: ConnId,
    sid: SessionId,
    /// Inflight PUBLISHes to restore: stream sequence to packet id.
    inflight: AHashMap<u64, u16>,
    /// From this sequence on, every matching message is queued.
    resume_from: u64,
    /// Messages to queue, in stream order, ahead of those that arrived meanwhile.
    queued: Vec<Delivery>,
}

/// What the cluster keeps of sessions moving here.
#[derive(Debug, Default)]
pub(super) struct Moving {
    /// Highest stream sequence routed on this node.
    pub position: u64,
    /// Connections whose session was fetched: their CONNECT goes through once more.
    fetched: ahash::AHashSet<ConnId>,
    /// The latest connection of each client id whose CONNECT waits for a fetch.
    parked: AHashMap<ByteString, ConnId>,
    /// The claim number of each fetch in flight, by connection.
    fetch_claims: AHashMap<ConnId, u64>,
    replays: AHashMap<ByteString, Replay>,
    /// Sessions whose changed state waits for its turn (`CHECKPOINT_INTERVAL`).
    pending_states: ahash::AHashSet<SessionId>,
    /// When each session's state was last handed out.
    written_at: AHashMap<SessionId, Instant>,
    /// The checkpoint timer armed, if any.
    checkpoint_at: Option<Instant>,
}

impl Broker {
    /// Whether this connection's CONNECT already waited for its session (it goes through
    /// now, and its claim is made).
    pub(super) fn cluster_take_fetched(&mut self, conn: ConnId) -> bool {
        self.cluster
            .as_mut()
            .is_some_and(|c| c.moving.fetched.remove(&conn))
    }

    /// Parks a Clean Start 0 CONNECT while the cluster fetches its session: clustered, and
    /// this node does not hold the client id (another node, or nobody, does). Gives the
    /// CONNECT back when no fetch is needed (go on at once).
    pub(super) fn cluster_park_connect(
        &mut self,
        conn: ConnId,
        client_id: &ByteString,
        connect: Connect,
        auth_data: Option<Bytes>,
    ) -> Option<(Connect, Option<Bytes>)> {
        let must = self
            .cluster
            .as_ref()
            .is_some_and(|c| !c.holds(client_id) || c.moving.parked.contains_key(client_id));
        if connect.clean_start || !must {
            return Some((connect, auth_data));
        }
        let c = self.conns.get_mut(&conn)?;
        c.state = ConnState::Fetching {
            connect: Box::new(connect),
            auth_data,
            early: Vec::new(),
        };
        let claim = self.cluster_next_claim(client_id);
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.moving.parked.insert(client_id.clone(), conn);
            cluster.moving.fetch_claims.insert(conn, claim);
        }
        self.out.cluster(ClusterOutput::Fetch {
            conn,
            client_id: client_id.clone(),
            claim,
        });
        None
    }

    /// A packet that came after a parked CONNECT: handled once the CONNECT is accepted.
    pub(super) fn cluster_early_packet(
        &mut self,
        conn: ConnId,
        stream: StreamId,
        packet: Packet,
        now: Instant,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let ConnState::Fetching { early, .. } = &mut c.state {
            if early.len() < MAX_EARLY_PACKETS {
                early.push((stream, packet));
                return;
            }
        }
        self.protocol_violation(conn, ReasonCode::QUOTA_EXCEEDED, now);
    }

    /// The cluster actor's answer to [`ClusterOutput::Fetch`]: the session's state (`None`: no
    /// session anywhere; `Err`: NATS could not be asked, and the CONNECT is refused with
    /// 0x88 Server unavailable rather than answered with a session that may exist). The
    /// session is installed here; what it needs from the stream is read again before its
    /// client's CONNECT goes through.
    pub fn cluster_fetched(
        &mut self,
        conn: ConnId,
        client_id: ByteString,
        state: Result<Option<Vec<u8>>, ()>,
        now: Instant,
        wall: std::time::SystemTime,
    ) {
        // A later CONNECT of the same client id waits for its own fetch: the last one wins,
        // as on one node [MQTT-3.1.4-3].
        let superseded = self.cluster.as_mut().is_some_and(|c| {
            let mine = c.moving.fetch_claims.remove(&conn);
            let latest = c.claims.get(&client_id).copied();
            mine.is_some_and(|mine| latest.is_some_and(|latest| latest > mine))
        });
        if superseded {
            self.close_with(conn, ReasonCode::SESSION_TAKEN_OVER, now);
            self.reap(now);
            return;
        }
        if let Some(cluster) = self.cluster.as_mut() {
            if cluster.moving.parked.get(&client_id) == Some(&conn) {
                cluster.moving.parked.remove(&client_id);
            }
        }
        let Ok(state) = state else {
            if let Some(c) = self.conns.get(&conn) {
                let version = c.version;
                if let Some(cluster) = self.cluster.as_mut() {
                    cluster.claims.remove(&client_id);
                }
                self.refuse_connect(conn, version, ReasonCode::SERVER_UNAVAILABLE, now);
                self.reap(now);
            }
            return;
        };
        let parked = self
            .conns
            .get(&conn)
            .is_some_and(|c| matches!(c.state, ConnState::Fetching { .. }));
        if !parked {
            // The client went away meanwhile: nothing here holds its session.
            if !self.client_ids.contains_key(&client_id) {
                self.cluster_release(&client_id);
            }
            return;
        }
        // Another connection of this client id that fetched before this one is taken over, as
        // on one node [MQTT-3.1.4-3].
        let earlier = self
            .cluster
            .as_mut()
            .and_then(|c| c.moving.replays.remove(&client_id));
        if let Some(earlier) = earlier.filter(|r| r.conn != conn) {
            self.close_with(earlier.conn, ReasonCode::SESSION_TAKEN_OVER, now);
        }
        // A session of this client id left here from before (restored from the local store,
        // or fetched for an earlier connection) gives way: the cluster's state is the session's.
        if let Some(old) = self.client_ids.get(&client_id).copied() {
            let claim = self
                .cluster
                .as_mut()
                .and_then(|c| c.claims.remove(&client_id));
            let old_conn = self.sessions.get_mut(&old).and_then(|s| {
                s.will = None;
                s.conn
            });
            if let Some(old_conn) = old_conn.filter(|&c| c != conn) {
                self.close_with(old_conn, ReasonCode::SESSION_TAKEN_OVER, now);
            }
            self.end_session(old, now);
            if let (Some(cluster), Some(claim)) = (self.cluster.as_mut(), claim) {
                cluster.claims.insert(client_id.clone(), claim);
            }
        }
        let clock = WallClock::new(now, wall);
        let state = state.and_then(|bytes| match StateRecord::decode(&bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(client = %client_id, error = %e, "cluster session state unreadable: new session");
                None
            }
        });
        // A disconnected session past its expiry is gone [MQTT-3.1.2-23].
        let state = state.filter(|s| {
            s.session
                .expires_at_ms
                .is_none_or(|ms| clock.to_instant(ms) > now)
        });
        let Some(state) = state else {
            self.cluster_finish_fetch(conn, None, now);
            return;
        };
        let mut session = state.session;
        // The will comes with the new CONNECT; an old one is not published from here.
        session.will = None;
        session.expires_at_ms = None;
        let sid = self.install_session(client_id.clone(), session, &clock);
        let position = self.cluster.as_ref().map_or(0, |c| c.moving.position);
        let resume_from = state
            .queued_from
            .unwrap_or(state.position.saturating_add(1));
        let from = state
            .inflight
            .iter()
            .map(|(_, seq)| *seq)
            .chain([resume_from])
            .min()
            .unwrap_or(resume_from);
        // Everything up to `to` comes from the replay, later messages from the live stream.
        let to = state
            .inflight
            .iter()
            .map(|(_, seq)| *seq)
            .chain([position, state.position])
            .max()
            .unwrap_or(position);
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.cluster_floor = to;
        }
        tracing::info!(client = %client_id, from, to, inflight = state.inflight.len(), "session moved here from another node");
        if from > to {
            self.cluster_finish_fetch(conn, Some(sid), now);
            return;
        }
        let replay = Replay {
            conn,
            sid,
            inflight: state.inflight.iter().map(|(id, seq)| (*seq, *id)).collect(),
            resume_from,
            queued: Vec::new(),
        };
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.moving.replays.insert(client_id.clone(), replay);
        }
        self.out.cluster(ClusterOutput::Replay {
            client_id,
            from,
            to,
        });
    }

    /// Messages read again from the stream for a session that moved here (in stream order,
    /// `done` with the last batch).
    pub fn cluster_replayed(
        &mut self,
        client_id: &str,
        messages: Vec<Message>,
        done: bool,
        now: Instant,
    ) {
        let Some(mut replay) = self
            .cluster
            .as_mut()
            .and_then(|c| c.moving.replays.remove(client_id))
        else {
            return;
        };
        for msg in messages {
            let Some(seq) = msg.cluster_seq else {
                continue;
            };
            let msg = std::sync::Arc::new(msg);
            let packet_id = replay.inflight.remove(&seq);
            if packet_id.is_none() && seq < replay.resume_from {
                continue;
            }
            let Some(delivery) = self.session_delivery(replay.sid, &msg, packet_id.is_some(), now)
            else {
                continue;
            };
            match packet_id {
                Some(id) => {
                    if let Some(s) = self.sessions.get_mut(&replay.sid) {
                        s.inflight.insert(id, Inflight::Published(delivery));
                    }
                }
                None => replay.queued.push(delivery),
            }
        }
        if !done {
            if let Some(cluster) = self.cluster.as_mut() {
                cluster.moving.replays.insert(client_id.into(), replay);
            }
            return;
        }
        if !replay.inflight.is_empty() {
            tracing::warn!(client = %client_id, missing = replay.inflight.len(), "inflight messages no longer in the cluster's stream");
        }
        if let Some(s) = self.sessions.get_mut(&replay.sid) {
            s.inflight.order_by_packet_id();
            for d in replay.queued.into_iter().rev() {
                s.unpop_queued(d);
            }
        }
        self.cluster_finish_fetch(replay.conn, Some(replay.sid), now);
    }

    /// The parked CONNECT goes through, now against the session installed here (`sid`), and
    /// the packets that came after it follow. Without its connection (the client went away
    /// meanwhile) the session stays here, disconnected: its expiry starts now.
    fn cluster_finish_fetch(&mut self, conn: ConnId, sid: Option<SessionId>, now: Instant) {
        let parked = self
            .conns
            .get(&conn)
            .is_some_and(|c| matches!(c.state, ConnState::Fetching { .. }));
        if !parked {
            if let Some(sid) = sid {
                self.restore_offline(sid, now);
            }
            self.reap(now);
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let ConnState::Fetching {
            connect,
            auth_data,
            early,
        } = std::mem::replace(&mut c.state, ConnState::AwaitingConnect)
        else {
            return;
        };
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.moving.fetched.insert(conn);
        }
        self.accept_connect(conn, *connect, auth_data, now);
        for (stream, packet) in early {
            self.handle_packet(conn, stream, packet, now);
        }
        self.reap(now);
    }

    /// One session's delivery of a message read again from the stream: its subscriptions
    /// that match (not shared ones: their groups deliver elsewhere), as `route` would have
    /// made it. `inflight`: the client already got it, so it is restored whatever matches now.
    fn session_delivery(
        &mut self,
        sid: SessionId,
        msg: &super::SharedMessage,
        inflight: bool,
        now: Instant,
    ) -> Option<Delivery> {
        let session = self.sessions.get(&sid)?;
        let mut acc: Option<Matched> = None;
        for ((filter, _), entry) in &session.subscriptions {
            if filter.starts_with("$share/") || !crate::topic::matches(filter, &msg.topic) {
                continue;
            }
            // [MQTT-3.8.3-3] No Local.
            if entry.options.no_local && msg.origin.as_ref() == Some(&session.client_id) {
                continue;
            }
            acc.get_or_insert_with(|| Matched::new(filter, entry))
                .add(entry);
        }
        let found = match acc {
            Some(acc) => Some(acc.into_delivery(msg)),
            None if inflight => Some(Delivery {
                msg: msg.clone(),
                qos: msg.qos,
                retain: false,
                sub_ids: Vec::new(),
                stream: StreamId::CONTROL,
                datagram: false,
                flow: None,
                priority: 0,
                seq: 0,
            }),
            None => None,
        };
        let mut d = found.filter(|d| inflight || d.qos != QoS::AtMostOnce)?;
        // [MQTT-3.3.2-5] an expired message is not delivered.
        if !self.may_read(sid, &msg.topic) || msg.is_expired(now) {
            return None;
        }
        d.seq = self.persist.next_seq();
        Some(d)
    }

    /// At the end of a batch: the state of each changed persistent session this node holds,
    /// for the other nodes ([`ClusterOutput::State`]), at most once per
    /// [`CHECKPOINT_INTERVAL`] per session (a busy subscriber changes with every message; its
    /// state is written within the interval of its last change, a timer making sure of it).
    pub(super) fn cluster_checkpoint(
        &mut self,
        dirty: &[SessionId],
        clock: &WallClock,
        now: Instant,
    ) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let moving = &mut cluster.moving;
        moving.pending_states.extend(dirty.iter().copied());
        if moving.pending_states.is_empty() {
            return;
        }
        let mut states = Vec::new();
        let mut next: Option<Instant> = None;
        let pending: Vec<SessionId> = moving.pending_states.drain().collect();
        for sid in pending {
            let Some(s) = self.sessions.get(&sid) else {
                moving.written_at.remove(&sid);
                continue;
            };
            if !persistent(s)
                || s.expiry_secs == 0
                || !cluster.claims.contains_key(&s.client_id)
                || moving.replays.contains_key(&s.client_id)
            {
                continue;
            }
            if let Some(due) = moving
                .written_at
                .get(&sid)
                .map(|at| *at + CHECKPOINT_INTERVAL)
                .filter(|due| *due > now)
            {
                moving.pending_states.insert(sid);
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            moving.written_at.insert(sid, now);
            states.push((s.client_id.clone(), state_of(s, moving.position, clock)));
        }
        if let Some(at) = next {
            if moving.checkpoint_at.is_none_or(|armed| armed > at) {
                moving.checkpoint_at = Some(at);
                self.timers.schedule(at, Timer::ClusterCheckpoint);
            }
        }
        for (client_id, state) in states {
            self.out.cluster(ClusterOutput::State {
                client_id,
                state: state.encode(),
            });
        }
    }

    /// The checkpoint timer fired: the states it waited for go out at the end of this batch.
    pub(super) fn cluster_checkpoint_due(&mut self) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.moving.checkpoint_at = None;
        }
    }

    /// The final state of a session handed over to another node.
    pub(super) fn cluster_final_state(&mut self, sid: SessionId, clock: &WallClock) {
        let Some(cluster) = self.cluster.as_ref() else {
            return;
        };
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        if s.expiry_secs == 0 {
            return;
        }
        let state = state_of(s, cluster.moving.position, clock).encode();
        let client_id = s.client_id.clone();
        self.out.cluster(ClusterOutput::State { client_id, state });
    }

    /// A stream message routed here: the node's position moves on.
    pub(super) fn cluster_note_position(&mut self, seq: u64) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.moving.position = cluster.moving.position.max(seq);
        }
    }
}

fn state_of(s: &super::session::Session, position: u64, clock: &WallClock) -> StateRecord {
    let mut inflight: Vec<(u16, u64)> = s
        .inflight
        .iter()
        .filter_map(|(id, f)| match f {
            Inflight::Published(d) => d.msg.cluster_seq.map(|seq| (*id, seq)),
            Inflight::Released { .. } => None,
        })
        .collect();
    inflight.sort_unstable();
    StateRecord {
        position,
        queued_from: s.queue.iter().find_map(|d| d.msg.cluster_seq),
        inflight,
        session: session_record(s, clock),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_record_round_trip() {
        let rec = StateRecord {
            position: 42,
            queued_from: Some(40),
            inflight: vec![(1, 38), (7, 39)],
            session: SessionRecord {
                version: crate::codec::ProtocolVersion::V5,
                expiry_secs: 3600,
                expires_at_ms: None,
                subscriptions: Vec::new(),
                incoming_qos2: vec![(StreamId::CONTROL, 9)],
                released: vec![(3, StreamId::CONTROL)],
                will: None,
                username: Some("u".into()),
            },
        };
        let bytes = rec.encode();
        assert_eq!(StateRecord::decode(&bytes), Ok(rec));
        assert!(StateRecord::decode(&bytes[..10]).is_err());
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(StateRecord::decode(&other).is_err());
    }
}
