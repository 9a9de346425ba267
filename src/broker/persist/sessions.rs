//! The broker's sessions, with change tracking: a session borrowed mutably, inserted or
//! removed is marked dirty, so persistence sees every change without each code path having to
//! report it.

use ahash::{AHashMap, AHashSet};

use crate::broker::session::Session;
use crate::broker::SessionId;

#[derive(Debug, Default)]
pub(crate) struct SessionMap {
    map: AHashMap<SessionId, Session>,
    tracking: bool,
    dirty: AHashSet<SessionId>,
}

impl SessionMap {
    pub fn track(&mut self, on: bool) {
        self.tracking = on;
        if !on {
            self.dirty.clear();
        }
    }

    fn mark(&mut self, sid: SessionId) {
        if self.tracking {
            self.dirty.insert(sid);
        }
    }

    pub fn take_dirty(&mut self) -> Vec<SessionId> {
        self.dirty.drain().collect()
    }

    pub fn get(&self, sid: &SessionId) -> Option<&Session> {
        self.map.get(sid)
    }

    pub fn get_mut(&mut self, sid: &SessionId) -> Option<&mut Session> {
        if self.tracking && self.map.contains_key(sid) {
            self.dirty.insert(*sid);
        }
        self.map.get_mut(sid)
    }

    pub fn insert(&mut self, sid: SessionId, session: Session) -> Option<Session> {
        self.mark(sid);
        self.map.insert(sid, session)
    }

    pub fn remove(&mut self, sid: &SessionId) -> Option<Session> {
        let removed = self.map.remove(sid);
        if removed.is_some() {
            self.mark(*sid);
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Every session, read-only (no change to track).
    pub fn iter(&self) -> impl Iterator<Item = (&SessionId, &Session)> {
        self.map.iter()
    }
}
