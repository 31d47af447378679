#!/usr/bin/env bash
# Checks everything in monitoring/ and the monitoring docs, offline and live:
#
#   static  promtool check config / check rules / test rules; rule lint
#           (severity, annotations, runbook anchors, a firing and a quiet test
#           per alert); amtool check-config and routing cases; dashboards
#           against the committed JSON Schema; metric names of every rule and
#           dashboard query against docs/monitoring.md; dashboard queries
#           parsed by promtool
#   live    on 127.0.0.1 only: a throwaway PostgreSQL, the debug `kadi`
#           binary against it, Prometheus, Alertmanager and a webhook
#           receiver. `promtool check metrics` on kadi's /metrics, scrapes,
#           every dashboard query on live data, inhibition, and the
#           KadiDatabaseUnreachable alert reaching the pager receiver when
#           PostgreSQL stops, then resolving when it is back.
#
# Installs what it lacks (as root): Debian's prometheus and
# prometheus-alertmanager, PostgreSQL, and a venv in .ci-cache/ with
# check-jsonschema, PyYAML and yamllint. Builds target/debug/kadi when it is missing.
# Ends with `monitoring: N passed, N failed`; exits non-zero on any failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export MONITORING_CHECKS=$root/monitoring/checks/monitoring_checks.py
# shellcheck source=monitoring/checks/lib.sh
source "$root/monitoring/checks/lib.sh"

venv=$root/.ci-cache/monitoring-venv
kadi_bin=${CARGO_TARGET_DIR:-$root/target}/debug/kadi
scratch=$(mktemp -d /tmp/kadi-monitoring.XXXXXX)
pg_bin=""
pg_data=""
pg_port=""

cleanup() {
    stop_started
    if [ -n "$pg_data" ] && [ -f "$pg_data/postmaster.pid" ]; then
        as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '==> %s\n' "$*" >&2; }

as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

apt_updated=""
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        say "missing $*; install it (apt-get install $*) or run as root"
        exit 1
    fi
    if [ -z "$apt_updated" ]; then
        apt-get update -qq
        apt_updated=1
    fi
    say "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------- tools

install_tools() {
    local bin missing=""
    for bin in prometheus promtool prometheus-alertmanager amtool; do
        command -v "$bin" >/dev/null || missing=1
    done
    [ -z "$missing" ] || apt_install prometheus prometheus-alertmanager
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        apt_install postgresql
    fi
    pg_bin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if ! "$venv/bin/python" -c 'import yaml' 2>/dev/null || [ ! -x "$venv/bin/check-jsonschema" ] ||
        [ ! -x "$venv/bin/yamllint" ]; then
        say "creating $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check \
            check-jsonschema==0.39.0 PyYAML==6.0.2 yamllint==1.38.0
    fi
    if [ ! -x "$kadi_bin" ]; then
        say "building the kadi binary (cargo build -p kadi)"
        cargo build -p kadi --bin kadi
    fi
    say "$(promtool --version 2>&1 | head -n 1)"
    say "$(amtool --version 2>&1 | head -n 1)"
}

# ---------------------------------------------------------------- checks

passed=0
failed=0

report() {
    local name=$1 rc=$2 log=$3 took=$4
    if [ "$rc" = 0 ]; then
        passed=$((passed + 1))
        printf 'PASS  %s (%ss)\n' "$name" "$took"
        grep -v '^\s*$' "$log" | tail -n 1 | sed 's/^\s*/      /' || true
    else
        failed=$((failed + 1))
        printf 'FAIL  %s\n' "$name"
        sed 's/^/      /' "$log"
    fi
}

# check NAME COMMAND...: runs COMMAND in a subshell with errexit on.
check() {
    local name=$1 started=$SECONDS rc=0
    shift
    set +e
    (
        set -e
        "$@"
    ) >"$scratch/check.log" 2>&1
    rc=$?
    set -e
    report "$name" "$rc" "$scratch/check.log" $((SECONDS - started))
}

# check_here NAME FUNCTION: like check, in this shell, for steps that start
# processes; the function returns non-zero itself on failure.
check_here() {
    local name=$1 started=$SECONDS rc=0
    shift
    "$@" >"$scratch/check.log" 2>&1 || rc=$?
    report "$name" "$rc" "$scratch/check.log" $((SECONDS - started))
    return "$rc"
}

py() { "$venv/bin/python" "$MONITORING_CHECKS" "$@"; }

routing_cases() {
    local want labels cases=0
    while read -r want labels; do
        case "$want" in '' | '#'*) continue ;; esac
        # shellcheck disable=SC2086 # labels are separate arguments
        amtool config routes test --config.file=monitoring/alertmanager/alertmanager.yml \
            --verify.receivers="$want" $labels 2>/dev/null
        cases=$((cases + 1))
    done <monitoring/alertmanager/routing-tests.txt
    echo "$cases routing cases reach their receivers"
}

