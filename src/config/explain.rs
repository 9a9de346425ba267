//! Error messages a user can act on, from serde's.
//!
//! serde reports a problem in its own terms ("invalid type: integer `5`, expected struct
//! Limits", "unknown field `recieve_maximum`, expected one of ..."); `serde_path_to_error`
//! adds the key path. Here that becomes `limits: expected a mapping with the keys ..., found
//! number 5` or `limits.recieve_maximum: unknown key (did you mean receive_maximum?); expected
//! one of ...`: the path first, what was expected in YAML words, what was found, and a hint for
//! the usual mistakes. The valid keys come from the structs themselves (a serialized
//! [`Config::default`]), so nothing here lists them.

use serde_path_to_error::Segment;
use serde_yaml::{Location, Value};

use super::Config;

/// The message for a document that deserialized into the wrong shape, e.g.
/// `limits.max_inflight: invalid type: expected u16 (0..=65535), found string "lots" at line 2
/// column 17`.
pub(super) fn schema_error(
    error: &serde_path_to_error::Error<serde_yaml::Error>,
    location: Option<Location>,
) -> String {
    let segments: Vec<String> = error.path().iter().map(segment_name).collect();
    let (path, problem) = problem(&segments, &error.inner().to_string());
    let mut out = if path.is_empty() {
        problem
    } else {
        format!("{path}: {problem}")
    };
    if let Some(location) = location {
        out.push_str(&format!(
            " at line {} column {}",
            location.line(),
            location.column()
        ));
    }
    out
}

/// The message for text that is not valid YAML. `schema` is what reading the text straight into
/// [`Config`] reported: it stops earlier than the YAML parser at an unquoted IPv6 address
/// (`tcp: [::]:1883`, where `[` opens a flow sequence), so it can say what to do.
pub(super) fn syntax_error(
    error: &serde_yaml::Error,
    schema: Option<serde_path_to_error::Error<serde_yaml::Error>>,
) -> String {
    let mut message = format!("invalid YAML: {error}");
    if let Some(schema) = schema.filter(|e| e.inner().to_string().contains("quote IPv6")) {
        message.push_str(&format!(
            "; {}: quote IPv6 addresses, e.g. \"[::]:1883\"",
            schema.path()
        ));
    }
    message
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub(super) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|candidate| (strsim::levenshtein(&word, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 4).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn segment_name(segment: &Segment) -> String {
    match segment {
        Segment::Map { key } => key.clone(),
        Segment::Seq { index } => index.to_string(),
        Segment::Enum { variant } => variant.clone(),
        Segment::Unknown => "?".into(),
    }
}

/// The key path to report and what is wrong there, from serde's message at `segments`.
fn problem(segments: &[String], message: &str) -> (String, String) {
    let path = segments.join(".");
    let parent = segments.split_last().map_or(segments, |(_, parent)| parent);
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return (path, unknown_key(parent, name));
    }
    let invalid_type = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.rsplit_once(", expected "));
    if let Some((unexpected, "field identifier")) = invalid_type {
        return (
            parent.join("."),
            format!(
                "unexpected key {}: keys are names; expected one of {}",
                found(unexpected),
                keys_at(parent).join(", ")
            ),
        );
    }
    if let Some((unexpected, expected)) = invalid_type {
        if expected.starts_with("struct ") {
            let what = if segments.is_empty() {
                "sections"
            } else {
                "keys"
            };
            let problem = format!(
                "expected a mapping with the {what} {}, found {}",
                keys_at(segments).join(", "),
                found(unexpected)
            );
            return (path, problem);
        }
        if integer_range(expected).is_some() && found(unexpected).starts_with("number ") {
            // A negative or fractional number where a count belongs: say it is out of range.
            let problem = format!(
                "invalid value {}: expected {}",
                value_of(unexpected),
                expected_text(expected)
            );
            return (path, problem);
        }
        let problem = format!(
            "invalid type: expected {}, found {}{}",
            expected_text(expected),
            found(unexpected),
            hint(unexpected, expected)
        );
        return (path, problem);
    }
    if let Some((unexpected, expected)) = message
        .strip_prefix("invalid value: ")
        .and_then(|m| m.rsplit_once(", expected "))
    {
        let problem = format!(
            "invalid value {}: expected {}",
            value_of(unexpected),
            expected_text(expected)
        );
        return (path, problem);
    }
    if let Some((variant, expected)) = message
        .strip_prefix("unknown variant `")
        .and_then(|m| m.split_once("`, expected "))
    {
        let expected = expected.replace('`', "");
        return (
            path,
            format!("invalid value {variant:?}: expected {expected}"),
        );
    }
    (path, message.to_string())
}

