#!/usr/bin/env bash
# Generated attacks against the HTTP API: Schemathesis reads /openapi.json
# from a real `kadi` process on 127.0.0.1 and sends requests made from the
# document (valid ones, invalid ones and stateful sequences that create,
# read, change and delete), checking every answer against the document.
#
# Two runs, each on a fresh SQLite database: `--auth off`, and `--auth
# required` with a valid key, so that the authenticated paths and the 401
# answers are exercised too. Rate limits are on but generous, so that the
# RateLimit-* headers are checked without the run turning into 429s.
#
# The budget is fixed: a seed, a number of examples per operation and an
# outer time limit per run. A bigger local run:
#
#   API_FUZZ_EXAMPLES=500 API_FUZZ_SEED=7 API_FUZZ_TIMEOUT=1800 scripts/check-api-fuzz.sh
#
# Installs Schemathesis into a venv under the build directory on the first
# run, builds the kadi binary, and ends with
# `api-fuzz: N operations, M requests, F failures`; exits non-zero on any
# failure (a 5xx, an undocumented status, header or content type, or a body
# that does not match its schema).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Pinned: a new release brings new checks and generators, which belong in a
# change of their own.
SCHEMATHESIS_VERSION=4.32.5
examples=${API_FUZZ_EXAMPLES:-50}
seed=${API_FUZZ_SEED:-20261204}
# Seconds one run may take; the fixed budget above needs well under a minute
# each on two busy cores, so hitting this is a failure (a hang), not noise.
run_timeout=${API_FUZZ_TIMEOUT:-120}

target_dir=${CARGO_TARGET_DIR:-$root/target}
venv=$target_dir/api-fuzz/venv
# KADI_BIN runs a binary built elsewhere instead of building this tree.
kadi_bin=${KADI_BIN:-$target_dir/debug/kadi}
mkdir -p "$target_dir/api-fuzz"
scratch=$(mktemp -d "$target_dir/api-fuzz/run.XXXXXX")
kadi_pid=""

cleanup() {
    if [ -n "$kadi_pid" ] && kill -0 "$kadi_pid" 2>/dev/null; then
        kill "$kadi_pid" 2>/dev/null || true
        wait "$kadi_pid" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '==> %s\n' "$*" >&2; }

install_schemathesis() {
    if [ -x "$venv/bin/schemathesis" ] &&
        "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
        return
    fi
    say "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}

# start_kadi AUTH [ENV=VALUE...]: starts kadi on a fresh database and a free
# loopback port; sets $base.
start_kadi() {
    local auth=$1
    shift
    local db=$scratch/$auth.sqlite log=$scratch/kadi-$auth.log
    # Generous limits: the run stays far below them, so every answer is the
    # handler's, while the limiter still stamps its RateLimit-* headers.
    env -u REDIS_URL -u KADI_PUBLIC_URL "$@" DATABASE_URL="sqlite:$db" \
        "$kadi_bin" --listen 127.0.0.1:0 --log-format json --log warn,kadi=info \
        --auth "$auth" --api-rate-limit 100000 --api-rate-burst 100000 \
        --redirect-rate-limit 100000 --redirect-rate-burst 100000 >"$log" 2>&1 &
    kadi_pid=$!
    base=""
    for _ in $(seq 1 100); do
        base=$(sed -n 's/.*"message":"Kadi is listening".*"url":"\([^"]*\)".*/\1/p' "$log" 2>/dev/null |
            head -n 1)
        [ -n "$base" ] && break
        kill -0 "$kadi_pid" 2>/dev/null || break
        sleep 0.2
    done
    if [ -z "$base" ]; then
        say "kadi did not start"
        cat "$log" >&2
        return 1
    fi
    case "$base" in
    http://127.0.0.1:*) ;;
    *)
        say "kadi listens on $base, not on 127.0.0.1"
        return 1
        ;;
    esac
}

stop_kadi() {
    kill "$kadi_pid" 2>/dev/null || true
    wait "$kadi_pid" 2>/dev/null || true
    kadi_pid=""
}

