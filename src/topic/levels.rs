//! Level-by-level reading of topic strings, shared by the two tries.
//!
//! A string still to be walked is an `Option<&str>`: `Some(s)` means the levels of `s` remain
//! (`Some("")` is one empty level), `None` means no level remains. This lets a walk remember
//! its position in two words and split lazily, without collecting levels.

/// Splits the next level off `rest`: `"a/b"` gives `("a", Some("b"))`, `"a"` gives `("a", None)`.
pub(super) fn split_level(rest: &str) -> (&str, Option<&str>) {
    // A byte scan: levels are short, and `split_once(char)` costs more to set up than this
    // loop takes (callgrind: ~250 instructions per call). `/` is ASCII, so the split is on a
    // character boundary.
    match rest.bytes().position(|b| b == b'/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    }
}

/// The levels of a remaining path, in order.
pub(super) fn levels(rest: Option<&str>) -> impl Iterator<Item = &str> + Clone {
    rest.into_iter().flat_map(|s| s.split('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting() {
        assert_eq!(split_level("a/b/c"), ("a", Some("b/c")));
        assert_eq!(split_level("a"), ("a", None));
        assert_eq!(split_level(""), ("", None));
        assert_eq!(split_level("/"), ("", Some("")));
        assert_eq!(levels(None).count(), 0);
        assert_eq!(levels(Some("")).collect::<Vec<_>>(), [""]);
        assert_eq!(levels(Some("a//b")).collect::<Vec<_>>(), ["a", "", "b"]);
    }
}
