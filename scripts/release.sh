#!/usr/bin/env bash
# Release archives (issue 22): airlock built for each target, with the licence, README, changelog, security policy,
# manual pages, shell completions, the example configuration and the shipped policies, one .tar.gz per target, and a
# SHA-256 checksum file over them.
#
#   scripts/release.sh [--out DIR] [--target TRIPLE]...   build and package (default: x86_64 and aarch64 Linux, musl)
#   scripts/release.sh --binary PATH [--out DIR]          package a binary already built for this machine (no build):
#                                                         the test suite's fast path, tests/cli/release.rs
#
# The version is Cargo.toml's, and `airlock --version` names the commit too. A release is built from a tree with no
# uncommitted changes (--allow-modified to build one anyway, for trying the script out), so the commit it names is
# exactly what is in it. Targets ending in -musl are linked statically and run on any Linux distribution; they are
# built with cargo-zigbuild (zig as the C compiler, for SQLite and ring) where it is installed, else, for x86_64 only,
# with Debian's musl-gcc (musl-tools). Packaging is deterministic: the same binary at the same commit gives the same
# archive byte for byte (names sorted, owner root, modes normalised, times the commit's, no gzip timestamp).
set -euo pipefail
# A failing command inside $(...) fails the script too (bash turns errexit off there otherwise).
shopt -s inherit_errexit
repository=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit "$1"
}

out=dist
binary=""
allow_modified=false
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=${2:?--out needs a folder}; shift 2 ;;
        --target) targets+=("${2:?--target needs a target triple}"); shift 2 ;;
        --binary) binary=${2:?--binary needs a path}; shift 2 ;;
        --allow-modified) allow_modified=true; shift ;;
        -h|--help) usage 0 ;;
        *) echo "release.sh: unknown argument $1 (--help lists them)" >&2; exit 2 ;;
    esac
done

fail() {
    echo "release.sh: $*" >&2
    exit 1
}

# Paths given are the caller's; the script works from the repository.
absolute() {
    case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac
}
out=$(absolute "$out")
[ -z "$binary" ] || binary=$(absolute "$binary")
cd "$repository"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
[ -n "$version" ] || fail "no version in Cargo.toml"
host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${CARGO_TARGET_DIR:-target}

if [ -n "$binary" ]; then
    [ ${#targets[@]} -eq 0 ] || fail "--binary packages one binary for this machine; give no --target with it"
    [ -x "$binary" ] || fail "--binary $binary is not an executable file"
    targets=("$host")
else
    [ ${#targets[@]} -gt 0 ] || targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
    if [ "$allow_modified" = false ]; then
        git rev-parse --git-dir >/dev/null 2>&1 || fail "not a git checkout: a release names its commit"
        if [ -n "$(git status --porcelain)" ]; then
            fail "the tree has uncommitted changes or untracked files: commit them (the binary names its commit, and \
the archive takes files from the tree), or give --allow-modified"
        fi
    fi
    # Every tool a target needs, before anything is built.
    for target in "${targets[@]}"; do
        [ "$target" = "$host" ] && continue
        command -v cargo-zigbuild >/dev/null 2>&1 && continue
        [ "$target" = x86_64-unknown-linux-musl ] && command -v musl-gcc >/dev/null 2>&1 && continue
        fail "building for $target needs cargo-zigbuild and zig (pip install ziglang; cargo install cargo-zigbuild),
or, for x86_64-unknown-linux-musl only, Debian's musl-tools"
    done
    # The commit is the checkout's, never one a caller's environment claims.
    unset AIRLOCK_COMMIT
fi

# The release profile without debug information or symbols (the repository's keeps line tables, for perf), as the
# container image builds it too (Dockerfile).
export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols

# Every file's time in the archives is the commit's (or SOURCE_DATE_EPOCH's, if given).
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null) || fail "not a git checkout: give SOURCE_DATE_EPOCH"
fi
export SOURCE_DATE_EPOCH

# Builds airlock for target $1 and prints the path of the binary (the build's own output goes to stderr).
build() {
    local target=$1
    if [ "$target" = "$host" ]; then
        cargo build --release --locked --bin airlock >&2 || fail "the build for $target failed"
        echo "$target_dir/release/airlock"
        return
    fi
    rustup target list --installed 2>/dev/null | grep -qx "$target" || rustup target add "$target" >&2 \
        || fail "cannot add the Rust target $target (rustup target add $target)"
    if command -v cargo-zigbuild >/dev/null 2>&1; then
        cargo zigbuild --release --locked --bin airlock --target "$target" >&2 || fail "the build for $target failed"
    else
        CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --bin airlock --target "$target" >&2 \
            || fail "the build for $target failed"
    fi
    echo "$target_dir/$target/release/airlock"
}

binaries=()
for target in "${targets[@]}"; do
    if [ -n "$binary" ]; then
        binaries+=("$binary")
    else
        echo "== building airlock $version for $target" >&2
        built=$(build "$target")
        binaries+=("$built")
    fi
done

# Every binary runs without a configuration file or context of the caller's, which would change nothing here but
# could refuse to start. One that runs here must be the release it is packaged as (this version, this commit), and
# the first of them writes the manual pages and completions, the same for every target (they come from the command
# tree).
plain() { env -u AIRLOCK_CONFIG -u AIRLOCK_CONTEXT "$@"; }
runner=""
for built in "${binaries[@]}"; do
    said=$(plain "$built" --version 2>/dev/null) || continue
    if [ -z "$binary" ]; then
        commit=$(git rev-parse --short=12 HEAD)
        [ "$said" = "airlock $version (commit $commit)" ] || fail "$built says \"$said\", not airlock $version at $commit"
    fi
    [ -n "$runner" ] || runner=$built
done
[ -n "$runner" ] || fail "none of the binaries runs on this machine ($host), so the manual pages cannot be written"
generated=$(mktemp -d)
trap 'rm -rf "$generated"' EXIT
run() { plain "$runner" "$@"; }
run man --out "$generated/man/man1" >/dev/null
mkdir -p "$generated/completions"
run completions bash > "$generated/completions/airlock.bash"
run completions zsh > "$generated/completions/_airlock"
run completions fish > "$generated/completions/airlock.fish"

mkdir -p "$out"
archives=()
for index in "${!targets[@]}"; do
    target=${targets[$index]}
    name="airlock-$version-$target"
    stage="$generated/stage/$name"
    mkdir -p "$stage/examples"
    install -m 0755 "${binaries[$index]}" "$stage/airlock"
    cp LICENSE README.md CHANGELOG.md SECURITY.md "$stage/"
    cp -R "$generated/man" "$generated/completions" "$stage/"
    cp -R policies "$stage/policies"
    cp examples/airlock.toml "$stage/examples/airlock.toml"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mode=go-w,a+rX --mtime="@$SOURCE_DATE_EPOCH" \
        -C "$generated/stage" -cf - "$name" | gzip -n > "$out/$name.tar.gz"
    archives+=("$name.tar.gz")
    echo "== $out/$name.tar.gz" >&2
done

(cd "$out" && sha256sum "${archives[@]}" > SHA256SUMS && sha256sum --check --quiet SHA256SUMS)
echo "== $out/SHA256SUMS" >&2
