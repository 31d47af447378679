#!/usr/bin/env bash
# Drives the web dashboard in a real headless Chromium: tests/browser/ starts
# the debug `kadi` binary on 127.0.0.1 (port 0) over a fresh SQLite database
# with a key from `kadi keys create`, signs in, creates a user and a link,
# follows the short URL, waits for the click in the chart, deactivates the
# link, and checks error pages, the keyboard, a phone's width and that no page
# logs a console error or a CSP violation. Screenshots of the main pages land
# in target/browser-artifacts/.
#
# Installs what it lacks: Debian's chromium and chromium-driver (as root; the
# browser is never downloaded by playwright), and playwright-core from the
# committed lockfile (`npm ci`). Builds the kadi binary with cargo, reusing
# the workspace's target directory. Every step is bounded in time, and the
# processes it starts are stopped on exit.
# Ends with `browser: N passed, N failed`; exits non-zero on any failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

target_dir=${CARGO_TARGET_DIR:-$root/target}
suite=$root/tests/browser
artifacts=$target_dir/browser-artifacts
chromium=/usr/bin/chromium
scratch=$(mktemp -d /tmp/kadi-browser.XXXXXX)
log=$scratch/runner.log
runner_pid=""

# Bounds of each step, in seconds.
APT_TIMEOUT=600
NPM_TIMEOUT=300
BUILD_TIMEOUT=3600
SUITE_TIMEOUT=300

say() { printf '==> %s\n' "$*" >&2; }

cleanup() {
    # The runner leads its own process group: kadi and the landing server are
    # in it, and playwright closes Chromium when the runner gets SIGTERM.
    if [ -n "$runner_pid" ] && kill -0 "$runner_pid" 2>/dev/null; then
        kill -TERM -- "-$runner_pid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$runner_pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL -- "-$runner_pid" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools

if [ ! -x "$chromium" ]; then
    if [ "$(id -u)" != 0 ]; then
        say "missing $chromium; install it (apt-get install chromium chromium-driver) or run as root"
        exit 1
    fi
    say "installing chromium and chromium-driver with apt-get"
    timeout "$APT_TIMEOUT" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT" \
        apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
# The Debian wrapper script prints a harmless shell warning before the version.
say "$("$chromium" --version 2>/dev/null | tail -n 1)"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "missing node and npm (node 20 or newer); install them first"
    exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    say "node $(node --version) is too old; the browser tests need node 20 or newer"
    exit 1
fi
say "node $(node --version), npm $(npm --version)"

say "npm ci in tests/browser (playwright-core from the lockfile, no browser download)"
(cd "$suite" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout "$NPM_TIMEOUT" \
    npm ci --no-audit --no-fund --loglevel=error >/dev/null)

say "building the kadi binary (cargo build -p kadi --bin kadi)"
timeout "$BUILD_TIMEOUT" cargo build -p kadi --bin kadi

# ---------------------------------------------------------------- tests

mkdir -p "$artifacts"
say "running the browser tests (screenshots in $artifacts)"
started=$(date +%s)
set +e
(
    cd "$suite"
    # The database, the browser profile and Chromium's temporary files all
    # go below $scratch, which is removed even when the runner is killed.
    export KADI_BIN=$target_dir/debug/kadi ARTIFACTS_DIR=$artifacts CHROMIUM=$chromium
    export TMPDIR=$scratch
    exec setsid timeout --kill-after=10 "$SUITE_TIMEOUT" \
        node --test --test-reporter=tap --test-concurrency=1 --test-timeout=180000 \
        dashboard.test.mjs
) >"$log" 2>&1 &
runner_pid=$!
wait "$runner_pid"
rc=$?
set -e
took=$(($(date +%s) - started))

passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$log" | tail -n 1)
failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$log" | tail -n 1)
passed=${passed:-0}
failed=${failed:-0}
if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then
    # The runner died or timed out before it could report a failure.
    failed=1
    echo "browser: the test runner exited with $rc after ${took}s" >&2
fi
if [ "$failed" != 0 ]; then
    grep -E '^(not ok|ok) ' "$log" | sed 's/^/      /'
    sed 's/^/      /' "$log" | tail -n 80
fi
echo "browser: $passed passed, $failed failed (${took}s, screenshots in ${artifacts#"$root"/})"
[ "$failed" = 0 ]
