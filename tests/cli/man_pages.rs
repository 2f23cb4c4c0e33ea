//! Issue 22, item 5: the manual pages. `airlock man` writes one page per command from the same clap command tree as
//! `--help`; every page renders without a warning, and each page names every option and subcommand `--help` shows.
//! And `airlock --version` names the version of Cargo.toml and the commit.

use crate::common;
use clap::CommandFactory;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const AIRLOCK: &str = env!("CARGO_BIN_EXE_airlock");

/// Every visible command's path (`["review", "list"]`), the root's being empty.
fn command_paths(command: &clap::Command, prefix: &[String], paths: &mut Vec<Vec<String>>) {
    paths.push(prefix.to_vec());
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set() && sub.get_name() != "help") {
        let mut path = prefix.to_vec();
        path.push(sub.get_name().to_string());
        command_paths(sub, &path, paths);
    }
}

fn page_name(path: &[String]) -> String {
    std::iter::once("airlock".to_string()).chain(path.iter().cloned()).collect::<Vec<_>>().join("-") + ".1"
}

/// Writes the pages into `out` with `airlock man`, and returns every visible command's path.
fn write_pages(out: &Path) -> Vec<Vec<String>> {
    let written = Command::new(AIRLOCK).args(["man", "--out"]).arg(out).output().unwrap();
    assert!(written.status.success(), "airlock man failed: {}", String::from_utf8_lossy(&written.stderr));
    let mut paths = Vec::new();
    command_paths(&airlock::cli::Cli::command(), &[], &mut paths);
    paths
}

// Proves there is exactly one page per command, that `groff -man` renders every one without a warning (`-ww` turns
// every warning on), and that a page is plain ASCII (anything else written as a groff escape).
#[test]
fn one_page_per_command_each_rendering_without_warnings() {
    let scratch = common::scratch();
    let out = scratch.path().join("man1");
    let paths = write_pages(&out);
    let wanted: BTreeSet<String> = paths.iter().map(|path| page_name(path)).collect();
    let found: BTreeSet<String> =
        std::fs::read_dir(&out).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into()).collect();
    assert_eq!(found, wanted, "one page per visible command, and nothing else");
    assert!(wanted.len() > 40, "every command family has its pages: {wanted:?}");
    for page in &found {
        let path = out.join(page);
        let source = std::fs::read(&path).unwrap();
        assert!(source.is_ascii(), "{page} is plain ASCII (other characters are groff escapes)");
        let rendered = Command::new("groff").args(["-man", "-Tutf8", "-ww", "-z"]).arg(&path).output().unwrap();
        let warnings = String::from_utf8_lossy(&rendered.stderr);
        assert!(rendered.status.success() && warnings.is_empty(), "{page} renders without warnings: {warnings}");
    }
}

/// A page as a reader sees it: rendered by groff to UTF-8 text, one paragraph per line (no wrapping, no
/// hyphenation, no overstriking for bold).
fn rendered_plain(page: &Path) -> String {
    let rendered =
        Command::new("groff").args(["-man", "-Tutf8", "-rLL=4000n", "-rHY=0", "-P-cbou"]).arg(page).output().unwrap();
    assert!(rendered.status.success(), "groff renders {}", page.display());
    String::from_utf8(rendered.stdout).unwrap()
}

// Proves the pages and `--help` come from one source: for every command, each long option and each subcommand that
// `airlock ... --help` lists is on its page, and its one-line description is the page's NAME line.
#[test]
fn every_page_names_what_its_help_shows() {
    let scratch = common::scratch();
    let out = scratch.path().join("man1");
    let paths = write_pages(&out);
    for path in &paths {
        let help = Command::new(AIRLOCK).args(path).arg("--help").env_remove("AIRLOCK_CONFIG").output().unwrap();
        assert!(help.status.success(), "airlock {path:?} --help");
        let help = String::from_utf8(help.stdout).unwrap();
        let unescaped = rendered_plain(&out.join(page_name(path)));
        let options: BTreeSet<&str> = help
            .split(|character: char| character.is_whitespace() || character == ',' || character == '[')
            .filter(|word| word.starts_with("--") && word.len() > 2)
            .map(|word| word.trim_end_matches(|character: char| !character.is_ascii_alphanumeric()))
            .collect();
        for option in options {
            assert!(unescaped.contains(option), "airlock {path:?}: {option} is in --help but not on the page");
        }
        let in_commands = help.split("Commands:").nth(1).map(|rest| rest.split("\n\n").next().unwrap_or(""));
        for line in in_commands.unwrap_or("").lines() {
            let Some(name) = line.split_whitespace().next().filter(|name| *name != "help") else { continue };
            assert!(unescaped.contains(name), "airlock {path:?}: subcommand {name} is in --help but not on the page");
        }
        let about = help.lines().next().unwrap_or_default();
        let name_line = unescaped.lines().skip_while(|line| line.trim() != "NAME").nth(1).unwrap_or_default();
        assert!(
            name_line.trim().ends_with(about),
            "airlock {path:?}: the page's NAME line {name_line:?} is --help's description {about:?}"
        );
    }
}

// Proves `airlock --version` names the version in Cargo.toml and the commit the binary was built from.
#[test]
fn the_version_names_the_release_and_the_commit() {
    let output = Command::new(AIRLOCK).arg("--version").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .find_map(|line| line.strip_prefix("version = \"").and_then(|rest| rest.strip_suffix('"')))
        .unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    // The commit is the checkout's, unless the build was given one (as the container image's is).
    let head = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().unwrap();
    let head = String::from_utf8(head.stdout).unwrap().trim().to_string();
    let commit = match option_env!("AIRLOCK_COMMIT_GIVEN") {
        Some(given) => given.to_string(),
        None if head.is_empty() => "unknown".to_string(),
        None => head,
    };
    assert_eq!(text.trim(), format!("airlock {version} (commit {commit})"));
}
