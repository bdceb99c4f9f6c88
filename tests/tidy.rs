//! Tidy checks: the properties of the source tree that review alone does not keep true.
//!
//! - The pure modules (the E.164 core, the routing compiler and router, the number lifecycle) import
//!   no I/O: no async runtime, no HTTP, no database client, no file system.
//! - `docs/ARCHITECTURE.md`'s code map names every source file of every crate.
//! - No file cites a document that is not in the repository (the Kazoo behaviour notes the project
//!   was specified from): code and docs explain a behaviour in their own words or name Kazoo's
//!   module and function.
//! - No to-do markers land.
//! - No source file (crate sources and tools, test modules aside) is over 1,000 lines.
//!
//! Everything is read from the files `git ls-files` lists, so a build directory or an untracked
//! scratch file never makes the test fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (this file lives in `tests/`, its package in `crates/switchboard`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// Every file git tracks, relative to the root.
fn tracked() -> Vec<String> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .expect("git ls-files runs");
    assert!(out.status.success(), "git ls-files: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .expect("file names are UTF-8")
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        // a tracked file deleted in the work tree (mid-edit) is not there to check
        .filter(|f| root().join(f).is_file())
        .collect()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_default()
}

/// The code a module ships: its text up to its first `#[cfg(test)]` (our test modules sit at the
/// end of a file, or in files of their own, which [`is_test_file`] leaves out).
fn shipped_code(text: &str) -> &str {
    match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    }
}

fn is_test_file(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name == "tests.rs" || name.ends_with("_tests.rs") || rel.contains("/tests/")
}

/// The modules that must stay pure, as path prefixes (a module file and its directory).
const PURE: &[&str] = &[
    "crates/e164/src/",
    "crates/stepswitch/src/bridge",
    "crates/stepswitch/src/compile",
    "crates/stepswitch/src/config",
    "crates/stepswitch/src/endpoint",
    "crates/stepswitch/src/explain",
    "crates/stepswitch/src/formatters",
    "crates/stepswitch/src/resource",
    "crates/stepswitch/src/route",
    "crates/stepswitch/src/simple",
    "crates/stepswitch/src/table",
    "crates/stepswitch/src/text",
    "crates/numbers/src/account",
    "crates/numbers/src/auth",
    "crates/numbers/src/config",
    "crates/numbers/src/doc",
    "crates/numbers/src/error",
    "crates/numbers/src/features",
    "crates/numbers/src/generate",
    "crates/numbers/src/lifecycle",
];

/// What a pure module must not name: the runtime, HTTP, database clients, the store contract,
/// the file system, sockets and processes.
const IO: &[&str] = &[
    "tokio",
    "reqwest",
    "couch_rs",
    "rusqlite",
    "hyper",
    "axum",
    "wiremock",
    "DocStore",
    "SharedStore",
    "std::fs",
    "std::process",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "async fn",
    ".await",
];

