//! Names the commit this binary is built from, for `airlock --version` (issue 22): `AIRLOCK_COMMIT` when the build
//! is given it (a container build, whose context has no `.git`), else what `git` says of the source tree, else
//! "unknown". It names the commit checked out; `scripts/release.sh` refuses a tree with changes not committed, so a
//! released binary is exactly its commit.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=AIRLOCK_COMMIT");
    let given = std::env::var("AIRLOCK_COMMIT").ok().filter(|commit| !commit.trim().is_empty());
    if let Some(given) = &given {
        // For the version test: which commit the build was told, rather than the checkout's.
        println!("cargo:rustc-env=AIRLOCK_COMMIT_GIVEN={given}");
    }
    let commit = given.or_else(|| {
        // Built again when HEAD moves (a commit, a checkout).
        let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
        watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
        for file in watched {
            // `--git-path` finds the file in a worktree or a repository alike.
            // A file that does not exist would make cargo run this script on every build: only existing ones.
            if let Some(path) =
                git(&["rev-parse", "--git-path", &file]).filter(|path| std::path::Path::new(path).exists())
            {
                println!("cargo:rerun-if-changed={path}");
            }
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    let commit = commit.unwrap_or_else(|| "unknown".to_string());
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets the package version");
    println!("cargo:rustc-env=AIRLOCK_COMMIT={commit}");
    println!("cargo:rustc-env=AIRLOCK_VERSION={version} (commit {commit})");
}
