//! Tidy checks over the whole workspace, run as ordinary tests: every Rust file opens with a
//! `//!` line saying what it is for, no test is `#[ignore]`d or `#[should_panic]`, and no
//! line ends in whitespace.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn workspace_rust_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("xtask"), &mut files);
    assert!(
        files.len() > 20,
        "found only {} Rust files under {}",
        files.len(),
        root.display()
    );
    files
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let missing: Vec<String> = workspace_rust_files()
        .into_iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! line: {missing:#?}"
    );
}

#[test]
fn no_test_is_ignored_or_expected_to_panic() {
    // Spelled in two parts so that this file does not match itself.
    let banned = [concat!("#[", "ignore"), concat!("#[", "should_panic")];
    let mut found = Vec::new();
    for file in workspace_rust_files() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if banned.iter().any(|b| line.trim_start().starts_with(b)) {
                found.push(format!("{}:{}", file.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "ignored or should_panic tests: {found:#?}"
    );
}

#[test]
fn no_trailing_whitespace() {
    let mut found = Vec::new();
    for file in workspace_rust_files() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if line.ends_with(' ') || line.ends_with('\t') {
                found.push(format!("{}:{}", file.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "trailing whitespace: {found:#?}");
}

/// The library crates, whose inner structure the checks below keep readable.
const LIBRARY_CRATES: [&str; 3] = ["store-core", "store-owners", "compaction"];

/// Source files of `crate_dir/src`, as (module path, file): `backup/run.rs` is `backup::run`,
/// `backup/mod.rs` is `backup`, `lib.rs` is the crate root (`""`).
fn modules_of(crate_dir: &Path) -> Vec<(String, PathBuf)> {
    let src = crate_dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            (parts.join("::"), f)
        })
        .collect()
}

/// The modules `text` (the source of module `this`) refers to, among `known`: `crate::a::b`
/// and `super::x` paths, resolved to the longest known module prefix, names re-exported by
/// the crate root (`crate::Name`) to the module they come from. Module declarations and
/// re-exports (`pub use`) are not references: a façade re-exporting its children is no
/// dependency of theirs on it.
fn references(
    this: &str,
    text: &str,
    known: &std::collections::BTreeSet<String>,
    root_names: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let parent = |m: &str| {
        m.rsplit_once("::")
            .map_or(String::new(), |(p, _)| p.to_string())
    };
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with("//")
            || line.starts_with("pub use")
            || line.starts_with("pub(crate) use")
        {
            continue;
        }
        for (prefix, base) in [("crate::", String::new()), ("super::", parent(this))] {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                let preceded_by_ident = rest[..at]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
                rest = &rest[at + prefix.len()..];
                if preceded_by_ident {
                    continue;
                }
                let path: Vec<&str> = rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .collect();
                let mut target = None;
                for n in (1..=path.len()).rev() {
                    let candidate = if base.is_empty() {
                        path[..n].join("::")
                    } else {
                        format!("{base}::{}", path[..n].join("::"))
                    };
                    if known.contains(&candidate) {
                        target = Some(candidate);
                        break;
                    }
                }
                let target = target.or_else(|| {
                    if base.is_empty() {
                        path.first().and_then(|name| root_names.get(*name).cloned())
                    } else {
                        Some(base.clone())
                    }
                });
                if let Some(t) = target
                    && t != this
                    && !t.is_empty()
                    && !this.starts_with(&format!("{t}::"))
                {
                    out.insert(t);
                }
            }
        }
    }
    out
}

/// Names the crate root re-exports, and the module each comes from (`pub use backup::X`).
fn root_reexports(
    lib_rs: &str,
    known: &std::collections::BTreeSet<String>,
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let joined = lib_rs.replace('\n', " ");
    for stmt in joined.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let (path, names) = match rest.split_once("::{") {
            Some((p, names)) => (p.trim(), names.trim_end_matches('}').to_string()),
            None => match rest.rsplit_once("::") {
                Some((p, name)) => (p.trim(), name.to_string()),
                None => continue,
            },
        };
        let module = path.replace(' ', "");
        if !known.contains(&module) {
            continue;
        }
        for name in names.split(',') {
            let name = name.trim();
            if !name.is_empty() {
                out.insert(name.to_string(), module.clone());
            }
        }
    }
    out
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

/// The module graph of one crate (the crate root left out: it only declares and
/// re-exports).
fn module_graph(
    crate_name: &str,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let dir = workspace_root().join("crates").join(crate_name);
    let modules = modules_of(&dir);
    let known: std::collections::BTreeSet<String> =
        modules.iter().map(|(m, _)| m.clone()).collect();
    let lib_rs = std::fs::read_to_string(dir.join("src/lib.rs"))
        .or_else(|_| std::fs::read_to_string(dir.join("src/main.rs")))
        .unwrap_or_default();
    let root_names = root_reexports(&lib_rs, &known);
    modules
        .iter()
        .filter(|(m, _)| !m.is_empty())
        .map(|(m, file)| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            // Unit tests at the bottom of a file may reach anywhere.
            let text = text.split("#[cfg(test)]").next().unwrap_or("");
            (m.clone(), references(m, text, &known, &root_names))
        })
        .collect()
}

