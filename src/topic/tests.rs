//! Property tests: both tries must agree with the reference [`matches`] on random filters and
//! topics, and keep `len` and their node count right through insert/remove churn.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;

use super::{is_valid_filter, is_valid_topic_name, matches, RetainedStore, SubscriptionTrie};

/// A non-empty topic name of 1..=4 levels from a tiny alphabet, so that random names and filters collide.
fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "", "$x"]), 1..=4)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("a topic name is not empty", |name| !name.is_empty())
}

/// A valid filter: up to 4 levels of names or `+`, optionally ending in `#`.
fn filter() -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec!["a", "b", "", "$x", "+", "+"]);
    (prop::collection::vec(level, 0..=4), any::<bool>())
        .prop_map(|(mut levels, hash)| {
            if hash || levels.is_empty() {
                levels.push("#");
            }
            levels.join("/")
        })
        .prop_filter("a filter is not empty", |filter| !filter.is_empty())
}

#[derive(Debug, Clone)]
enum Op {
    Insert(String, u8, u32),
    Remove(String, u8),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        (filter(), 0..3u8, any::<u32>()).prop_map(|(f, k, v)| Op::Insert(f, k, v)),
        (filter(), 0..3u8).prop_map(|(f, k)| Op::Remove(f, k)),
    ];
    prop::collection::vec(op, 0..40)
}

proptest! {
    #[test]
    fn generated_strings_are_valid(name in name(), filter in filter()) {
        prop_assert!(is_valid_topic_name(&name));
        prop_assert!(is_valid_filter(&filter));
    }

    #[test]
    fn trie_agrees_with_matches(
        subs in prop::collection::vec((filter(), 0..3u8), 0..20),
        names in prop::collection::vec(name(), 1..10),
    ) {
        let mut trie = SubscriptionTrie::default();
        for (filter, key) in &subs {
            trie.insert(filter, *key, ());
        }
        let unique: BTreeSet<_> = subs.iter().cloned().collect();
        prop_assert_eq!(trie.len(), unique.len());
        for name in &names {
            let mut got = Vec::new();
            trie.for_each_match(name, |filter, key, _| got.push((filter.to_string(), *key)));
            let got_set: BTreeSet<_> = got.iter().cloned().collect();
            prop_assert_eq!(got.len(), got_set.len(), "duplicate match for {}", name);
            let expected: BTreeSet<_> =
                unique.iter().filter(|(f, _)| matches(f, name)).cloned().collect();
            prop_assert_eq!(got_set, expected, "topic {:?}", name);
        }
    }

    #[test]
    fn retained_agrees_with_matches(
        names in prop::collection::vec(name(), 0..20),
        filters in prop::collection::vec(filter(), 1..10),
    ) {
        let mut store = RetainedStore::default();
        for (i, name) in names.iter().enumerate() {
            store.insert(name, i);
        }
        let unique: BTreeSet<_> = names.iter().cloned().collect();
        prop_assert_eq!(store.len(), unique.len());
        for filter in &filters {
            let mut got = Vec::new();
            store.for_each_match(filter, |topic, _| {
                got.push(topic.to_owned());
                true
            });
            let got_set: BTreeSet<_> = got.iter().cloned().collect();
            prop_assert_eq!(got.len(), got_set.len(), "duplicate match for {}", filter);
            let expected: BTreeSet<_> =
                unique.iter().filter(|n| matches(filter, n)).cloned().collect();
            prop_assert_eq!(got_set, expected, "filter {:?}", filter);
        }
    }

    #[test]
    fn trie_churn_keeps_len_and_prunes(ops in ops()) {
        let mut trie = SubscriptionTrie::default();
        let mut model = HashMap::new();
        for op in ops {
            match op {
                Op::Insert(filter, key, value) => {
                    let old = model.insert((filter.clone(), key), value);
                    prop_assert_eq!(trie.insert(&filter, key, value), old);
                }
                Op::Remove(filter, key) => {
                    let old = model.remove(&(filter.clone(), key));
                    prop_assert_eq!(trie.remove(&filter, &key), old);
                }
            }
            prop_assert_eq!(trie.len(), model.len());
        }
        for ((filter, key), value) in &model {
            prop_assert_eq!(trie.get(filter, key), Some(value));
        }
        for (filter, key) in model.keys() {
            prop_assert!(trie.remove(filter, key).is_some());
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn retained_churn_keeps_len_and_prunes(
        ops in prop::collection::vec((name(), prop::option::of(any::<u32>())), 0..40),
    ) {
        let mut store = RetainedStore::default();
        let mut model = HashMap::new();
        for (name, msg) in ops {
            match msg {
                Some(msg) => prop_assert_eq!(store.insert(&name, msg), model.insert(name, msg)),
                None => prop_assert_eq!(store.remove(&name), model.remove(&name)),
            }
            prop_assert_eq!(store.len(), model.len());
        }
        // Drop half through the query callback, the rest by topic.
        store.for_each_match("#", |_, msg| msg % 2 == 0);
        store.for_each_match("$x/#", |_, msg| msg % 2 == 0);
        model.retain(|_, msg| *msg % 2 == 0);
        prop_assert_eq!(store.len(), model.len());
        for (name, msg) in &model {
            prop_assert_eq!(store.remove(name), Some(*msg));
        }
        prop_assert!(store.is_empty());
        prop_assert_eq!(store.node_count(), 1);
    }
}
