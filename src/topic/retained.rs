//! The retained message store: a trie over topic names, queried with topic filters.
//!
//! A new subscription must find the retained messages its filter matches without scanning the
//! whole store. Topic names contain no wildcards, so here the filter drives the walk: a literal
//! level follows one child, `+` every child, `#` the whole subtree. Walks are iterative (see
//! [`super::stack`]), and removal prunes empty nodes.

use ahash::AHashMap;

use super::levels::split_level;
use super::stack::InlineStack;

/// Levels a query handles before its work list spills to the heap.
const INLINE_DEPTH: usize = 32;

/// Retained messages by topic name. `M` is the stored message type.
#[derive(Debug)]
pub struct RetainedStore<M> {
    root: Node<M>,
    /// Number of retained messages.
    len: usize,
}

#[derive(Debug)]
struct Node<M> {
    /// Children by level (including the empty level).
    children: AHashMap<Box<str>, Node<M>>,
    /// The message retained on the topic ending at this node.
    retained: Option<Box<Retained<M>>>,
}

#[derive(Debug)]
struct Retained<M> {
    topic: Box<str>,
    msg: M,
}

/// A query's pending work.
enum Task<'s, 'f, M> {
    /// `node` was reached by the filter levels consumed so far; `rest` are the remaining ones.
    Walk(&'s Node<M>, Option<&'f str>),
    /// Every message in the subtree of `node` matches (the filter ended in `#`).
    All(&'s Node<M>),
}

impl<M> Clone for Task<'_, '_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for Task<'_, '_, M> {}

type Work<'s, 'f, M> = InlineStack<Task<'s, 'f, M>, INLINE_DEPTH>;

impl<M> Default for Node<M> {
    fn default() -> Self {
        Self {
            children: AHashMap::default(),
            retained: None,
        }
    }
}

/// Dropping iteratively: topic names may be tens of thousands of levels deep, too deep for the
/// recursive drop glue on a task's stack.
impl<M> Drop for Node<M> {
    fn drop(&mut self) {
        let mut stack: Vec<Self> = self.children.drain().map(|(_, child)| child).collect();
        while let Some(mut node) = stack.pop() {
            stack.extend(node.children.drain().map(|(_, child)| child));
            // `node` is childless now, so dropping it does not recurse.
        }
    }
}

impl<M> Node<M> {
    /// No message and a single child: kept alive only by the node below it.
    fn is_link(&self) -> bool {
        self.retained.is_none() && self.children.len() == 1
    }
}

impl<M> Default for RetainedStore<M> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<M> RetainedStore<M> {
    /// Stores `msg` as the retained message of `topic`, replacing any previous one.
    pub fn insert(&mut self, topic: &str, msg: M) -> Option<M> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        match &mut node.retained {
            Some(retained) => Some(std::mem::replace(&mut retained.msg, msg)),
            slot @ None => {
                let topic = topic.into();
                *slot = Some(Box::new(Retained { topic, msg }));
                self.len += 1;
                None
            }
        }
    }

    /// Removes the retained message of `topic` (an empty retained payload does this [MQTT-3.3.1-6]).
    pub fn remove(&mut self, topic: &str) -> Option<M> {
        let mut node = &mut self.root;
        // The depth of the topmost node that goes away if the final node ends up empty: the
        // nodes from `cut` down are a chain of links ending at the final node.
        let mut cut = 0;
        for (depth, level) in topic.split('/').enumerate() {
            if depth == 0 || !node.is_link() {
                cut = depth + 1;
            }
            node = node.children.get_mut(level)?;
        }
        let retained = node.retained.take()?;
        self.len -= 1;
        if node.children.is_empty() {
            self.prune(topic, cut);
        }
        Some(retained.msg)
    }

    /// Detaches the node at depth `cut` (>= 1) on `topic` from its parent.
    fn prune(&mut self, topic: &str, cut: usize) {
        let mut node = &mut self.root;
        for (depth, level) in topic.split('/').enumerate() {
            if depth + 1 == cut {
                node.children.remove(level);
                return;
            }
            match node.children.get_mut(level) {
                Some(child) => node = child,
                None => return,
            }
        }
    }

    /// Calls `f(topic, msg)` for every retained message whose topic matches `filter`, with the
    /// same `$` rule as subscriptions. `f` returns `false` to drop the message (e.g. expired).
    ///
    /// `filter` is a plain (not `$share/`) filter, with the semantics of [`super::matches`].
    pub fn for_each_match(&mut self, filter: &str, mut f: impl FnMut(&str, &M) -> bool) {
        let mut dropped = Vec::new();
        let mut visit = |node: &Node<M>| {
            if let Some(retained) = &node.retained {
                if !f(&retained.topic, &retained.msg) {
                    dropped.push(retained.topic.clone());
                }
            }
        };
        let mut stack = Work::new();
        let (level, rest) = split_level(filter);
        step(&self.root, level, rest, true, &mut stack, &mut visit);
        while let Some(task) = stack.pop() {
            match task {
                Task::All(node) => {
                    visit(node);
                    for child in node.children.values() {
                        stack.push(Task::All(child));
                    }
                }
                Task::Walk(node, None) => visit(node),
                Task::Walk(node, Some(rest)) => {
                    let (level, rest) = split_level(rest);
                    step(node, level, rest, false, &mut stack, &mut visit);
                }
            }
        }
        for topic in dropped {
            self.remove(&topic);
        }
    }

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
        }
        count
    }
}

