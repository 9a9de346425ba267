//! The subscription index: a trie over topic filter levels.
//!
//! Routing a PUBLISH must not scan every subscription. Filters are stored level by level, with
//! `+` as a dedicated child and `…/#` as an entry set on the parent level, so a topic only walks
//! the exact child, the `+` child and the `#` entries of each of its levels. Walks are iterative
//! (see [`super::stack`]) and allocation-free for ordinary depths; removal prunes empty nodes so
//! memory follows the live subscriptions, not the churn.

use std::hash::Hash;

use ahash::AHashMap;
use bytestring::ByteString;

use super::levels::{levels, split_level};
use super::stack::InlineStack;

/// Levels a match walk handles before its work list spills to the heap.
const INLINE_DEPTH: usize = 32;

/// Maps topic filters to subscribers. `K` identifies a subscriber (one subscriber has at most one
/// entry per filter), `V` is what the router stores with it (options, identifiers).
///
/// Filters are expected to be valid plain filters ([`super::is_valid_filter`], without the
/// `$share/` prefix); in an invalid one a `#` that is not the last level is an ordinary level,
/// exactly as in [`super::matches`].
#[derive(Debug)]
pub struct SubscriptionTrie<K, V> {
    root: Node<K, V>,
    /// Number of (filter, key) entries.
    len: usize,
}

#[derive(Debug)]
struct Node<K, V> {
    /// Children by literal level (including the empty level).
    children: AHashMap<Box<str>, Node<K, V>>,
    /// The `+` child.
    plus: Option<Box<Node<K, V>>>,
    /// Subscriptions to the filter ending at this node.
    exact: Option<Box<Entries<K, V>>>,
    /// Subscriptions to this node's filter followed by `/#` (or to `#` at the root).
    multi: Option<Box<Entries<K, V>>>,
}

/// The subscriptions of one filter, with the filter itself so matches can hand it out.
#[derive(Debug)]
struct Entries<K, V> {
    /// Shared, so a match hands it out without a copy (the router keeps it per delivery).
    filter: ByteString,
    subs: AHashMap<K, V>,
}

/// One edge from a node to a child.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Child(&'a str),
    Plus,
}

/// Which entry set of the final node a filter uses.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Exact,
    Multi,
}

/// Splits a filter into the path to its node and its slot there: `a/+` is (`a/+`, exact),
/// `a/#` is (`a`, multi) and `#` is (no levels, multi).
fn parse(filter: &str) -> (Option<&str>, Slot) {
    if filter == "#" {
        (None, Slot::Multi)
    } else if let Some(prefix) = filter.strip_suffix("/#") {
        (Some(prefix), Slot::Multi)
    } else {
        (Some(filter), Slot::Exact)
    }
}

fn steps(path: Option<&str>) -> impl Iterator<Item = Step<'_>> {
    levels(path).map(|level| match level {
        "+" => Step::Plus,
        _ => Step::Child(level),
    })
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Self {
            children: AHashMap::default(),
            plus: None,
            exact: None,
            multi: None,
        }
    }
}

/// Dropping iteratively: a filter may be tens of thousands of levels deep, too deep for the
/// recursive drop glue on a task's stack.
impl<K, V> Drop for Node<K, V> {
    fn drop(&mut self) {
        let mut stack = Vec::new();
        self.take_children(&mut stack);
        while let Some(mut node) = stack.pop() {
            node.take_children(&mut stack);
            // `node` is childless now, so dropping it does not recurse.
        }
    }
}

impl<K, V> Node<K, V> {
    fn child(&self, step: Step<'_>) -> Option<&Self> {
        match step {
            Step::Child(level) => self.children.get(level),
            Step::Plus => self.plus.as_deref(),
        }
    }

    fn child_mut(&mut self, step: Step<'_>) -> Option<&mut Self> {
        match step {
            Step::Child(level) => self.children.get_mut(level),
            Step::Plus => self.plus.as_deref_mut(),
        }
    }

    fn child_or_insert(&mut self, step: Step<'_>) -> &mut Self {
        match step {
            Step::Child(level) => self.children.entry(level.into()).or_default(),
            Step::Plus => self.plus.get_or_insert_with(Default::default),
        }
    }

    fn remove_child(&mut self, step: Step<'_>) {
        match step {
            Step::Child(level) => {
                self.children.remove(level);
            }
            Step::Plus => self.plus = None,
        }
    }

    fn slot(&self, slot: Slot) -> Option<&Entries<K, V>> {
        match slot {
            Slot::Exact => self.exact.as_deref(),
            Slot::Multi => self.multi.as_deref(),
        }
    }

    fn slot_mut(&mut self, slot: Slot) -> &mut Option<Box<Entries<K, V>>> {
        match slot {
            Slot::Exact => &mut self.exact,
            Slot::Multi => &mut self.multi,
        }
    }

    fn take_children(&mut self, into: &mut Vec<Self>) {
        into.extend(self.children.drain().map(|(_, child)| child));
        into.extend(self.plus.take().map(|child| *child));
    }

