//! Issue 22, item 3: the release archives. `scripts/release.sh --binary` (the fast path: it packages the binary these
//! tests run, for this machine, without building again) makes an archive whose checksum file verifies, that holds
//! the licence, the documents, a manual page per command, the completions, the example configuration and the
//! policies, and whose binary runs `airlock demo` from an empty directory. The script refuses what would make a
//! release lie about itself: a tree with uncommitted changes, arguments that contradict each other.

use crate::common;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const AIRLOCK: &str = env!("CARGO_BIN_EXE_airlock");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn release(script: &Path, args: &[&str]) -> Output {
    release_with_umask(script, args, "022")
}

/// Runs the script under `umask` (through sh, which sets it), without a caller's SOURCE_DATE_EPOCH.
fn release_with_umask(script: &Path, args: &[&str], umask: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(script)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

/// This machine's target triple, as rustc names it.
fn host() -> String {
    let told = Command::new("rustc").arg("-vV").output().unwrap();
    String::from_utf8(told.stdout).unwrap().lines().find_map(|line| line.strip_prefix("host: ")).unwrap().to_string()
}

/// Runs the fast path into `out` and returns the archive's path.
fn package(out: &Path) -> PathBuf {
    package_with_umask(out, "022")
}
fn package_with_umask(out: &Path, umask: &str) -> PathBuf {
    let script = repo().join("scripts/release.sh");
    let made = release_with_umask(&script, &["--binary", AIRLOCK, "--out", out.to_str().unwrap()], umask);
    assert!(made.status.success(), "release.sh --binary: {}", String::from_utf8_lossy(&made.stderr));
    let mut names: Vec<String> =
        std::fs::read_dir(out).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into()).collect();
    names.sort();
    let archive = format!("airlock-{}-{}.tar.gz", env!("CARGO_PKG_VERSION"), host());
    assert_eq!(names, ["SHA256SUMS".to_string(), archive.clone()], "the archive, named for this machine, and its sum");
    out.join(archive)
}

fn sha256sum_check(dir: &Path) -> bool {
    let checked = Command::new("sha256sum").args(["--check", "--quiet", "SHA256SUMS"]).current_dir(dir).output();
    checked.unwrap().status.success()
}