/// An unknown key under `parent`, with a suggestion when the key is misspelt or belongs to
/// another section.
fn unknown_key(parent: &[String], name: &str) -> String {
    let valid = keys_at(parent);
    let sections = keys_at(&[]);
    let elsewhere = sections.iter().find_map(|section| {
        let here = matches!(parent, [only] if only == section);
        let has = keys_at(std::slice::from_ref(section))
            .iter()
            .any(|k| k == name);
        (!here && has).then(|| format!("{section}.{name}"))
    });
    let hint =
        elsewhere.or_else(|| closest(name, valid.iter().map(String::as_str)).map(Into::into));
    let hint = hint.map_or(String::new(), |h| format!(" (did you mean {h}?)"));
    format!("unknown key{hint}; expected one of {}", valid.join(", "))
}

/// The keys of the mapping at `path` in the default configuration (the sections for an empty
/// path): exactly the fields the structs declare, in their order.
fn keys_at(path: &[String]) -> Vec<String> {
    // Lists hold no entry by default: one example entry shows an entry's keys.
    let config = Config {
        bridges: vec![super::bridges::BridgeConfig::example()],
        ..Config::default()
    };
    let Ok(mut value) = serde_yaml::to_value(config) else {
        return Vec::new();
    };
    for key in path {
        let inner = match key.parse::<usize>() {
            Ok(index) => value.get(index),
            Err(_) => value.get(key.as_str()),
        };
        match inner {
            Some(inner) => value = inner.clone(),
            None => return Vec::new(),
        }
    }
    match value {
        Value::Mapping(mapping) => mapping
            .keys()
            .filter_map(|key| key.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// serde's description of an unexpected value (`integer `5``, `string "x"`, `map`), in YAML
/// words for "found ...".
fn found(unexpected: &str) -> String {
    let ticked = |prefix: &str| {
        unexpected
            .strip_prefix(prefix)
            .map(|rest| rest.trim_matches('`').to_string())
    };
    if let Some(number) = ticked("integer ").or_else(|| ticked("floating point ")) {
        return format!("number {number}");
    }
    if let Some(boolean) = ticked("boolean ") {
        return format!("boolean {boolean}");
    }
    match unexpected {
        "sequence" => "a sequence".into(),
        "map" => "a mapping".into(),
        "unit value" => "null".into(),
        other => other.into(),
    }
}

/// The value itself, for "invalid value ...": `70000`, `"localhost:1883"`.
fn value_of(unexpected: &str) -> String {
    let described = found(unexpected);
    for prefix in ["number ", "boolean ", "string "] {
        if let Some(value) = described.strip_prefix(prefix) {
            return value.into();
        }
    }
    described
}

/// The range of an unsigned integer type named by serde.
fn integer_range(expected: &str) -> Option<u64> {
    Some(match expected {
        "u8" => u8::MAX.into(),
        "u16" => u16::MAX.into(),
        "u32" => u32::MAX.into(),
        "u64" => u64::MAX,
        "usize" => usize::MAX as u64,
        _ => return None,
    })
}

/// serde's "expected ..." in YAML words.
fn expected_text(expected: &str) -> String {
    if let Some(max) = integer_range(expected) {
        return format!("{expected} (0..={max})");
    }
    match expected {
        "a boolean" => "true or false".into(),
        "path string" => "a file path or null".into(),
        other => other.into(),
    }
}

/// A hint for the usual mistakes serde cannot know about.
fn hint(unexpected: &str, expected: &str) -> &'static str {
    let text = unexpected
        .strip_prefix("string \"")
        .and_then(|s| s.strip_suffix('"'));
    match text {
        Some(text)
            if integer_range(expected).is_some()
                && text.replace('_', "").parse::<u64>().is_ok() =>
        {
            " (write numbers without quotes or `_` separators)"
        }
        _ => "",
    }
}
