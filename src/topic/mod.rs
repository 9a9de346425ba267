//! Topic names and filters: validation (4.7), matching, the subscription index and the retained
//! message store.
//!
//! Both indexes are level tries, so a publish walks at most the levels of its topic (times the
//! wildcard branches) instead of scanning every filter.

mod levels;
mod retained;
mod stack;
mod trie;
mod validate;

#[cfg(test)]
mod tests;

pub use retained::RetainedStore;
pub use trie::SubscriptionTrie;
pub use validate::{is_valid_filter, is_valid_topic_name, matches, parse_shared, SharedFilter};
