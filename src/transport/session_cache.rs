//! The TLS session cache of the QUIC and MQTTS listeners: rustls' stateful resumption store
//! (`quic_tls.rs` says why it is stateful), bounded like rustls' own `ServerSessionMemoryCache`
//! (oldest entry evicted first) but growing with use.
//!
//! rustls' cache allocates its whole table up front: at the default 65,536 tickets that is
//! 8 MB per listener before the first client (6.4 MB of hash table and 1.6 MB of eviction
//! queue), which an allocator that commits what it hands out turns into resident memory. Here
//! the table holds what is stored, and an idle broker holds nothing.

use std::collections::VecDeque;
use std::sync::Mutex;

use ahash::AHashMap;

/// Resumption tickets by their identifier, at most `limit`, the oldest evicted first.
#[derive(Debug)]
pub struct SessionCache {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: AHashMap<Vec<u8>, Vec<u8>>,
    /// Keys in insertion order; may name keys already taken (skipped when evicting).
    order: VecDeque<Vec<u8>>,
}

impl SessionCache {
    pub fn new(limit: usize) -> SessionCache {
        SessionCache {
            limit: limit.max(1),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the map and queue consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl rustls::server::StoresServerSessions for SessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut state = self.lock();
        if state.entries.insert(key.clone(), value).is_none() {
            state.order.push_back(key);
        }
        while state.entries.len() > self.limit {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            state.entries.remove(&oldest);
        }
        // Taken entries leave stale keys behind: drop them once they outnumber live ones.
        if state.order.len() > 2 * state.entries.len() + 64 {
            let State { entries, order } = &mut *state;
            order.retain(|k| entries.contains_key(k));
        }
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lock().entries.get(key).cloned()
    }

    /// Single use: what makes 0-RTT replay-safe (rustls takes the entry for early data).
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lock().entries.remove(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use rustls::server::StoresServerSessions;

    use super::*;

    #[test]
    fn entries_are_taken_once_and_the_oldest_go_first() {
        let cache = SessionCache::new(3);
        for i in 0..3u8 {
            assert!(cache.put(vec![i], vec![i, i]));
        }
        assert_eq!(cache.get(&[1]), Some(vec![1, 1]));
        assert_eq!(cache.take(&[1]), Some(vec![1, 1]));
        assert_eq!(cache.take(&[1]), None, "a ticket is used once");
        cache.put(vec![3], vec![3]);
        cache.put(vec![4], vec![4]);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&[0]), None, "the oldest was evicted");
        assert!(cache.get(&[2]).is_some() && cache.get(&[4]).is_some());
    }

    #[test]
    fn stale_keys_of_taken_entries_do_not_accumulate() {
        let cache = SessionCache::new(1000);
        for i in 0..10_000u32 {
            let key = i.to_be_bytes().to_vec();
            cache.put(key.clone(), vec![1]);
            assert!(cache.take(&key).is_some());
        }
        let state = cache.lock();
        assert!(
            state.entries.is_empty() && state.order.len() <= 65,
            "{}",
            state.order.len()
        );
    }
}
