#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test. `.ci/run` runs exactly this.
# It installs what it needs when it is missing (the Rust toolchain's rustfmt and clippy components).
set -euo pipefail
cd "$(dirname "$0")/.."

need_component() {
    if ! cargo "$1" --version >/dev/null 2>&1; then
        echo "== installing the $2 component"
        rustup component add "$2"
    fi
}
need_component fmt rustfmt
need_component clippy clippy

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --all-targets --locked
