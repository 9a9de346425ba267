//! Topic name and filter rules (section 4.7).

/// A `$share/{group}/{filter}` subscription split into its parts (4.8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    pub group: &'a str,
    pub filter: &'a str,
}

/// True if `name` may be used as a PUBLISH topic name: non-empty, no `+` or `#`, no U+0000
/// [MQTT-4.7.3-1] [MQTT-4.7.1-1]. (UTF-8 validity is checked by the decoder.)
pub fn is_valid_topic_name(name: &str) -> bool {
    todo!()
}

/// True if `filter` is a valid topic filter: non-empty, `#` only as the whole last level,
/// `+` only as a whole level [MQTT-4.7.1-2] [MQTT-4.7.1-3], no U+0000. A `$share/` filter is
/// valid when [`parse_shared`] accepts it.
pub fn is_valid_filter(filter: &str) -> bool {
    todo!()
}

/// Splits `$share/group/filter`. Returns `None` for a non-shared filter, `Some(Err(()))` for a
/// malformed shared filter (empty group, group containing `+`/`#`, missing or invalid filter)
/// [MQTT-4.8.2-1] [MQTT-4.8.2-2].
pub fn parse_shared(filter: &str) -> Option<Result<SharedFilter<'_>, ()>> {
    todo!()
}

/// Does `filter` match topic `name`? Implements `+`, `#` (incl. parent level: `a/#` matches `a`)
/// and the rule that a topic starting with `$` is not matched by a filter starting with a
/// wildcard [MQTT-4.7.2-1].
pub fn matches(filter: &str, name: &str) -> bool {
    todo!()
}
