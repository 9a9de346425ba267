//! MQTT topic names as NATS subjects and KV keys (proto-ext/cluster.md "Subjects").
//!
//! A topic name may hold what a NATS subject cannot carry as it is: `.` (the subject's token
//! separator), `*` and `>` (wildcards), whitespace, empty levels (a subject has no empty
//! tokens), non-ASCII. So each topic level becomes one token: the bytes `A-Z a-z 0-9 _ -`
//! stay, every other byte is `=HH` (two upper-case hex digits), and an empty level is `=`
//! alone. The mapping is one-to-one (a token decodes to one level, and only canonical tokens
//! decode), and its tokens are valid KV keys too (`[-/_=.a-zA-Z0-9]+`).

/// Longest encoded topic sent over NATS: a subject lives in NATS's control line (4096 bytes
/// in nats-server) beside a prefix, a reply subject and sizes. A longer topic stays on its
/// node (counted and logged by the cluster actor).
pub const MAX_ENCODED: usize = 3072;

/// An upper-case hex digit of `n` (below 16).
fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n & 15), 16)
        .unwrap_or('0')
        .to_ascii_uppercase()
}

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The tokens of `topic`, joined by `.`.
pub fn encode_topic(topic: &str) -> String {
    let mut out = String::with_capacity(topic.len() + 8);
    for (i, level) in topic.split('/').enumerate() {
        if i > 0 {
            out.push('.');
        }
        if level.is_empty() {
            out.push('=');
            continue;
        }
        for b in level.bytes() {
            if plain(b) {
                out.push(b as char);
            } else {
                out.push('=');
                out.push(hex_digit(b >> 4));
                out.push(hex_digit(b & 15));
            }
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The topic of `encoded` tokens; `None` when they are not what [`encode_topic`] writes.
pub fn decode_topic(encoded: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(encoded.len());
    for (i, token) in encoded.split('.').enumerate() {
        if i > 0 {
            bytes.push(b'/');
        }
        if token == "=" {
            continue;
        }
        if token.is_empty() {
            return None;
        }
        let mut t = token.bytes();
        while let Some(b) = t.next() {
            match b {
                b'=' => {
                    let b = (hex(t.next()?)? << 4) | hex(t.next()?)?;
                    // Canonical only: a plain byte is never escaped.
                    if plain(b) {
                        return None;
                    }
                    bytes.push(b);
                }
                b if plain(b) => bytes.push(b),
                _ => return None,
            }
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(encode_topic("a/b"), "a.b");
        assert_eq!(encode_topic("sensors/room-1/t_1"), "sensors.room-1.t_1");
        assert_eq!(encode_topic("a.b/*/>"), "a=2Eb.=2A.=3E");
        assert_eq!(encode_topic("/a//"), "=.a.=.=");
        assert_eq!(encode_topic("$app/x y"), "=24app.x=20y");
        assert_eq!(encode_topic("é"), "=C3=A9");
        assert_eq!(encode_topic("a=b"), "a=3Db");
        assert_eq!(encode_topic(""), "=");
    }

    #[test]
    fn only_canonical_tokens_decode() {
        assert_eq!(decode_topic("a=2Eb"), Some("a.b".into()));
        assert_eq!(decode_topic("=41"), None, "A is never escaped");
        assert_eq!(decode_topic("a=2e"), None, "lower-case hex");
        assert_eq!(decode_topic("a=2"), None);
        assert_eq!(decode_topic("a..b"), None);
        assert_eq!(decode_topic("a*"), None);
        assert_eq!(decode_topic("=FF"), None, "not UTF-8");
    }

    fn valid_subject_and_key(s: &str) -> bool {
        !s.is_empty()
            && s.split('.').all(|t| !t.is_empty())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_=.".contains(&b))
    }

    proptest! {
        #[test]
        fn round_trip(topic in "\\PC{0,40}") {
            let encoded = encode_topic(&topic);
            prop_assert!(valid_subject_and_key(&encoded), "{encoded}");
            prop_assert_eq!(decode_topic(&encoded), Some(topic));
        }

        #[test]
        fn levels_map_to_tokens(levels in proptest::collection::vec("[a-z.*> $=é]{0,4}", 1..6)) {
            let topic = levels.join("/");
            prop_assert_eq!(encode_topic(&topic).split('.').count(), levels.len());
        }

        #[test]
        fn distinct_topics_distinct_subjects(a in "[a-z./=]{0,6}", b in "[a-z./=]{0,6}") {
            prop_assume!(a != b);
            prop_assert_ne!(encode_topic(&a), encode_topic(&b));
        }
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    /// Every row of the table in proto-ext/cluster.md is what the code writes.
    #[test]
    fn the_documented_table_holds() {
        let doc = include_str!("../../proto-ext/cluster.md");
        let mut rows = 0;
        for line in doc.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() != 4 || !cells[1].starts_with('`') || cells[1] == "`topic`" {
                continue;
            }
            let (topic, tokens) = (cells[1].trim_matches('`'), cells[2].trim_matches('`'));
            assert_eq!(encode_topic(topic), tokens, "{line}");
            assert_eq!(decode_topic(tokens).as_deref(), Some(topic), "{line}");
            rows += 1;
        }
        assert_eq!(rows, 7, "the table has seven examples");
    }
}
