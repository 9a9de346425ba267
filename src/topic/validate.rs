//! Topic name and filter rules (section 4.7) and shared subscription syntax (4.8.2).
//!
//! The codec only guarantees well-formed UTF-8; everything MQTT-specific about topic strings is
//! decided here, so the broker core and both tries agree on one definition. [`matches`] is the
//! plain reference for filter matching that the tries are tested against.

/// A `$share/{group}/{filter}` subscription split into its parts (4.8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    pub group: &'a str,
    pub filter: &'a str,
}

/// The first level of a shared subscription.
const SHARE: &str = "$share";

/// True if `name` may be used as a PUBLISH topic name: non-empty, no `+` or `#`, no U+0000
/// [MQTT-4.7.3-1] [MQTT-4.7.1-1]. (UTF-8 validity is checked by the decoder.)
pub fn is_valid_topic_name(name: &str) -> bool {
    // [MQTT-4.7.3-1] at least one character.
    !name.is_empty()
        // [MQTT-3.3.2-2] no wildcard characters in a topic name; [MQTT-4.7.3-2] no null
        // character. (One byte scan: these are ASCII, and `contains([..])` costs far more.)
        && !name.bytes().any(|b| matches!(b, b'+' | b'#' | 0))
}

/// True if `filter` is a valid topic filter: non-empty, `#` only as the whole last level,
/// `+` only as a whole level [MQTT-4.7.1-2] [MQTT-4.7.1-3], no U+0000. A `$share/` filter is
/// valid when [`parse_shared`] accepts it.
pub fn is_valid_filter(filter: &str) -> bool {
    match parse_shared(filter) {
        Some(shared) => shared.is_ok(),
        None => is_valid_plain_filter(filter),
    }
}

/// The filter rules without the shared subscription prefix.
fn is_valid_plain_filter(filter: &str) -> bool {
    // [MQTT-4.7.3-1] at least one character; [MQTT-4.7.3-2] no null character.
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        let valid = match level {
            // [MQTT-4.7.1-1] `#` is alone in its level and is the last level.
            "#" => last,
            // [MQTT-4.7.1-2] `+` occupies an entire level.
            "+" => true,
            _ => !level.contains(['+', '#']),
        };
        if !valid {
            return false;
        }
    }
    true
}

/// Splits `$share/group/filter`. Returns `None` for a non-shared filter, `Some(Err(()))` for a
/// malformed shared filter (empty group, group containing `+`/`#`, missing or invalid filter)
/// [MQTT-4.8.2-1] [MQTT-4.8.2-2].
///
/// `$share` on its own is treated as a malformed shared filter as well.
pub fn parse_shared(filter: &str) -> Option<Result<SharedFilter<'_>, ()>> {
    let rest = filter.strip_prefix(SHARE)?;
    let rest = match rest.strip_prefix('/') {
        Some(rest) => rest,
        None if rest.is_empty() => return Some(Err(())),
        // `$shared/...`, `$sharefoo`: an ordinary filter.
        None => return None,
    };
    let Some((group, filter)) = rest.split_once('/') else {
        // `$share/group` without a filter.
        return Some(Err(()));
    };
    // [MQTT-4.8.2-1] the ShareName is at least one character long.
    // [MQTT-4.8.2-2] it does not contain `/`, `+` or `#` (`/` is excluded by the split).
    let group_ok = !group.is_empty() && !group.contains(['+', '#', '\0']);
    // The filter after the ShareName follows the ordinary rules (and is non-empty).
    if group_ok && is_valid_plain_filter(filter) {
        Some(Ok(SharedFilter { group, filter }))
    } else {
        Some(Err(()))
    }
}