/// Applies filter level `level` (followed by `rest`) at `node`.
fn step<'s, 'f, M>(
    node: &'s Node<M>,
    level: &'f str,
    rest: Option<&'f str>,
    at_root: bool,
    stack: &mut Work<'s, 'f, M>,
    visit: &mut impl FnMut(&Node<M>),
) {
    // [MQTT-4.7.2-1] a wildcard first level does not match a topic starting with `$`.
    let visible = |name: &str| !(at_root && name.starts_with('$'));
    match (level, rest) {
        // [MQTT-4.7.1-1] `#` matches the parent level and every level below it.
        ("#", None) => {
            visit(node);
            for (name, child) in &node.children {
                if visible(name) {
                    stack.push(Task::All(child));
                }
            }
        }
        // [MQTT-4.7.1-2] `+` matches exactly one level, including an empty one.
        ("+", _) => {
            for (name, child) in &node.children {
                if visible(name) {
                    stack.push(Task::Walk(child, rest));
                }
            }
        }
        _ => {
            if let Some(child) = node.children.get(level) {
                stack.push(Task::Walk(child, rest));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RetainedStore;

    fn matched(store: &mut RetainedStore<u32>, filter: &str) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        store.for_each_match(filter, |topic, msg| {
            out.push((topic.to_owned(), *msg));
            true
        });
        out.sort();
        out
    }

    fn topics(store: &mut RetainedStore<u32>, filter: &str) -> Vec<String> {
        matched(store, filter).into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn insert_replace_remove() {
        let mut store = RetainedStore::default();
        assert!(store.is_empty());
        assert_eq!(store.insert("a/b", 1), None);
        assert_eq!(store.insert("a/b", 2), Some(1));
        assert_eq!(store.insert("a", 3), None);
        assert_eq!(store.len(), 2);
        assert_eq!(store.remove("a/b/c"), None);
        assert_eq!(store.remove("a/b"), Some(2));
        assert_eq!(store.remove("a/b"), None);
        assert_eq!(store.node_count(), 2);
        assert_eq!(store.remove("a"), Some(3));
        assert!(store.is_empty());
        assert_eq!(store.node_count(), 1);
    }

    #[test]
    fn queries() {
        let mut store = RetainedStore::default();
        for (i, topic) in [
            "sport",
            "sport/tennis/player1",
            "sport/tennis/player2",
            "sport/golf",
            "/finance",
            "$SYS/monitor/Clients",
            "a//b",
        ]
        .into_iter()
        .enumerate()
        {
            store.insert(topic, i as u32);
        }
        assert_eq!(
            topics(&mut store, "sport/#"),
            [
                "sport",
                "sport/golf",
                "sport/tennis/player1",
                "sport/tennis/player2"
            ]
        );
        assert_eq!(topics(&mut store, "sport/+"), ["sport/golf"]);
        assert_eq!(
            topics(&mut store, "sport/+/player1"),
            ["sport/tennis/player1"]
        );
        assert_eq!(topics(&mut store, "+/+"), ["/finance", "sport/golf"]);
        assert_eq!(topics(&mut store, "/+"), ["/finance"]);
        assert_eq!(topics(&mut store, "+"), ["sport"]);
        assert_eq!(topics(&mut store, "#").len(), 6);
        assert!(topics(&mut store, "+/monitor/Clients").is_empty());
        assert_eq!(topics(&mut store, "$SYS/#"), ["$SYS/monitor/Clients"]);
        assert_eq!(
            topics(&mut store, "$SYS/monitor/+"),
            ["$SYS/monitor/Clients"]
        );
        assert_eq!(topics(&mut store, "a/+/b"), ["a//b"]);
        assert!(topics(&mut store, "a/b").is_empty());
    }

    #[test]
    fn rejected_messages_are_dropped() {
        let mut store = RetainedStore::default();
        store.insert("a/b/c", 1);
        store.insert("a/b", 2);
        store.insert("a/x/y/z", 3);
        store.insert("q", 4);
        store.for_each_match("a/#", |_, msg| *msg == 2);
        assert_eq!(store.len(), 2);
        assert_eq!(store.node_count(), 4);
        assert_eq!(
            matched(&mut store, "#"),
            [("a/b".into(), 2), ("q".into(), 4)]
        );
        store.for_each_match("#", |_, _| false);
        assert!(store.is_empty());
        assert_eq!(store.node_count(), 1);
    }

    #[test]
    fn deep_topics_do_not_overflow() {
        let mut store = RetainedStore::default();
        let deep = "/".repeat(60_000);
        store.insert(&deep, 1);
        assert_eq!(topics(&mut store, "#").len(), 1);
        assert_eq!(topics(&mut store, &deep).len(), 1);
        let plus = "+/".repeat(60_000) + "+";
        assert_eq!(topics(&mut store, &plus).len(), 1);
        store.insert("/x", 2);
        drop(store);
    }
}