# Checks that apply to Kadi. Left out, and why:
# - positive_data_acceptance: a schema cannot state every rule of a valid
#   target URL (WHATWG parsing, no credentials, not Kadi's own host) or a
#   reserved short code, so schema-valid bodies are rightly refused with 422.
#   The Rust property tests (app/tests/fuzz.rs) cover what is accepted.
# - object_level_authorization: every API key may act on every resource;
#   there are no per-user owners to keep apart.
# - max_response_time: timing on two shared cores is noise, not a contract.
checks_for() {
    local checks=not_a_server_error,status_code_conformance,content_type_conformance
    checks+=,response_headers_conformance,response_schema_conformance
    checks+=,negative_data_rejection,missing_required_header,unsupported_method
    checks+=,allow_header_conformance,use_after_free,ensure_resource_availability
    # ignored_auth needs an API that requires keys.
    [ "$1" = required ] && checks+=,ignored_auth
    echo "$checks"
}

# fuzz AUTH [SCHEMATHESIS ARGS...]: one run against the kadi started last.
fuzz() {
    local auth=$1 rc=0
    shift
    say "schemathesis against $base (auth $auth, $examples examples per operation, seed $seed)"
    # --max-redirects 0: redirects point at generated hosts; following one
    # would send traffic off this machine.
    # From the scratch folder: Schemathesis keeps a cache in its working
    # directory, which must not land in the repository.
    (cd "$scratch" && timeout --kill-after=10 "$run_timeout" "$venv/bin/schemathesis" run "$base/openapi.json" \
        --checks "$(checks_for "$auth")" \
        --phases examples,coverage,fuzzing,stateful \
        --max-examples "$examples" --seed "$seed" --generation-database none \
        --max-redirects 0 --request-timeout 10 --workers 1 \
        --exclude-path-regex '^/dashboard' \
        --no-color --report ndjson --report-ndjson-path "$scratch/$auth.ndjson" \
        "$@") >"$scratch/schemathesis-$auth.log" 2>&1 || rc=$?
    # The whole report: phases, link coverage and warnings say how deep the
    # run reached, even when it passes.
    grep -v '^\s*$' "$scratch/schemathesis-$auth.log" || true
    [ "$rc" = 124 ] && say "schemathesis ran past ${run_timeout}s"
    return "$rc"
}

# summarise NDJSON...: prints "OPERATIONS REQUESTS FAILURES" over the runs.
summarise() {
    "$venv/bin/python" - "$@" <<'EOF'
import json, sys

operations, requests, failures = 0, 0, 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        failures += 1
        continue
    for line in lines:
        event = json.loads(line)
        if "LoadingFinished" in event:
            stats = event["LoadingFinished"]["statistic"]["operations"]
            operations = max(operations, stats["selected"])
        elif "ScenarioFinished" in event:
            recorder = event["ScenarioFinished"]["recorder"]
            requests += len(recorder.get("interactions", {}))
            for checks in recorder.get("checks", {}).values():
                failures += sum(1 for check in checks if check["status"] == "failure")
print(operations, requests, failures)
EOF
}

install_schemathesis
if [ -z "${KADI_BIN:-}" ]; then
    say "building the kadi binary (cargo build -p kadi --bin kadi)"
    cargo build -q -p kadi --bin kadi
fi

failed=0
started=$SECONDS

if start_kadi off; then
    fuzz off || failed=1
else
    failed=1
fi
stop_kadi

# A key in kadi's format (kadi_ and 64 hex digits), registered at start.
key=kadi_$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
if start_kadi required KADI_BOOTSTRAP_API_KEY="$key"; then
    fuzz required --header "Authorization: Bearer $key" || failed=1
else
    failed=1
fi
stop_kadi

read -r operations requests failures < <(summarise "$scratch/off.ndjson" "$scratch/required.ndjson" ||
    echo "0 0 1")
if [ "$failed" != 0 ] && [ "$failures" = 0 ]; then
    failures=1
fi
say "took $((SECONDS - started))s"
echo "api-fuzz: $operations operations, $requests requests, $failures failures"
[ "$failed" = 0 ]
