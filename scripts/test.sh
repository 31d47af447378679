#!/usr/bin/env bash
# Runs Kadi's whole test suite: formatting, lints, every Rust test on SQLite and
# PostgreSQL (with Redis), and the checks of the non-Rust parts that are present.
#
# PostgreSQL and Redis: when DATABASE_URL / REDIS_URL are not set, a throwaway
# server of each is started on a free loopback port for this run and removed
# afterwards. Missing server binaries are installed with apt-get when running
# as root.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# shellcheck source=scripts/services.sh
source "$root/scripts/services.sh"

[ -n "${DATABASE_URL:-}" ] || start_postgres
[ -n "${REDIS_URL:-}" ] || start_redis

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

# Checks of the non-Rust parts (chart, monitoring, load smoke, browser), each a
# script that installs its own tools and prints its own summary line.
for check in scripts/check-*.sh; do
    [ -e "$check" ] || continue
    say "$check"
    bash "$check"
done
