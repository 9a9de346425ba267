//! The subscription index: a trie over topic levels.

use std::hash::Hash;

/// Maps topic filters to subscribers. `K` identifies a subscriber (one subscriber has at most one
/// entry per filter), `V` is what the router stores with it (options, identifiers).
#[derive(Debug)]
pub struct SubscriptionTrie<K, V> {
    _p: std::marker::PhantomData<(K, V)>,
}

impl<K: Eq + Hash + Clone, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        todo!()
    }
}

impl<K: Eq + Hash + Clone, V> SubscriptionTrie<K, V> {
    /// Inserts or replaces the entry of `key` under `filter`; returns the old value.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        todo!()
    }

    /// Removes the entry of `key` under `filter`, pruning empty nodes.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        todo!()
    }

    /// The entry of `key` under exactly `filter`.
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        todo!()
    }

    /// Calls `f(filter, key, value)` for every entry whose filter matches topic `name`
    /// (wildcard and `$` rules as in [`super::matches`]).
    pub fn for_each_match(&self, name: &str, f: impl FnMut(&str, &K, &V)) {
        todo!()
    }

    /// Number of (filter, key) entries.
    pub fn len(&self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