#[test]
fn pure_modules_do_no_io() {
    let mut found = Vec::new();
    let mut checked = 0;
    for rel in tracked() {
        if !rel.ends_with(".rs") || is_test_file(&rel) || !PURE.iter().any(|p| rel.starts_with(p)) {
            continue;
        }
        checked += 1;
        let text = read(&rel);
        for (n, line) in shipped_code(&text).lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in IO {
                if code.contains(word) {
                    found.push(format!("{rel}:{}: `{word}` in `{}`", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(checked > 20, "the pure-module list matches files ({checked} checked)");
    assert!(found.is_empty(), "pure modules doing I/O:\n{}", found.join("\n"));
}

/// The `### \`crates/NAME\`` section of the code map.
fn section<'a>(doc: &'a str, krate: &str) -> Option<&'a str> {
    let head = format!("### `crates/{krate}`");
    let start = doc.find(&head)? + head.len();
    let rest = &doc[start..];
    let end = rest.find("\n## ").into_iter().chain(rest.find("\n### ")).min().unwrap_or(rest.len());
    Some(&rest[..end])
}

#[test]
fn the_code_map_names_every_source_file() {
    let doc = read("docs/ARCHITECTURE.md");
    let mut missing = Vec::new();
    for rel in tracked() {
        if !rel.ends_with(".rs") {
            continue;
        }
        if let Some(test) = rel.strip_prefix("tests/") {
            // the end-to-end tests: named anywhere, with their directory
            if !doc.contains(&format!("tests/{test}")) {
                missing.push(rel);
            }
            continue;
        }
        let Some(inner) = rel.strip_prefix("crates/") else { continue };
        let (krate, in_crate) = inner.split_once('/').expect("a crate file");
        // a crate's sources are named in its section, by their path under `src/` or by their name
        // in their directory's listing
        let Some(src) = in_crate.strip_prefix("src/") else {
            // a crate's tests and benches: named on a line that names their crate
            let krate_dir = format!("crates/{krate}");
            let named = doc.contains(&rel)
                || doc.lines().any(|l| l.contains(&krate_dir) && l.contains(in_crate));
            if !named {
                missing.push(rel);
            }
            continue;
        };
        let Some(text) = section(&doc, krate) else {
            missing.push(format!("{rel} (no section for crates/{krate})"));
            continue;
        };
        let named = match src.rsplit_once('/') {
            None => text.contains(src),
            Some((dir, "mod.rs")) => text.contains(&format!("{dir}/")),
            Some((dir, name)) => {
                text.contains(src) || (text.contains(&format!("{dir}/")) && text.contains(name))
            }
        };
        if !named {
            missing.push(rel);
        }
    }
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md's code map does not name:\n{}",
        missing.join("\n")
    );
}

/// Text files whose words we wrote (data fixtures, lock files and vendored code are not).
fn prose_and_code() -> Vec<String> {
    tracked()
        .into_iter()
        .filter(|f| !f.starts_with("fixtures/") && !f.contains("node_modules/"))
        .filter(|f| {
            [".rs", ".md", ".toml", ".js", ".cfg", ".sh", ".txt", ".yml", ".yaml"]
                .iter()
                .any(|ext| f.ends_with(ext))
                || f.starts_with(".ci/")
        })
        .filter(|f| !f.ends_with("package-lock.json"))
        .collect()
}

#[test]
fn nothing_cites_a_document_outside_the_repository() {
    // Section signs and numbered rules were how the code pointed into the behaviour notes it was
    // written from; those notes are not in the repository, so a reader cannot follow them.
    let patterns = [
        regex::Regex::new(r"§\s*[0-9A-Z]").unwrap(),
        regex::Regex::new(r"\b[Rr]ules? [0-9]+\b").unwrap(),
        regex::Regex::new(r"\b[Bb]ugs? [0-9]+\b").unwrap(),
        regex::Regex::new(r"kazoo-(numbers|stepswitch)(-vectors)?\.md").unwrap(),
        regex::Regex::new(r"couchdb-peer\.md|style-anchors\.md|\banchors\.md").unwrap(),
        regex::Regex::new(r"shared/(reference|kazoo-fixtures)|/work/").unwrap(),
    ];
    let me = "tests/tidy.rs";
    let mut found = Vec::new();
    for rel in prose_and_code() {
        if rel == me {
            continue;
        }
        for (n, line) in read(&rel).lines().enumerate() {
            if patterns.iter().any(|p| p.is_match(line)) {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "{} lines cite documents the repository does not have (say it in words, or name Kazoo's \
         module and function):\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn no_to_do_markers() {
    // spelled in two halves so that this file does not match itself
    let markers = [concat!("TO", "DO"), concat!("FIX", "ME"), concat!("X", "XX:")];
    let mut found = Vec::new();
    for rel in prose_and_code() {
        for (n, line) in read(&rel).lines().enumerate() {
            if markers.iter().any(|m| line.contains(m)) {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "to-do markers:\n{}", found.join("\n"));
}

/// The most lines a source file may have: a longer one is split along its seams (a module per
/// responsibility; an inline test module can move to a sibling `tests.rs`).
const MAX_LINES: usize = 1000;

#[test]
fn no_source_file_is_over_a_thousand_lines() {
    let is_source = |rel: &str| [".rs", ".js", ".c", ".sh", ".py"].iter().any(|e| rel.ends_with(e));
    let mut checked = 0;
    let mut over = Vec::new();
    for rel in tracked() {
        let crate_source = rel.starts_with("crates/") && rel.split('/').nth(2) == Some("src");
        if !(crate_source || rel.starts_with("tools/"))
            || !is_source(&rel)
            || is_test_file(&rel)
            || rel.contains("node_modules/")
        {
            continue;
        }
        checked += 1;
        let lines = read(&rel).lines().count();
        if lines > MAX_LINES {
            over.push(format!("{rel}: {lines} lines"));
        }
    }
    assert!(checked > 100, "the source file filter matches files ({checked} checked)");
    assert!(
        over.is_empty(),
        "source files over {MAX_LINES} lines (split them along their seams):\n{}",
        over.join("\n")
    );
}

#[test]
fn every_crate_takes_the_workspace_lints() {
    let members: BTreeSet<String> = tracked()
        .into_iter()
        .filter(|f| f.starts_with("crates/") && f.ends_with("/Cargo.toml"))
        .collect();
    assert!(
        read("Cargo.toml").contains("[workspace.lints"),
        "the root Cargo.toml sets [workspace.lints]"
    );
    let without: Vec<_> = members
        .iter()
        .filter(|m| {
            let text = read(m);
            !text.lines().any(|l| l.trim() == "[lints]") || !text.contains("workspace = true")
        })
        .collect();
    assert!(without.is_empty(), "crates without `[lints] workspace = true`: {without:?}");
}
