#!/usr/bin/env bash
# Runs Prometheus and Alertmanager on 127.0.0.1 against a running `kadi` (and
# optionally `kadi-controller`), with Kadi's real rules and Alertmanager
# routing, for people without a cluster. Notifications are not sent anywhere:
# every receiver becomes a local webhook that prints what it gets here.
# Stops everything on Ctrl-C. See docs/monitoring.md ("Local stack").
#
#   kadi --metrics-listen 127.0.0.1:9464 &
#   scripts/monitoring-stack.sh                  # Prometheus on :9091, Alertmanager on :9093
#   scripts/monitoring-stack.sh --kadi 127.0.0.1:9464 --controller 127.0.0.1:9090
set -euo pipefail

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --kadi HOST:PORT               kadi's metrics listener (default 127.0.0.1:9464)
  --controller HOST:PORT         kadi-controller's metrics listener (default: not scraped)
  --prometheus-port PORT         default 9091
  --alertmanager-port PORT       default 9093
  --interval DURATION            scrape and evaluation interval (default 5s)
EOF
}

kadi_target=127.0.0.1:9464
controller_target=""
prom_port=9091
am_port=9093
interval=5s
while [ $# -gt 0 ]; do
    case "$1" in
    --kadi) kadi_target=$2; shift 2 ;;
    --controller) controller_target=$2; shift 2 ;;
    --prometheus-port) prom_port=$2; shift 2 ;;
    --alertmanager-port) am_port=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
for target in "$kadi_target" $controller_target; do
    case "$target" in
    127.0.0.1:* | localhost:* | '[::1]':*) ;;
    *) echo "only loopback targets: $target" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
export MONITORING_CHECKS=$root/monitoring/checks/monitoring_checks.py
# shellcheck source=monitoring/checks/lib.sh
source "$root/monitoring/checks/lib.sh"

for bin in prometheus prometheus-alertmanager; do
    if ! command -v "$bin" >/dev/null; then
        echo "$bin is missing: apt-get install --no-install-recommends prometheus prometheus-alertmanager" >&2
        exit 1
    fi
done
venv=$root/.ci-cache/monitoring-venv
if ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check PyYAML==6.0.2
fi

if ! curl -fsS -o /dev/null --max-time 2 "http://$kadi_target/metrics"; then
    echo "warning: nothing answers on http://$kadi_target/metrics yet; start kadi with --metrics-listen $kadi_target" >&2
fi

dir=$(mktemp -d /tmp/kadi-monitoring-stack.XXXXXX)
trap 'stop_started; rm -rf "$dir"' EXIT
trap 'exit 0' INT TERM

hook_port=$(free_port)
start_receiver "$venv/bin/python" "$hook_port" "$dir/notifications.jsonl" --echo

"$venv/bin/python" "$MONITORING_CHECKS" am-test-config "$root/monitoring/alertmanager/alertmanager.yml" \
    "http://127.0.0.1:$hook_port" >"$dir/alertmanager.yml"
start_alertmanager "$dir/alertmanager.yml" "$am_port" "$dir/am"

{
    cat <<EOF
global:
  scrape_interval: $interval
  evaluation_interval: $interval
rule_files:
  - $root/monitoring/prometheus/rules/kadi.rules.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$am_port"]
scrape_configs:
  - job_name: kadi
    static_configs:
      - targets: ["$kadi_target"]
EOF
    if [ -n "$controller_target" ]; then
        cat <<EOF
  - job_name: kadi-controller
    static_configs:
      - targets: ["$controller_target"]
EOF
    fi
} >"$dir/prometheus.yml"
start_prometheus "$dir/prometheus.yml" "$prom_port" "$dir/prom"

cat <<EOF
Prometheus    http://127.0.0.1:$prom_port   (alerts: /alerts, targets: /targets)
Alertmanager  http://127.0.0.1:$am_port
Scraping      kadi at $kadi_target${controller_target:+, kadi-controller at $controller_target}
Notifications are printed below. Ctrl-C stops everything.
EOF
# Waits on the receiver, which prints notifications, until Ctrl-C.
wait "${STARTED_PIDS[0]}"
