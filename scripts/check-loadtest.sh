#!/usr/bin/env bash
# Load smoke for CI: a few seconds of redirect-hot and mixed against the real
# kadi binary on SQLite and the baseline server, all on 127.0.0.1. Fails on
# any error or on a served click that was not stored.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -q -p kadi -p kadi-loadtest
exec target/debug/loadtest smoke --out target/loadtest-smoke
