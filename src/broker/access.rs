//! Authentication verdicts and ACL checks inside the state machine.
//!
//! The broker does not verify passwords (that is slow and happens in the transports, see
//! `crate::auth`): it receives a [`Login`] verdict for a connection before its CONNECT
//! ([`Broker::set_login`]) and applies it. With an ACL ([`Broker::set_acl`]) each session holds
//! its resolved rules, checked on PUBLISH (write), SUBSCRIBE (read, covering the filter), the
//! will (write) and every delivery including retained messages (read, per topic). Without an
//! ACL no check runs at all.

use std::sync::Arc;

use bytestring::ByteString;

use super::{Broker, ConnId, SessionId};
use crate::auth::{Acl, ClientRules, Login};
use crate::codec::ReasonCode;

/// ACL decisions of one connection by topic: topics repeat, and a hit costs a hash lookup
/// instead of a walk over the rules. Bounded (emptied when full), dropped with the connection
/// and when the ACL changes; nothing at all (one null pointer) until an ACL check runs.
#[derive(Debug, Default)]
pub struct AclCache(Option<Box<ahash::AHashMap<Box<str>, u8>>>);

/// Topics remembered per connection.
const ACL_CACHE_MAX: usize = 128;
const READ: (u8, u8) = (1, 2);
const WRITE: (u8, u8) = (4, 8);

impl AclCache {
    /// The cached decision for `topic` in direction `(known, allowed)` bits, else `compute`d
    /// and remembered.
    fn decide(
        &mut self,
        topic: &str,
        (known, allowed): (u8, u8),
        compute: impl FnOnce() -> bool,
    ) -> bool {
        let map = self.0.get_or_insert_with(Default::default);
        if let Some(bits) = map.get_mut(topic) {
            if *bits & known == 0 {
                *bits |= known | if compute() { allowed } else { 0 };
            }
            return *bits & allowed != 0;
        }
        let decision = compute();
        if map.len() >= ACL_CACHE_MAX {
            map.clear();
        }
        // A copy: the topic may be a slice of a whole read buffer.
        map.insert(topic.into(), known | if decision { allowed } else { 0 });
        decision
    }
}

impl Broker {
    /// Every CONNECT must come after a [`Login`] verdict ([`Broker::set_login`]); one without
    /// is refused with 0x87. Without this (the default, for tests and embedding without
    /// authentication) a CONNECT without a verdict is accepted as anonymous.
    pub fn require_login(&mut self) {
        self.login_required = true;
    }

    /// Installs (or replaces, on reload) the ACL; `None` allows everything. The rules of
    /// every session that has connected under an ACL are resolved again; existing
    /// subscriptions stay, and what they deliver is checked against the new rules. Sessions
    /// restored from the store (no user name known yet) get theirs when they reconnect.
    pub fn set_acl(&mut self, acl: Option<Arc<Acl>>) {
        for c in self.conns.values_mut() {
            c.acl_cache = AclCache::default();
        }
        let had_acl = self.acl.is_some();
        for session in self.sessions.values_mut_untracked() {
            // Sessions restored from the store (no rules, no connection) wait for their user.
            if session.rules.is_some() || (!had_acl && session.conn.is_some()) {
                session.rules = acl.as_ref().map(|a| {
                    Arc::new(a.rules_for(session.username.as_deref(), &session.client_id))
                });
            }
        }
        self.acl = acl;
    }

    /// The verdict on the credentials of `conn`'s coming CONNECT.
    pub fn set_login(&mut self, conn: ConnId, login: Login) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.login = Some(login);
        }
    }

    /// The user name a CONNECT on `conn` logs in as, or the CONNACK code refusing it.
    pub(super) fn take_login(&mut self, conn: ConnId) -> Result<Option<ByteString>, ReasonCode> {
        let login = self.conns.get_mut(&conn).and_then(|c| c.login.take());
        match login {
            Some(Login::Accepted { username }) => Ok(username),
            Some(Login::Refused(code)) => Err(code),
            None if self.login_required => {
                tracing::error!(conn = conn.0, "CONNECT without a login verdict refused");
                Err(ReasonCode::NOT_AUTHORIZED)
            }
            None => Ok(None),
        }
    }

    /// The ACL rules of a client, or `None` when there is no ACL (everything allowed).
    pub(super) fn rules_for(
        &self,
        username: Option<&str>,
        client_id: &str,
    ) -> Option<Arc<ClientRules>> {
        self.acl
            .as_ref()
            .map(|acl| Arc::new(acl.rules_for(username, client_id)))
    }

    /// The rules of session `sid`; `None` without an ACL. A connected session always has
    /// its rules; one without (not connected since it was restored from the store) gets them
    /// from its last user name, and an unknown session gets none at all (deny everything).
    pub(super) fn session_rules(&self, sid: SessionId) -> Option<Arc<ClientRules>> {
        let acl = self.acl.as_ref()?;
        match self.sessions.get(&sid) {
            Some(s) => match &s.rules {
                Some(rules) => Some(rules.clone()),
                None => Some(Arc::new(acl.rules_for(s.username.as_deref(), &s.client_id))),
            },
            None => Some(Arc::default()),
        }
    }

    /// May session `sid` receive a message on `topic`? Always true without an ACL (and then
    /// nothing is looked up). A session restored from the store, whose user is not known
    /// until it reconnects, queues what its subscriptions match: [`Broker::filter_queue`]
    /// checks the queue when it connects.
    pub(super) fn may_read(&mut self, sid: SessionId, topic: &str) -> bool {
        if self.acl.is_none() {
            return true;
        }
        let Some(session) = self.sessions.get(&sid) else {
            return false;
        };
        let Some(rules) = &session.rules else {
            return session.conn.is_none();
        };
        match session.conn.and_then(|c| self.conns.get_mut(&c)) {
            Some(c) => c.acl_cache.decide(topic, READ, || rules.may_read(topic)),
            None => rules.may_read(topic),
        }
    }

    /// Drops queued messages session `sid` may not read under its (new) rules: at CONNECT,
    /// for messages queued while its user was unknown or another one.
    pub(super) fn filter_queue(&mut self, sid: SessionId) {
        let Some(rules) = self.sessions.get(&sid).and_then(|s| s.rules.clone()) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let before = session.queue.len();
        session.queue.retain(|d| rules.may_read(&d.msg.topic));
        self.metrics.acl_denied += (before - session.queue.len()) as u64;
    }

    /// May session `sid`, connected on `conn`, publish to `topic`? Always true without an ACL.
    pub(super) fn may_publish(&mut self, conn: ConnId, sid: SessionId, topic: &str) -> bool {
        if self.acl.is_none() {
            return true;
        }
        let Some(rules) = self.session_rules(sid) else {
            return true;
        };
        match self.conns.get_mut(&conn) {
            Some(c) => c
                .acl_cache
                .decide(topic, WRITE, || rules.may_publish(topic)),
            None => rules.may_publish(topic),
        }
    }
}