    fn degree(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some())
    }

    /// No entries and a single child: kept alive only by the node below it.
    fn is_link(&self) -> bool {
        self.exact.is_none() && self.multi.is_none() && self.degree() == 1
    }

    fn is_empty(&self) -> bool {
        self.exact.is_none() && self.multi.is_none() && self.degree() == 0
    }
}

impl<K: Eq + Hash + Clone, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<K: Eq + Hash + Clone, V> SubscriptionTrie<K, V> {
    /// Inserts or replaces the entry of `key` under `filter`; returns the old value.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let (path, slot) = parse(filter);
        let mut node = &mut self.root;
        for step in steps(path) {
            node = node.child_or_insert(step);
        }
        let entries = node.slot_mut(slot).get_or_insert_with(|| {
            Box::new(Entries {
                filter: ByteString::from(filter),
                subs: AHashMap::default(),
            })
        });
        let old = entries.subs.insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the entry of `key` under `filter`, pruning empty nodes.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let (path, slot) = parse(filter);
        let mut node = &mut self.root;
        let mut depth = 0;
        // The depth of the topmost node that goes away if the final node ends up empty: the
        // nodes from `cut` down are a chain of links ending at the final node.
        let mut cut = 0;
        for step in steps(path) {
            if depth == 0 || !node.is_link() {
                cut = depth + 1;
            }
            node = node.child_mut(step)?;
            depth += 1;
        }
        let entries = node.slot_mut(slot);
        let set = entries.as_mut()?;
        let value = set.subs.remove(key)?;
        if set.subs.is_empty() {
            *entries = None;
        }
        self.len -= 1;
        if depth > 0 && node.is_empty() {
            self.prune(path, cut);
        }
        Some(value)
    }

    /// Detaches the node at depth `cut` (>= 1) on `path` from its parent.
    fn prune(&mut self, path: Option<&str>, cut: usize) {
        let mut node = &mut self.root;
        for (depth, step) in steps(path).enumerate() {
            if depth + 1 == cut {
                node.remove_child(step);
                return;
            }
            match node.child_mut(step) {
                Some(child) => node = child,
                None => return,
            }
        }
    }

    /// The entry of `key` under exactly `filter`.
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        let (path, slot) = parse(filter);
        let mut node = &self.root;
        for step in steps(path) {
            node = node.child(step)?;
        }
        node.slot(slot)?.subs.get(key)
    }

    /// Calls `f(filter, key, value)` for every entry whose filter matches topic `name`
    /// (wildcard and `$` rules as in [`super::matches`]).
    pub fn for_each_match(&self, name: &str, mut f: impl FnMut(&ByteString, &K, &V)) {
        // [MQTT-4.7.2-1] a filter starting with a wildcard does not match a `$` topic.
        let root_wildcards = !name.starts_with('$');
        let mut stack = InlineStack::<_, INLINE_DEPTH>::new();
        if root_wildcards {
            emit(self.root.multi.as_deref(), &mut f);
        }
        descend(&self.root, name, root_wildcards, &mut stack);
        while let Some((node, rest)) = stack.pop() {
            // [MQTT-4.7.1-1] `…/#` matches its parent level and every level below.
            emit(node.multi.as_deref(), &mut f);
            match rest {
                None => emit(node.exact.as_deref(), &mut f),
                Some(rest) => descend(node, rest, true, &mut stack),
            }
        }
    }

    /// Number of (filter, key) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of nodes, root included.
    #[cfg(test)]
    pub(super) fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            count += 1;
            stack.extend(node.children.values());
            stack.extend(node.plus.as_deref());
        }
        count
    }
}

/// A match walk's work list: a node reached by the levels consumed so far, and what remains.
type Work<'t, 'n, K, V> = InlineStack<(&'t Node<K, V>, Option<&'n str>), INLINE_DEPTH>;

/// Queues the children of `node` matching the first level of `rest`: the exact child and, if
/// `wildcards`, the `+` child.
fn descend<'t, 'n, K, V>(
    node: &'t Node<K, V>,
    rest: &'n str,
    wildcards: bool,
    stack: &mut Work<'t, 'n, K, V>,
) {
    let plus = node.plus.as_deref().filter(|_| wildcards);
    if node.children.is_empty() && plus.is_none() {
        // A leaf, or a node with only `#` below it: nothing to split for.
        return;
    }
    let (level, rest) = split_level(rest);
    if let Some(child) = node.children.get(level) {
        stack.push((child, rest));
    }
    // [MQTT-4.7.1-2] `+` matches exactly one level, including an empty one.
    if let Some(plus) = plus {
        stack.push((plus, rest));
    }
}

