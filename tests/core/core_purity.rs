//! The architecture invariant "the core does no I/O" as tests. The core is a crate of its own
//! (`crates/airlock-core`), so what it may import is its Cargo.toml's to say: the first test holds that list. What the
//! compiler cannot refuse (the standard library's clock, files, network, environment and processes, an ambient random
//! number generator) is found by a scan of the source of the core and of `src/policy/`: no file may name an async
//! runtime, a broker or database client, a clock, the filesystem, the network, the environment, processes, or an
//! ambient random number generator. Time, ids, randomness and facts are handed in by the shell. And the core's
//! modules import each other without a cycle, so each can be read knowing only the ones below it.
//!
//! The scan reads code, not prose: text after `//` on a line and inside `/* */` is skipped, so a doc comment may say
//! "the core imports no tokio" without failing the build. Grouped imports (`use std::{fs, time::Instant}`) are
//! checked module by module.

use std::path::{Path, PathBuf};

/// Names that betray I/O, a clock or ambient randomness. Plain substrings: a false positive is visible and easy to
/// rename, a false negative is a hole in the invariant.
const FORBIDDEN: [&str; 14] = [
    "tokio",
    "async_nats",
    "rusqlite",
    "SystemTime",
    "Instant",
    "std::time",
    "std::fs",
    "std::net",
    "std::env",
    "std::process",
    "thread_rng",
    "rand::rng(",
    "rand::random",
    "OsRng",
];

/// Modules of `std` that a grouped import (`use std::{...}`) must not name.
const FORBIDDEN_STD_MODULES: [&str; 5] = ["time", "fs", "net", "env", "process"];

/// The directories that must stay pure, relative to the crate root.
const PURE_DIRECTORIES: [&str; 2] = ["crates/airlock-core/src", "src/policy"];

/// The core's own source, and its manifest.
const CORE_SOURCE: &str = "crates/airlock-core/src";
const CORE_MANIFEST: &str = "crates/airlock-core/Cargo.toml";

/// The only crates the core may depend on: encoding, hashing, text and domain rules, and the traits of a random number
/// generator it is handed. Adding one is a decision to review, not a side effect of a `use`.
const CORE_DEPENDENCIES_ALLOWED: [&str; 12] = [
    "hex",
    "hmac",
    "idna",
    "postcard",
    "psl",
    "rand",
    "serde",
    "sha2",
    "subtle",
    "thiserror",
    "toml",
    "unicode-security",
];

/// Files a walk may visit before it is considered runaway (a symlink loop, a misplaced build directory).
const FILES_SCANNED_MAX: usize = 1_000;

/// Removes comments from source text, keeping line breaks so that line numbers stay right. String literals are
/// not parsed: a `//` inside a string hides the rest of that line, which is acceptable in this small core.
fn strip_comments(source: &str) -> String {
    let mut code = String::with_capacity(source.len());
    let mut rest = source;
    let mut in_block = false;
    while !rest.is_empty() {
        if in_block {
            match rest.find("*/") {
                Some(end) => {
                    code.extend(rest[..end].chars().filter(|c| *c == '\n'));
                    rest = &rest[end + 2..];
                    in_block = false;
                }
                None => {
                    code.extend(rest.chars().filter(|c| *c == '\n'));
                    rest = "";
                }
            }
            continue;
        }
        let line_comment = rest.find("//");
        let block_comment = rest.find("/*");
        match (line_comment, block_comment) {
            (Some(line), block) if block.is_none_or(|block| line < block) => {
                code.push_str(&rest[..line]);
                let end = rest[line..].find('\n').map_or(rest.len(), |offset| line + offset);
                rest = &rest[end..];
            }
            (_, Some(block)) => {
                code.push_str(&rest[..block]);
                rest = &rest[block + 2..];
                in_block = true;
            }
            (_, None) => {
                code.push_str(rest);
                rest = "";
            }
        }
    }
    code
}

/// Every violation in one file, as `file:line: ...`, with 1-based line numbers.
fn violations(file: &str, source: &str) -> Vec<String> {
    let code = strip_comments(source);
    let mut found = Vec::new();
    for (index, line) in code.lines().enumerate() {
        for word in FORBIDDEN {
            if line.contains(word) {
                found.push(format!("{file}:{}: mentions `{word}`: {}", index + 1, line.trim()));
            }
        }
    }
    found.extend(grouped_std_violations(file, &code));
    found
}