# A wrong expectation must fail: proves amtool's verification bites.
routing_mismatch_fails() {
    if amtool config routes test --config.file=monitoring/alertmanager/alertmanager.yml \
        --verify.receivers=chat severity=critical >/dev/null 2>&1; then
        echo "a critical alert claimed to reach only chat passed" >&2
        return 1
    fi
    echo "a wrong receiver expectation fails as it should"
}

dashboard_queries_parse() {
    py dashboard-rules "$scratch/dashboard-queries.yml"
    promtool check rules "$scratch/dashboard-queries.yml"
}

yamllint_monitoring() {
    # The repository's yamllint rules (shared with the chart's checks).
    local config=(-c scripts/packaging/yamllint.yaml)
    [ -f scripts/packaging/yamllint.yaml ] || config=(-d relaxed)
    "$venv/bin/yamllint" --strict "${config[@]}" monitoring/
    echo "monitoring/ YAML is clean"
}

static_checks() {
    check "yamllint monitoring/" yamllint_monitoring
    check "promtool check config (prometheus.yml and its rules)" \
        promtool check config monitoring/prometheus/prometheus.yml
    check "promtool check rules" promtool check rules monitoring/prometheus/rules/*.yml
    check "promtool test rules (every alert fires and stays quiet)" \
        promtool test rules monitoring/prometheus/tests/*.test.yml
    check "alerts: severity, annotations, runbook anchors, test coverage" py lint-rules
    check "amtool check-config" amtool check-config monitoring/alertmanager/alertmanager.yml
    check "amtool routing cases" routing_cases
    check "amtool routing: a wrong expectation fails" routing_mismatch_fails
    check "Grafana dashboards match the JSON Schema" \
        "$venv/bin/check-jsonschema" --schemafile monitoring/grafana/dashboard.schema.json \
        monitoring/grafana/dashboards/*.json
    check "rule and dashboard metric names are documented" py metric-names
    check "every dashboard query parses (promtool)" dashboard_queries_parse
}

# ---------------------------------------------------------------- live

start_postgres() {
    as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -l "$scratch/pg/postgres.log" -w -t 30 start \
        -o "-p $pg_port -k $scratch/pg -c listen_addresses=127.0.0.1 -c fsync=off" >/dev/null
}

stop_postgres() {
    as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null
}

start_stack() {
    # The data directory belongs to postgres, and so must every folder
    # leading to it be open to it.
    mkdir -p "$scratch/pg" || return 1
    if [ "$(id -u)" = 0 ]; then
        chmod 755 "$scratch" && chown postgres "$scratch/pg" || return 1
    fi
    pg_port=$(free_port)
    pg_data=$scratch/pg/data
    as_postgres "$pg_bin/initdb" -D "$pg_data" -A trust -U postgres >/dev/null || return 1
    start_postgres || return 1
    echo "PostgreSQL on 127.0.0.1:$pg_port"

    metrics_port=$(free_port)
    # Keys and abuse limits are not what this test is about: its traffic
    # generator uses the API without a key and faster than the default limits.
    env -u REDIS_URL -u KADI_PUBLIC_URL \
        DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres" \
        "$kadi_bin" --listen 127.0.0.1:0 --log-format json --log info \
        --auth off --api-rate-limit 0 --redirect-rate-limit 0 \
        --metrics-listen "127.0.0.1:$metrics_port" >"$scratch/kadi.log" 2>&1 &
    STARTED_PIDS+=($!)
    wait_http "http://127.0.0.1:$metrics_port/metrics" 30 || { cat "$scratch/kadi.log"; return 1; }
    api=$(python3 -c '
import json, sys, time
deadline = time.time() + 20
while time.time() < deadline:
    for line in open(sys.argv[1]):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "Kadi is listening" or entry.get("fields", {}).get("message") == "Kadi is listening":
            print(entry.get("url") or entry.get("fields", {}).get("url")); sys.exit(0)
    time.sleep(0.2)
sys.exit(1)' "$scratch/kadi.log") || { cat "$scratch/kadi.log"; return 1; }
    echo "kadi at $api, metrics on 127.0.0.1:$metrics_port"

    hook_port=$(free_port)
    notifications=$scratch/notifications.jsonl
    start_receiver "$venv/bin/python" "$hook_port" "$notifications" || return 1

    am_port=$(free_port)
    py am-test-config monitoring/alertmanager/alertmanager.yml "http://127.0.0.1:$hook_port" \
        >"$scratch/alertmanager.yml" || return 1
    start_alertmanager "$scratch/alertmanager.yml" "$am_port" "$scratch/am" || return 1
    echo "Alertmanager on 127.0.0.1:$am_port, webhook receiver on 127.0.0.1:$hook_port"

    prom_port=$(free_port)
    cat >"$scratch/prometheus.yml" <<EOF || return 1
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $root/monitoring/prometheus/rules/kadi.rules.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$am_port"]
scrape_configs:
  - job_name: kadi
    static_configs:
      - targets: ["127.0.0.1:$metrics_port"]
EOF
    promtool check config "$scratch/prometheus.yml" >/dev/null || return 1
    start_prometheus "$scratch/prometheus.yml" "$prom_port" "$scratch/prom" || return 1
    echo "Prometheus on 127.0.0.1:$prom_port"
}

# Some API traffic and redirects, so that the labelled series exist.
make_traffic() {
    local user code
    user=$(curl -fsS --max-time 10 -X POST -H 'content-type: application/json' \
        -d '{"username":"monitoring","email":"monitoring@example.com"}' "$api/users" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    code=$(curl -fsS --max-time 10 -X POST -H 'content-type: application/json' \
        -d "{\"user_id\":$user,\"original_url\":\"https://example.com/monitoring\"}" "$api/urls" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["short_code"])')
    for _ in 1 2 3 4 5; do
        curl -sS --max-time 10 -o /dev/null "$api/$code"
        curl -sS --max-time 10 -o /dev/null "$api/no-such-code"
    done
    curl -fsS --max-time 10 -o /dev/null "$api/urls"
    echo "created link $code and followed it"
}

live_metrics_lint() {
    curl -fsS --max-time 10 "http://127.0.0.1:$metrics_port/metrics" >"$scratch/metrics.txt"
    grep -q '^kadi_http_request_duration_seconds_bucket{.*route="/{short_code}"' "$scratch/metrics.txt"
    promtool check metrics <"$scratch/metrics.txt"
    echo "$(grep -c '^# TYPE' "$scratch/metrics.txt") metric families lint clean"
}

live_metrics_documented() {
    py exposed-documented "$scratch/metrics.txt"
}

# prom_query EXPR: the number of series EXPR returns on live Prometheus.
prom_query() {
    curl -fsS --max-time 10 --get --data-urlencode "query=$1" "http://127.0.0.1:$prom_port/api/v1/query" |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["result"]))'
}

scrapes_succeed() {
    local deadline=$((SECONDS + 30))
    until [ "$(prom_query 'up{job="kadi"} == 1')" = 1 ] &&
        [ "$(prom_query 'kadi:http_requests:rate5m')" -gt 0 ] &&
        [ "$(prom_query 'kadi_db_up == 1')" = 1 ]; do
        if ((SECONDS >= deadline)); then
            echo "Prometheus has no successful scrape of kadi, or no recorded rate" >&2
            return 1
        fi
        sleep 0.5
    done
    echo "up{job=\"kadi\"} is 1, kadi_db_up is 1, recording rules have data"
}

database_alert_fires() {
    local t0
    t0=$(date +%s.%N)
    stop_postgres
    echo "PostgreSQL stopped"
    py wait-notification "$notifications" KadiDatabaseUnreachable firing --receiver pager \
        --after "$t0" --timeout 100
}

database_alert_resolves() {
    local t0
    t0=$(date +%s.%N)
    start_postgres
    echo "PostgreSQL started again"
    py wait-notification "$notifications" KadiDatabaseUnreachable resolved --receiver pager \
        --after "$t0" --timeout 60
}

live_checks() {
    if ! check_here "live stack on 127.0.0.1 (PostgreSQL, kadi, Prometheus, Alertmanager, receiver)" \
        start_stack; then
        for log in kadi.log prom/prometheus.log am/alertmanager.log pg/postgres.log; do
            [ -f "$scratch/$log" ] && tail -n 20 "$scratch/$log" | sed "s|^|      $log: |"
        done
        return 0
    fi
    check "live: API traffic and redirects" make_traffic
    check "live: promtool check metrics on kadi's /metrics" live_metrics_lint
    check "live: kadi's metric families are those in docs/monitoring.md" live_metrics_documented
    check "live: Prometheus scrapes kadi and records" scrapes_succeed
    check "live: every dashboard query runs on Prometheus" py live-queries "http://127.0.0.1:$prom_port"
    check "live: instance down inhibits its latency alert" py check-inhibition "http://127.0.0.1:$am_port"
    check "live: PostgreSQL stops -> KadiDatabaseUnreachable reaches the pager" database_alert_fires
    check "live: PostgreSQL back -> KadiDatabaseUnreachable resolved" database_alert_resolves
}

install_tools
static_checks
live_checks

echo "monitoring: $passed passed, $failed failed"
[ "$failed" = 0 ]