#[test]
fn the_modules_of_each_crate_import_each_other_without_a_circle() {
    let mut cycles = Vec::new();
    for crate_name in LIBRARY_CRATES.into_iter().chain(["backup-daemon"]) {
        let graph = module_graph(crate_name);
        assert!(graph.len() >= 3, "{crate_name}: modules not found");
        if let Some(cycle) = find_cycle(&graph) {
            cycles.push(format!("{crate_name}: {}", cycle.join(" -> ")));
        }
    }
    assert!(cycles.is_empty(), "module cycles: {cycles:#?}");
}

#[test]
fn the_cycle_finder_finds_a_circle_through_a_root_reexport() {
    let known = ["a", "b", "c"].map(String::from).into_iter().collect();
    let root_names = root_reexports("pub use c::{Thing, Other};\npub use a::First;", &known);
    let mut graph = std::collections::BTreeMap::new();
    graph.insert(
        "a".to_string(),
        references("a", "use crate::b::x;", &known, &root_names),
    );
    graph.insert(
        "b".to_string(),
        references(
            "b",
            "fn f() -> crate::Thing { todo() }",
            &known,
            &root_names,
        ),
    );
    graph.insert(
        "c".to_string(),
        references("c", "use crate::First;", &known, &root_names),
    );
    assert_eq!(
        find_cycle(&graph),
        Some(["a", "b", "c", "a"].map(String::from).to_vec())
    );
    graph.insert(
        "c".to_string(),
        references("c", "pub use crate::a::First;", &known, &root_names),
    );
    assert_eq!(find_cycle(&graph), None);
}

#[test]
fn no_library_source_file_is_over_about_500_lines() {
    let mut long = Vec::new();
    for crate_name in LIBRARY_CRATES {
        for (_, file) in modules_of(&workspace_root().join("crates").join(crate_name)) {
            let n_lines = std::fs::read_to_string(&file)
                .unwrap_or_default()
                .lines()
                .count();
            if n_lines > 520 {
                long.push(format!("{}: {n_lines} lines", file.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these into rooms with one job: {long:#?}"
    );
}

/// An error variant built from another error's text (`Storage(e.to_string())`,
/// `io::Error::other(...)`) loses the source chain: library errors keep their sources.
#[test]
fn library_errors_keep_their_sources() {
    let mut found = Vec::new();
    for crate_name in LIBRARY_CRATES {
        for (_, file) in modules_of(&workspace_root().join("crates").join(crate_name)) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let text = text.split("#[cfg(test)]").next().unwrap_or("");
            for (n, line) in text.lines().enumerate() {
                if flattens_an_error(line) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "errors flattened to text: {found:#?}");
}

/// Whether `line` wraps an error's text in an error variant (a capitalised constructor other
/// than `Some`/`Ok`/`Err`) or in `io::Error::other`.
fn flattens_an_error(line: &str) -> bool {
    if line.trim_start().starts_with("//") {
        return false;
    }
    if line.contains("Error::other(") && line.contains(".to_string()") {
        return true;
    }
    // Statuses, outcomes and listing states are reports, text by design; corruption is text
    // by design too (its own variant, carrying redb's description).
    let reports = [
        "TableStatus::",
        "TableOutcome::",
        "BackupState::",
        "Corrupted(",
    ];
    if reports.iter().any(|r| line.contains(r)) {
        return false;
    }
    ["e", "other", "err", "error", "source"].iter().any(|name| {
        let needle = format!("({name}.to_string())");
        line.match_indices(&needle).any(|(at, _)| {
            let before: String = line[..at]
                .chars()
                .rev()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            before.starts_with(|c: char| c.is_ascii_uppercase())
                && !matches!(before.as_str(), "Some" | "Ok" | "Err")
        }) || line.contains(&format!("detail: {name}.to_string()"))
    })
}

#[test]
fn the_flattening_check_tells_a_report_from_an_error_variant() {
    assert!(flattens_an_error(
        "            .map_err(|e| WriteError::Storage(e.to_string()))?;"
    ));
    assert!(flattens_an_error(
        "other => CallError::Storage(other.to_string()),"
    ));
    assert!(flattens_an_error(
        "source: io::Error::other(e.to_string()),"
    ));
    assert!(!flattens_an_error("report.error = Some(e.to_string());"));
    assert!(!flattens_an_error("reason: e.to_string(),"));
    assert!(!flattens_an_error(
        "Err(e) => TableStatus::Unavailable(e.to_string()),"
    ));
    assert!(!flattens_an_error(
        "return Err(io::Error::other(format!(\"injected {what} failure\")));"
    ));
}

/// The async runtime of the S3 client stays in `compaction/src/remote/bucket.rs`: no other
/// source file of the crates names tokio or awaits (see ARCHITECTURE.md, `remote/`).
#[test]
fn async_code_stays_in_the_remote_bucket_module() {
    let allowed = workspace_root().join("crates/compaction/src/remote/bucket.rs");
    let mut found = Vec::new();
    for file in workspace_rust_files() {
        if file == allowed || !file.starts_with(workspace_root().join("crates")) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("tokio") || code.contains(".await") || code.contains("async ") {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "async code outside remote/bucket.rs: {found:#?}"
    );
}
