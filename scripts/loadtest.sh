#!/usr/bin/env bash
# Runs Kadi's full load suite on this machine and writes the report into
# docs/benchmarks/ (or the folder given as the first argument). Builds release
# binaries; uses DATABASE_URL / REDIS_URL when set, else throwaway servers on
# loopback. Every target is 127.0.0.1 and every phase is bounded in time.
# Extra arguments after the folder go to `loadtest full` (see its --help).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-docs/benchmarks}
shift || true

# shellcheck source=scripts/services.sh
source "$root/scripts/services.sh"
[ -n "${DATABASE_URL:-}" ] || start_postgres
[ -n "${REDIS_URL:-}" ] || start_redis

cargo build --release --locked -p kadi -p kadi-loadtest
target/release/loadtest full --out "$out" "$@"