/// Finds `std::{ ... }` groups (possibly spanning lines and nesting) that name a forbidden module.
fn grouped_std_violations(file: &str, code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut search_from = 0;
    while let Some(offset) = code[search_from..].find("std::{") {
        let open = search_from + offset + "std::".len();
        let mut depth = 0usize;
        let mut close = code.len();
        for (position, character) in code[open..].char_indices() {
            match character {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + position;
                        break;
                    }
                }
                _ => {}
            }
        }
        let group = &code[open + 1..close];
        let line = code[..open].matches('\n').count() + 1;
        // A module is named at the top of the group: `fs`, `fs::File`, `time::{Instant}`, `env as e`.
        for item in top_level_items(group) {
            let module = item.split(|c: char| c == ':' || c.is_whitespace()).next().unwrap_or("");
            if FORBIDDEN_STD_MODULES.contains(&module) {
                found.push(format!("{file}:{line}: mentions `std::{module}` in a grouped import"));
            }
        }
        search_from = close.min(code.len());
        if search_from <= open {
            break;
        }
    }
    found
}

/// The comma-separated items at the top level of a `use` group, trimmed.
fn top_level_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (position, character) in group.char_indices() {
        match character {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(group[start..position].trim());
                start = position + 1;
            }
            _ => {}
        }
    }
    items.push(group[start..].trim());
    items.into_iter().filter(|item| !item.is_empty()).collect()
}

/// Every `.rs` file under `directory`, sorted, walked with std::fs only.
fn rust_files(directory: &Path) -> Vec<PathBuf> {
    let mut pending = vec![directory.to_path_buf()];
    let mut files = Vec::new();
    while let Some(current) = pending.pop() {
        let entries =
            std::fs::read_dir(&current).unwrap_or_else(|error| panic!("cannot list {}: {error}", current.display()));
        for entry in entries {
            let path =
                entry.unwrap_or_else(|error| panic!("cannot read an entry of {}: {error}", current.display())).path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                files.push(path);
            }
            assert!(
                files.len() <= FILES_SCANNED_MAX,
                "more than {FILES_SCANNED_MAX} files under {}",
                directory.display()
            );
        }
    }
    files.sort();
    files
}

// Proves the architecture invariant on the real tree: no file of the core or under src/policy/ names a forbidden
// crate, clock, I/O module or ambient RNG. It also proves the walk saw the files it must see, so it cannot pass by
// scanning nothing.
#[test]
fn core_and_policy_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut scanned = Vec::new();
    let mut found = Vec::new();
    for directory in PURE_DIRECTORIES {
        for path in rust_files(&root.join(directory)) {
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
            let relative = path.strip_prefix(root).unwrap_or(&path).display().to_string();
            found.extend(violations(&relative, &source));
            scanned.push(relative);
        }
    }

    for expected in [
        "crates/airlock-core/src/decide.rs",
        "crates/airlock-core/src/state.rs",
        "crates/airlock-core/src/verification.rs",
        "src/policy/mod.rs",
    ] {
        assert!(
            scanned.iter().any(|file| file.replace('\\', "/") == expected),
            "the walk missed {expected}: {scanned:?}"
        );
    }
    assert!(found.is_empty(), "the pure core must do no I/O:\n{}", found.join("\n"));
}

// Proves that the scanner can fail: a forbidden import in an in-memory file is reported with the file name and the
// right line number, and several forbidden names on one line are each reported.
#[test]
fn scanner_reports_forbidden_imports_with_file_and_line() {
    let source = "//! A module.\n\nuse tokio::sync::mpsc;\nfn now() -> u64 { std::time::SystemTime::now(); 0 }\n";

    let found = violations("src/core/bad.rs", source);

    assert_eq!(
        found,
        vec![
            "src/core/bad.rs:3: mentions `tokio`: use tokio::sync::mpsc;",
            "src/core/bad.rs:4: mentions `SystemTime`: fn now() -> u64 { std::time::SystemTime::now(); 0 }",
            "src/core/bad.rs:4: mentions `std::time`: fn now() -> u64 { std::time::SystemTime::now(); 0 }",
        ]
    );
}

