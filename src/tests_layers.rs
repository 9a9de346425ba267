//! Layers only look down: a check over the source tree, so an upward import or a cycle between
//! sibling files fails `cargo test --lib` instead of waiting for a reviewer.
//!
//! Two rules:
//! - Between the crate's top-level modules: a module imports (`crate::NAME`) only modules of a
//!   strictly lower layer in [`LAYERS`] (so never one of its own layer or above).
//! - Within a directory: the files that are siblings (`quic.rs`, `early.rs`...) import each other
//!   (`super::NAME`, `crate::dir::NAME`) without a cycle. `mod.rs` is left out: it declares its
//!   children and re-exports them, and they use what it defines.
//!
//! Comments and `#[cfg(test)]` modules are not read: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crate's top-level modules, lowest layer first. A module missing here counts as the top
/// layer: nothing below may import it. A new module goes into the row of what it is.
const LAYERS: &[&[&str]] = &[
    // Sans-IO building blocks with no dependency inside the crate.
    &["codec", "rate", "fdlimit", "ipnet", "udp_buffers"],
    &["topic", "config"],
    &["auth"],
    // The sans-IO broker core.
    &["broker"],
    // The store's writer task; what connection tasks and the broker task pass each other;
    // packets over a byte stream (for the transports and the client alike).
    &["store", "handoff", "framing"],
    // Glue around the core: the server's transports; the bundled client (over the codec only).
    &["transport", "client"],
    &["server", "bench"],
    // Bridges (two clients, one connected to the server in-process), the admin HTTP listener
    // (queries the running server), `mqttd ctl` (its HTTP client) and the cluster actor (NATS
    // beside the broker task).
    &["bridge", "admin", "ctl", "cluster"],
    &["app", "cli", "fuzzing"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|row| row.contains(&module))
        .unwrap_or(LAYERS.len())
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of a file without comments and without its `#[cfg(test)]` modules (which by
/// convention end the file or live in files of their own).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            if lines
                .peek()
                .is_some_and(|next| next.trim_end().ends_with(';'))
            {
                // `mod tests;`: a file of its own, skipped by name below.
                lines.next();
                continue;
            }
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line.split(" // ").next().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn is_test_file(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "tests")
        || path
            .file_stem()
            .is_some_and(|s| s.to_string_lossy().starts_with("tests"))
}

/// The names that follow `prefix` in `code`: `prefix NAME` and each item of `prefix {A, B::C}`.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The first segment of every path at the group's top level.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_ascii_alphanumeric() || c == '_') => {
                        names.insert(ident(&group[i..]));
                        start = false;
                    }
                    c if start && !c.is_whitespace() => start = false,
                    _ => {}
                }
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names.remove("");
    names
}

#[test]
fn top_level_modules_import_only_lower_layers() {
    let mut upward = Vec::new();
    for path in rust_files(&src()) {
        let relative = path.strip_prefix(src()).unwrap();
        let module = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if matches!(module.as_str(), "lib" | "main") || is_test_file(&path) {
            continue;
        }
        for used in names_after(&code(&path), "crate::") {
            let top_level =
                src().join(&used).is_dir() || src().join(format!("{used}.rs")).is_file();
            if used != module && top_level && layer_of(&used) >= layer_of(&module) {
                upward.push(format!("{} imports crate::{used}", relative.display()));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not look down (layers in src/tests_layers.rs):\n{}",
        upward.join("\n")
    );
}

#[test]
fn sibling_files_import_each_other_without_a_cycle() {
    let mut cycles = Vec::new();
    for dir in std::iter::once(src()).chain(
        rust_files(&src())
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect::<BTreeSet<_>>(),
    ) {
        let siblings: BTreeMap<String, PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs") && !is_test_file(p))
            .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
            .filter(|(name, _)| !matches!(name.as_str(), "mod" | "lib" | "main"))
            .collect();
        let path_in_crate = dir
            .strip_prefix(src())
            .unwrap()
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("::");
        let graph: BTreeMap<&str, BTreeSet<String>> = siblings
            .iter()
            .map(|(name, path)| {
                let code = code(path);
                let mut used = names_after(&code, "super::");
                if !path_in_crate.is_empty() {
                    used.extend(names_after(&code, &format!("crate::{path_in_crate}::")));
                }
                used.retain(|u| u != name && siblings.contains_key(u));
                (name.as_str(), used)
            })
            .collect();
        // A cycle is a path back to where it started.
        for start in graph.keys() {
            let mut seen = BTreeSet::new();
            let mut todo: Vec<(&str, Vec<&str>)> = vec![(start, vec![start])];
            while let Some((at, trail)) = todo.pop() {
                for next in &graph[at] {
                    // Reported once, from its smallest name.
                    if next == start && trail.iter().all(|n| start <= n) {
                        cycles.push(format!(
                            "{}: {} -> {start}",
                            dir.display(),
                            trail.join(" -> ")
                        ));
                    } else if next != start && seen.insert(next.as_str()) {
                        let mut trail = trail.clone();
                        trail.push(next);
                        todo.push((next, trail));
                    }
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles between sibling files:\n{}",
        cycles.join("\n")
    );
}
