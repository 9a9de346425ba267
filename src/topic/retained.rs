//! The retained message store: a trie over topic names, queried with topic filters.

/// Retained messages by topic name. `M` is the stored message type.
#[derive(Debug)]
pub struct RetainedStore<M> {
    _p: std::marker::PhantomData<M>,
}

impl<M> Default for RetainedStore<M> {
    fn default() -> Self {
        todo!()
    }
}

impl<M> RetainedStore<M> {
    /// Stores `msg` as the retained message of `topic`, replacing any previous one.
    pub fn insert(&mut self, topic: &str, msg: M) -> Option<M> {
        todo!()
    }

    /// Removes the retained message of `topic` (an empty retained payload does this [MQTT-3.3.1-6]).
    pub fn remove(&mut self, topic: &str) -> Option<M> {
        todo!()
    }

    /// Calls `f(topic, msg)` for every retained message whose topic matches `filter`, with the
    /// same `$` rule as subscriptions. `f` returns `false` to drop the message (e.g. expired).
    pub fn for_each_match(&mut self, filter: &str, f: impl FnMut(&str, &M) -> bool) {
        todo!()
    }

    pub fn len(&self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
