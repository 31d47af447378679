# Throwaway PostgreSQL and Redis on free loopback ports, for the test and load
# scripts. Source it; call start_postgres / start_redis; the EXIT trap it sets
# stops them and removes their data.

scratch=$(mktemp -d /tmp/kadi-services.XXXXXX)
pg_ctl_bin=""
redis_pid_file=""
cleanup() {
    if [ -n "$pg_ctl_bin" ]; then
        as_postgres "$pg_ctl_bin" -D "$scratch/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ -n "$redis_pid_file" ] && [ -f "$redis_pid_file" ]; then
        kill "$(cat "$redis_pid_file")" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

say() { printf '==> %s\n' "$*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        say "missing $*; install it or set DATABASE_URL/REDIS_URL to running servers"
        exit 1
    fi
    say "installing $* with apt-get"
    if [ -z "${KADI_APT_UPDATED:-}" ]; then
        apt-get update -qq
        export KADI_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

start_postgres() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        apt_install postgresql
        bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    local port
    port=$(free_port)
    mkdir -p "$scratch/pg"
    if [ "$(id -u)" = 0 ]; then chown -R postgres "$scratch"; fi
    as_postgres "$bin/initdb" -D "$scratch/pg" -A trust -U postgres >/dev/null
    as_postgres "$bin/pg_ctl" -D "$scratch/pg" -l "$scratch/pg.log" -w start \
        -o "-p $port -k $scratch -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400" >/dev/null
    pg_ctl_bin="$bin/pg_ctl"
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    say "throwaway PostgreSQL on 127.0.0.1:$port"
}

start_redis() {
    command -v redis-server >/dev/null || apt_install redis-server
    local port
    port=$(free_port)
    redis_pid_file="$scratch/redis.pid"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize yes --pidfile "$redis_pid_file" --logfile "$scratch/redis.log" --dir "$scratch"
    for _ in $(seq 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    export REDIS_URL="redis://127.0.0.1:$port"
    say "throwaway Redis on 127.0.0.1:$port"
}

