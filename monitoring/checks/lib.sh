# Shell functions shared by scripts/check-monitoring.sh and
# scripts/monitoring-stack.sh: free loopback ports, waiting for endpoints,
# and starting Prometheus, Alertmanager and a webhook receiver on 127.0.0.1.
# Every process started here is recorded in STARTED_PIDS; the caller's EXIT
# trap calls stop_started.
# shellcheck shell=bash

STARTED_PIDS=()

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL SECONDS: waits until URL answers 2xx.
wait_http() {
    local url=$1 seconds=$2 deadline
    deadline=$((SECONDS + seconds))
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            echo "no answer from $url within ${seconds}s" >&2
            return 1
        fi
        sleep 0.2
    done
}

# Stops every process this script started, by process id.
stop_started() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
}

# start_prometheus CONFIG PORT DIR: Prometheus on 127.0.0.1:PORT with its
# data under DIR; waits until it is ready.
start_prometheus() {
    local config=$1 port=$2 dir=$3
    mkdir -p "$dir"
    prometheus --config.file="$config" --storage.tsdb.path="$dir/data" \
        --web.listen-address="127.0.0.1:$port" --rules.alert.resend-delay=1s \
        --log.level=warn >"$dir/prometheus.log" 2>&1 &
    STARTED_PIDS+=($!)
    wait_http "http://127.0.0.1:$port/-/ready" 30
}

# start_alertmanager CONFIG PORT DIR: Alertmanager on 127.0.0.1:PORT without
# its cluster port; waits until it is ready.
start_alertmanager() {
    local config=$1 port=$2 dir=$3
    mkdir -p "$dir"
    prometheus-alertmanager --config.file="$config" --storage.path="$dir/data" \
        --web.listen-address="127.0.0.1:$port" --cluster.listen-address= \
        --log.level=warn >"$dir/alertmanager.log" 2>&1 &
    STARTED_PIDS+=($!)
    wait_http "http://127.0.0.1:$port/-/ready" 30
}

# start_receiver PYTHON PORT FILE [--echo]: the webhook receiver of
# monitoring_checks.py, appending notifications to FILE.
start_receiver() {
    local python=$1 port=$2 file=$3
    shift 3
    "$python" "$MONITORING_CHECKS" receive "$port" "$file" "$@" &
    STARTED_PIDS+=($!)
    local deadline=$((SECONDS + 10))
    until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            echo "webhook receiver did not start" >&2
            return 1
        fi
        sleep 0.1
    done
}