// Proves the archive is complete and works where nothing else is: its checksum verifies (and a changed archive does
// not), it holds what a team needs beside the binary, its binary runs the demo from an empty directory with no
// AIRLOCK_* setting, and packaging it again gives the same bytes.
#[test]
fn the_archive_verifies_holds_everything_and_runs_the_demo_from_an_empty_directory() {
    let scratch = common::scratch();
    let dist = scratch.path().join("dist");
    let archive = package(&dist);
    assert!(sha256sum_check(&dist), "the checksum file verifies the archive");

    let tampered = scratch.path().join("tampered");
    std::fs::create_dir(&tampered).unwrap();
    std::fs::copy(dist.join("SHA256SUMS"), tampered.join("SHA256SUMS")).unwrap();
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(tampered.join(archive.file_name().unwrap()), bytes).unwrap();
    assert!(!sha256sum_check(&tampered), "one changed bit fails the check");

    let unpacked = scratch.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let untar = Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(&unpacked).status().unwrap();
    assert!(untar.success());
    let name = archive.file_name().unwrap().to_str().unwrap().trim_end_matches(".tar.gz");
    let root = unpacked.join(name);
    for document in ["LICENSE", "README.md", "CHANGELOG.md", "SECURITY.md", "policies/default.cedar"] {
        assert_eq!(
            std::fs::read(root.join(document)).unwrap(),
            std::fs::read(repo().join(document)).unwrap(),
            "{document} is shipped as it is in the repository"
        );
    }
    assert!(std::fs::read_to_string(root.join("LICENSE")).unwrap().contains("Apache License"));

    // The manual pages are exactly what `airlock man` writes.
    let pages = scratch.path().join("pages");
    assert!(Command::new(AIRLOCK).args(["man", "--out"]).arg(&pages).output().unwrap().status.success());
    let listed = |dir: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        names.sort();
        names
    };
    let shipped = root.join("man/man1");
    assert_eq!(listed(&shipped), listed(&pages));
    for page in listed(&pages) {
        assert_eq!(std::fs::read(shipped.join(&page)).unwrap(), std::fs::read(pages.join(&page)).unwrap());
    }
    for (file, shell) in [("airlock.bash", "bash"), ("_airlock", "zsh"), ("airlock.fish", "fish")] {
        let generated = Command::new(AIRLOCK).args(["completions", shell]).output().unwrap().stdout;
        assert_eq!(std::fs::read(root.join("completions").join(file)).unwrap(), generated, "{file}");
    }

    // The example configuration is one airlock reads: at most the deployment's own seed file is missing here.
    let mut check = Command::new(root.join("airlock"));
    check.args(["config", "check", "--json", "--config"]).arg(root.join("examples/airlock.toml"));
    common::without_airlock_variables(&mut check);
    let report: serde_json::Value = serde_json::from_slice(&check.output().unwrap().stdout).unwrap();
    let problems: Vec<&str> =
        report["problems"].as_array().unwrap().iter().map(|problem| problem["key"].as_str().unwrap()).collect();
    assert!(problems.iter().all(|key| *key == "nats_nkey"), "{report}");
    for setting in report["settings"].as_array().unwrap() {
        if ["data_dir", "nats_url", "http", "smtp_url", "replicas", "metrics"]
            .contains(&setting["key"].as_str().unwrap())
        {
            assert_eq!(setting["source"], "file", "{setting}");
        }
    }

    assert_eq!(std::fs::read(root.join("airlock")).unwrap(), std::fs::read(AIRLOCK).unwrap(), "the binary given");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(root.join("airlock")).unwrap().permissions().mode() & 0o777, 0o755);

    let empty = scratch.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let demo = Command::new(root.join("airlock"))
        .arg("demo")
        .current_dir(&empty)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let told = String::from_utf8_lossy(&demo.stdout);
    assert!(demo.status.success(), "the demo runs: {told}\n{}", String::from_utf8_lossy(&demo.stderr));
    assert!(told.contains("checks held") && !told.contains("[FAIL"), "{told}");

    // Packaging is deterministic: the same binary at the same commit, packaged again at another moment under another
    // umask, gives the same bytes (names sorted, owner root, modes normalised, the commit's time, no gzip timestamp),
    // so a checksum names one archive.
    let again = scratch.path().join("again");
    package_with_umask(&again, "077");
    let sums = |dir: &Path| std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    assert_eq!(sums(&dist), sums(&again));
}

// Proves the script refuses, before building anything, a release from a tree with uncommitted changes (its binary
// would name a commit it is not), and arguments that contradict each other or that it does not know.
#[test]
fn the_script_refuses_a_modified_tree_and_contradicting_arguments() {
    let scratch = common::scratch();
    let clone = scratch.path().join("clone");
    let cloned = Command::new("git").args(["clone", "-q"]).arg(repo()).arg(&clone).status().unwrap();
    assert!(cloned.success());
    // The script under test is this tree's, in a clone whose README has a change not committed.
    let script = clone.join("scripts/release.sh");
    std::fs::copy(repo().join("scripts/release.sh"), &script).unwrap();
    let readme = clone.join("README.md");
    let mut text = std::fs::read_to_string(&readme).unwrap();
    text.push_str("\nchanged\n");
    std::fs::write(&readme, text).unwrap();
    let refused = release(&script, &["--target", "x86_64-unknown-linux-musl", "--out", "dist"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("uncommitted changes") && said.contains("--allow-modified"), "{said}");
    assert!(!clone.join("target").exists() && !clone.join("dist").exists(), "nothing was built or written");

    let both = release(&script, &["--binary", AIRLOCK, "--target", "aarch64-unknown-linux-musl"]);
    assert_eq!(both.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&both.stderr).contains("give no --target with it"));
    let unknown = release(&script, &["--fast"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown argument --fast"));
    let missing = release(&script, &["--binary", "/nonexistent/airlock"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is not an executable file"));
}