fn emit<K, V>(entries: Option<&Entries<K, V>>, f: &mut impl FnMut(&ByteString, &K, &V)) {
    if let Some(entries) = entries {
        for (key, value) in &entries.subs {
            f(&entries.filter, key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SubscriptionTrie;

    fn matched(trie: &SubscriptionTrie<u32, char>, name: &str) -> Vec<(String, u32, char)> {
        let mut out = Vec::new();
        trie.for_each_match(name, |filter, key, value| {
            out.push((filter.to_string(), *key, *value))
        });
        out.sort();
        out
    }

    fn owned(expected: &[(&str, u32, char)]) -> Vec<(String, u32, char)> {
        expected
            .iter()
            .map(|(f, k, v)| (f.to_string(), *k, *v))
            .collect()
    }

    #[test]
    fn insert_get_replace_remove() {
        let mut trie = SubscriptionTrie::default();
        assert!(trie.is_empty());
        assert_eq!(trie.insert("a/+/c", 1, 'x'), None);
        assert_eq!(trie.insert("a/+/c", 2, 'y'), None);
        assert_eq!(trie.insert("a/+/c", 1, 'z'), Some('x'));
        assert_eq!(trie.insert("a/#", 1, 'w'), None);
        assert_eq!(trie.len(), 3);
        assert_eq!(trie.get("a/+/c", &1), Some(&'z'));
        assert_eq!(trie.get("a/+/c", &3), None);
        assert_eq!(trie.get("a/x/c", &1), None);
        assert_eq!(trie.get("a", &1), None);
        assert_eq!(trie.remove("a/+/c", &3), None);
        assert_eq!(trie.remove("a/b/c", &1), None);
        assert_eq!(trie.remove("a/+/c", &1), Some('z'));
        assert_eq!(trie.remove("a/+/c", &1), None);
        assert_eq!(trie.len(), 2);
        assert_eq!(trie.remove("a/+/c", &2), Some('y'));
        assert_eq!(trie.node_count(), 2);
        assert_eq!(trie.remove("a/#", &1), Some('w'));
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn pruning_keeps_shared_prefixes() {
        let mut trie = SubscriptionTrie::default();
        trie.insert("a/b/c/d", 1, 'x');
        trie.insert("a/b", 1, 'y');
        trie.insert("a/+/c", 1, 'z');
        assert_eq!(trie.node_count(), 7);
        trie.remove("a/b/c/d", &1);
        assert_eq!(trie.node_count(), 5);
        assert_eq!(matched(&trie, "a/b"), owned(&[("a/b", 1, 'y')]));
        trie.remove("a/b", &1);
        assert_eq!(trie.node_count(), 4);
        assert_eq!(matched(&trie, "a/q/c"), owned(&[("a/+/c", 1, 'z')]));
        trie.remove("a/+/c", &1);
        assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn matching_walks_wildcards() {
        let mut trie = SubscriptionTrie::default();
        for (i, filter) in [
            "#",
            "+",
            "+/+",
            "/+",
            "sport/#",
            "sport/tennis/+",
            "sport/+/player1",
            "$SYS/#",
            "$SYS/monitor/+",
            "+/monitor/Clients",
            "a//b",
        ]
        .into_iter()
        .enumerate()
        {
            trie.insert(filter, 0, char::from(b'a' + i as u8));
        }
        assert_eq!(
            matched(&trie, "/finance"),
            owned(&[("#", 0, 'a'), ("+/+", 0, 'c'), ("/+", 0, 'd')])
        );
        assert_eq!(
            matched(&trie, "sport"),
            owned(&[("#", 0, 'a'), ("+", 0, 'b'), ("sport/#", 0, 'e')])
        );
        assert_eq!(
            matched(&trie, "sport/tennis/player1"),
            owned(&[
                ("#", 0, 'a'),
                ("sport/#", 0, 'e'),
                ("sport/+/player1", 0, 'g'),
                ("sport/tennis/+", 0, 'f'),
            ])
        );
        assert_eq!(
            matched(&trie, "$SYS/monitor/Clients"),
            owned(&[("$SYS/#", 0, 'h'), ("$SYS/monitor/+", 0, 'i')])
        );
        assert_eq!(
            matched(&trie, "x/monitor/Clients"),
            owned(&[("#", 0, 'a'), ("+/monitor/Clients", 0, 'j')])
        );
        assert_eq!(
            matched(&trie, "a//b"),
            owned(&[("#", 0, 'a'), ("a//b", 0, 'k')])
        );
        assert_eq!(matched(&trie, "$x"), owned(&[]));
    }

    #[test]
    fn deep_topics_do_not_overflow() {
        let mut trie = SubscriptionTrie::default();
        let deep_filter = "+/".repeat(30_000) + "#";
        let deep_name = "/".repeat(60_000);
        trie.insert(&deep_filter, 1, 'x');
        trie.insert(&deep_name, 2, 'y');
        let mut count = 0;
        trie.for_each_match(&deep_name, |_, _, _| count += 1);
        assert_eq!(count, 2);
        assert_eq!(trie.remove(&deep_filter, &1), Some('x'));
        assert_eq!(trie.remove(&deep_name, &2), Some('y'));
        assert_eq!(trie.node_count(), 1);
    }
}