// Proves that every forbidden name is caught on its own, so none of the list is dead.
#[test]
fn scanner_catches_every_forbidden_name() {
    for word in FORBIDDEN {
        let source = format!("fn f() {{ let _ = {word}; }}\n");

        let found = violations("src/core/bad.rs", &source);

        assert!(
            found.iter().any(|violation| violation.contains(&format!("`{word}`"))),
            "{word} was not caught: {found:?}"
        );
    }
}

// Proves that grouped imports are checked module by module, across lines, and that harmless groups pass.
#[test]
fn scanner_catches_forbidden_modules_in_grouped_imports() {
    let source = concat!(
        "use std::{collections::BTreeSet, fmt};\n",
        "use std::{\n    collections::HashMap,\n    fs::File,\n};\n",
        "use std::{env as environment, io};\n",
    );

    let found = violations("src/core/bad.rs", source);

    assert_eq!(
        found,
        vec![
            "src/core/bad.rs:2: mentions `std::fs` in a grouped import",
            "src/core/bad.rs:6: mentions `std::env` in a grouped import",
        ]
    );
}

// Proves that comments are not code: a doc comment or block comment naming tokio or std::time passes, while the
// same name after the comment closes is still caught.
#[test]
fn scanner_ignores_comments_but_not_code_after_them() {
    let clean =
        "//! The core imports no tokio and never reads std::time.\n/// Not an Instant.\n/* OsRng */ fn f() {}\n";
    assert!(violations("src/core/ok.rs", clean).is_empty());

    let sneaky = "/* harmless */ use rusqlite::Connection;\n/*\n multi-line\n*/ use std::net::TcpStream;\n";

    let found = violations("src/core/bad.rs", sneaky);

    assert_eq!(
        found,
        vec![
            "src/core/bad.rs:1: mentions `rusqlite`: use rusqlite::Connection;",
            "src/core/bad.rs:4: mentions `std::net`: use std::net::TcpStream;",
        ]
    );
}

/// The names of the dependencies in one table of a Cargo manifest (`[dependencies]`, `[dev-dependencies]`...), in
/// either form (`name = ...` in the table, or a table `[dependencies.name]` of its own), and the crate a `package =`
/// key renames to (`serde = { package = "tokio" }` depends on tokio).
fn dependencies(manifest: &str, table: &str) -> Vec<String> {
    let header = format!("[{table}]");
    let own_table = format!("[{table}.");
    let mut names = Vec::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if let Some(renamed) = line.split("package").nth(1).and_then(|rest| rest.split('"').nth(1)) {
            names.push(renamed.to_string());
        }
        if line.starts_with('[') {
            inside = line == header;
            if let Some(name) = line.strip_prefix(&own_table).and_then(|rest| rest.strip_suffix(']')) {
                names.push(name.trim().to_string());
            }
            continue;
        }
        if inside
            && let Some((name, _)) = line.split_once('=')
            && !name.trim().starts_with('#')
        {
            names.push(name.trim().to_string());
        }
    }
    names
}

// Proves the core's crate depends on nothing it may not: no async runtime, broker, database, HTTP stack or logging,
// only the crates listed in CORE_DEPENDENCIES_ALLOWED, in every dependency table (build and dev too). The compiler
// then refuses any `use` of anything else.
#[test]
fn the_core_crate_depends_only_on_pure_crates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join(CORE_MANIFEST)).unwrap();
    let normal = dependencies(&manifest, "dependencies");
    assert!(normal.contains(&"serde".to_string()), "the manifest was not read: {normal:?}");
    for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
        for name in dependencies(&manifest, table) {
            assert!(CORE_DEPENDENCIES_ALLOWED.contains(&name.as_str()), "the core depends on {name} ({table})");
        }
    }
    assert!(!manifest.contains("[target."), "the core has platform-specific dependencies");
    // The check reads what a forbidden dependency looks like.
    let forbidden = "[dependencies]\nserde = \"1\"\ntokio = { version = \"1\" }\nhex = { package = \"rusqlite\" }\n\
                     [dependencies.axum]\nversion = \"0.8\"\n";
    assert_eq!(dependencies(forbidden, "dependencies"), ["serde", "tokio", "rusqlite", "hex", "axum"]);
}