/// Does `filter` match topic `name`? Implements `+`, `#` (incl. parent level: `a/#` matches `a`)
/// and the rule that a topic starting with `$` is not matched by a filter starting with a
/// wildcard [MQTT-4.7.2-1].
///
/// `filter` is a plain (not `$share/`) filter and is expected to be valid; in an invalid one a
/// `#` that is not the last level is compared literally, as the tries do.
pub fn matches(filter: &str, name: &str) -> bool {
    // [MQTT-4.7.2-1]
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut name_levels = name.split('/');
    loop {
        match (filter_levels.next(), name_levels.next()) {
            // [MQTT-4.7.1-1] `#` matches the parent level and any number of child levels.
            (Some("#"), _) if filter_levels.clone().next().is_none() => return true,
            // [MQTT-4.7.1-2] `+` matches exactly one level, which may be empty.
            (Some("+"), Some(_)) => {}
            (Some(f), Some(n)) if f == n => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        let cases = [
            ("sport/tennis/player1", true),
            ("sport", true),
            ("/", true),
            ("//", true),
            ("/finance", true),
            ("$SYS/monitor/Clients", true),
            ("a b/ c", true),
            ("", false),
            ("sport/+", false),
            ("sport/#", false),
            ("sport+", false),
            ("a#b", false),
            ("a/b\0", false),
            ("\0", false),
        ];
        for (name, valid) in cases {
            assert_eq!(is_valid_topic_name(name), valid, "{name:?}");
        }
    }

    #[test]
    fn filters() {
        let cases = [
            // 4.7.1.2
            ("sport/tennis/player1/#", true),
            ("sport/#", true),
            ("#", true),
            ("sport/tennis#", false),
            ("sport/tennis/#/ranking", false),
            ("#/", false),
            ("##", false),
            // 4.7.1.3
            ("+", true),
            ("+/tennis/#", true),
            ("sport+", false),
            ("sport/+/player1", true),
            ("/+", true),
            ("+/+", true),
            ("+/", true),
            ("++", false),
            ("a/+b", false),
            // 4.7.2
            ("$SYS/#", true),
            ("$SYS/monitor/+", true),
            // empty levels
            ("/", true),
            ("a//b", true),
            ("sport", true),
            ("", false),
            ("a/b\0", false),
            ("\0/#", false),
            // 4.8.2
            ("$share/g/a/b", true),
            ("$share/g/#", true),
            ("$share/g/+/x", true),
            ("$share/g//", true),
            ("$share/g/$SYS/#", true),
            ("$share//a", false),
            ("$share/g", false),
            ("$share/g/", false),
            ("$share/", false),
            ("$share", false),
            ("$share/g+/a", false),
            ("$share/g#/a", false),
            ("$share/+/a", false),
            ("$share/#", false),
            ("$share/g/a#", false),
            ("$share/g/#/a", false),
            ("$share/g\0/a", false),
            // not shared subscriptions
            ("$shared/g/a", true),
            ("$sharefoo", true),
            ("a/$share/g", true),
        ];
        for (filter, valid) in cases {
            assert_eq!(is_valid_filter(filter), valid, "{filter:?}");
        }
    }

    #[test]
    fn shared() {
        let ok = |group, filter| Some(Ok(SharedFilter { group, filter }));
        assert_eq!(parse_shared("$share/g/a/b"), ok("g", "a/b"));
        assert_eq!(parse_shared("$share/group1/#"), ok("group1", "#"));
        assert_eq!(parse_shared("$share/g//"), ok("g", "/"));
        assert_eq!(parse_shared("$share/g/$share/x"), ok("g", "$share/x"));
        assert_eq!(parse_shared("$share"), Some(Err(())));
        assert_eq!(parse_shared("$share/"), Some(Err(())));
        assert_eq!(parse_shared("$share/g"), Some(Err(())));
        assert_eq!(parse_shared("$share/g/"), Some(Err(())));
        assert_eq!(parse_shared("$share//a"), Some(Err(())));
        assert_eq!(parse_shared("$share/g+/a"), Some(Err(())));
        assert_eq!(parse_shared("$share/g/a+"), Some(Err(())));
        assert_eq!(parse_shared("a/b"), None);
        assert_eq!(parse_shared("$SYS/#"), None);
        assert_eq!(parse_shared("$shared/g/a"), None);
        assert_eq!(parse_shared("#"), None);
    }

    #[test]
    fn matching() {
        let cases = [
            // 4.7.1.2
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/tennis/player1/#", "sport/tennis/player2", false),
            ("sport/#", "sport", true),
            ("sport/#", "sport/", true),
            ("sport/#", "sports", false),
            ("a/#", "a", true),
            ("#", "sport", true),
            ("#", "/", true),
            ("#", "a/b/c", true),
            // 4.7.1.3
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player2", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("+", "finance", true),
            ("+/tennis/#", "sport/tennis", true),
            ("+/tennis/#", "sport/tennis/x/y", true),
            ("+/tennis/#", "sport/golf", false),
            ("sport/+/player1", "sport/tennis/player1", true),
            ("sport/+/player1", "sport//player1", true),
            // empty levels are significant
            ("a//b", "a//b", true),
            ("a//b", "a/b", false),
            ("a/+/b", "a//b", true),
            ("/a", "a", false),
            ("a", "a/", false),
            ("a/", "a/", true),
            ("+/", "a/", true),
            ("+/+", "a", false),
            // exact
            ("sport/tennis", "sport/tennis", true),
            ("sport/tennis", "Sport/tennis", false),
            ("sport", "sport/tennis", false),
            // 4.7.2 `$` topics
            ("#", "$SYS/x", false),
            ("#", "$SYS", false),
            ("+", "$SYS", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("+/#", "$SYS/x", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/#", "$SYS", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/Clients", "$SYS/monitor/Clients", true),
            ("a/+", "a/$x", true),
            ("a/#", "a/$x/y", true),
            ("+/$x", "a/$x", true),
            // a `#` that is not the last level is literal
            ("a/#/b", "a/x/b", false),
        ];
        for (filter, name, expected) in cases {
            assert_eq!(matches(filter, name), expected, "{filter:?} vs {name:?}");
        }
    }
}