/// The core modules a source file imports (`crate::<module>`), outside its tests.
fn imported_modules(source: &str) -> std::collections::BTreeSet<String> {
    let code = strip_comments(source);
    let code = code.split("#[cfg(test)]").next().unwrap_or("");
    let mut found = std::collections::BTreeSet::new();
    let name = |text: &str| -> String {
        text.trim_start()
            .chars()
            .take_while(|character| character.is_ascii_alphanumeric() || *character == '_')
            .collect()
    };
    for (start, _) in code.match_indices("crate::") {
        let rest = &code[start + "crate::".len()..];
        // A grouped import names each module at the top of its group: `crate::{account, ids::UnixMs}`.
        let modules = match rest.strip_prefix('{') {
            Some(group) => {
                top_level_items(&group[..group.find('}').unwrap_or(group.len())]).into_iter().map(name).collect()
            }
            None => vec![name(rest)],
        };
        found.extend(modules.into_iter().filter(|module| !module.is_empty() && module != "self"));
    }
    found
}

/// A cycle in `graph`, as the modules on it, if there is one.
fn a_cycle(graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|seen| seen == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_string());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph.keys().find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}

// Proves the core's modules import each other without a cycle (outside their tests): from the leaves (ids, limits,
// status, kind) up to decide, each module needs only those below it. The check finds a cycle when there is one.
#[test]
fn the_core_modules_import_each_other_without_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut graph = std::collections::BTreeMap::new();
    for path in rust_files(&root.join(CORE_SOURCE)) {
        let module = path.file_stem().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(&path).unwrap();
        let mut imported = imported_modules(&source);
        imported.remove(&module);
        graph.insert(module, imported);
    }
    assert!(graph.len() > 20 && graph["decide"].contains("state"), "the modules were not read: {graph:?}");
    if let Some(cycle) = a_cycle(&graph) {
        panic!("the core's modules import each other in a cycle: {}", cycle.join(" -> "));
    }
    let mut looped = graph.clone();
    looped.get_mut("ids").unwrap().insert("decide".to_string());
    assert!(a_cycle(&looped).is_some(), "the check missed a cycle");
    let grouped = imported_modules("use crate::{account::AccountSnapshot, ids};\nfn f() { crate::text::x(); }\n");
    assert_eq!(grouped.into_iter().collect::<Vec<_>>(), ["account", "ids", "text"]);
}

/// The lines of `source` (comments aside) that write a test: a `#[test]`, `#[tokio::test]` or `#[cfg(test)]`.
fn test_attributes(source: &str) -> Vec<usize> {
    let code = strip_comments(source);
    let marks = ["#[test]", "#[tokio::test", "#[cfg(test)]"];
    let lines = code.lines().enumerate();
    lines.filter(|(_, line)| marks.iter().any(|mark| line.contains(mark))).map(|(number, _)| number + 1).collect()
}

// Proves no test is written where nothing would run it: the core's library, the invariants package's library and the
// binary's main.rs have no test target (`test = false` in their Cargo.toml, so that the core is not built a second
// time at opt-level 2 for its tests; issue 21), and their tests live in `tests/`. The scanner finds each kind of
// test attribute, and not one in a comment.
#[test]
fn no_test_is_written_where_no_target_runs_it() {
    assert_eq!(test_attributes("//! #[test]\nfn a() {}\n#[test]\nfn b() {}\n#[cfg(test)]\nmod c {}\n"), [3, 5]);
    assert_eq!(test_attributes("#[tokio::test(flavor = \"multi_thread\")]\nasync fn d() {}\n"), [1]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = rust_files(&root.join("crates/airlock-core/src"));
    files.extend(rust_files(&root.join("crates/airlock-invariants/src")));
    files.push(root.join("src/main.rs"));
    assert!(files.len() > 20, "the walk missed the core: {files:?}");
    let mut found = Vec::new();
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap();
        let lines = test_attributes(&source);
        found.extend(lines.into_iter().map(|line| format!("{}:{line}", path.strip_prefix(root).unwrap().display())));
    }
    assert!(found.is_empty(), "tests that no target runs (move them to tests/core): {found:?}");
    for manifest in ["crates/airlock-core/Cargo.toml", "crates/airlock-invariants/Cargo.toml", "Cargo.toml"] {
        let text = std::fs::read_to_string(root.join(manifest)).unwrap();
        assert!(text.contains("test = false"), "{manifest} no longer says test = false: this test is moot");
    }
}
