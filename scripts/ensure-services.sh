#!/usr/bin/env bash
# Make sure Redis (127.0.0.1:6379) and RabbitMQ (127.0.0.1:5672, guest/guest) are running.
#
# For each service: if it already answers, do nothing. Otherwise install it with apt-get when
# the binary is missing (root only; otherwise print what to install and exit 1), start it
# without systemd (containers have none), and wait until it answers (Redis up to ~10 s,
# RabbitMQ up to ~60 s), printing the tail of its log on failure.
# Idempotent; prints a single line when everything is already up.
#
# Environment:
#   INFERQ_SKIP_SERVICES=1   do nothing (services are managed elsewhere)
#   REDIS_PORT=6379          Redis port to probe / start on (e.g. a throwaway server for testing)
#   REDIS_DIR, REDIS_LOG     Redis working dir / log file when starting it
#                            (default /var/lib/redis and /var/log/redis/ci.log as root,
#                            .cache/redis/{data,ci.log} otherwise)
#   RABBITMQ_PORT=5672       AMQP port to probe (does not change the port RabbitMQ is started on)
#   RABBITMQ_WAIT_SECS=60    how long to wait for RabbitMQ to boot
set -euo pipefail

if [[ "${INFERQ_SKIP_SERVICES:-0}" == 1 ]]; then
    echo "services: skipped (INFERQ_SKIP_SERVICES=1)"
    exit 0
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."   # repo root, for the non-root .cache fallback

HOST=127.0.0.1
REDIS_PORT="${REDIS_PORT:-6379}"
RABBITMQ_PORT="${RABBITMQ_PORT:-5672}"
RABBITMQ_WAIT_SECS="${RABBITMQ_WAIT_SECS:-60}"
REDIS_WAIT_SECS="${REDIS_WAIT_SECS:-10}"
# Debian puts rabbitmq-server & co. in /usr/sbin, which is not on a non-login PATH everywhere.
PATH="$PATH:/usr/sbin:/sbin"

is_root() { [[ "$(id -u)" == 0 ]]; }
have() { command -v "$1" >/dev/null 2>&1; }
log() { echo "services: $*" >&2; }
die() { echo "services: ERROR: $*" >&2; exit 1; }

# with_timeout SECS CMD...: `timeout` when available (guards against a filtered port).
with_timeout() {
    if have timeout; then timeout "$@"; else shift; "$@"; fi
}

# True if something accepts TCP connections on HOST:$1 (bash /dev/tcp; refused is instant on loopback).
port_open() {
    # shellcheck disable=SC2016  # $0/$1 are expanded by the inner bash
    with_timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

redis_up() {
    if have redis-cli; then
        [[ "$(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
    else
        # No redis-cli: speak the inline protocol by hand.
        # shellcheck disable=SC2016  # $0/$1 are expanded by the inner bash
        with_timeout 2 bash -c '
            exec 3<>"/dev/tcp/$0/$1" || exit 1
            printf "PING\r\n" >&3
            IFS= read -r -t 2 reply <&3 && [[ "$reply" == "+PONG"* ]]' "$HOST" "$REDIS_PORT" 2>/dev/null
    fi
}

rabbitmq_port_up() { port_open "$RABBITMQ_PORT"; }

# rabbitmq-diagnostics can only talk to the node as root or the rabbitmq user (Erlang cookie;
# the Debian wrapper refuses anyone else).
diag_usable() {
    have rabbitmq-diagnostics && { is_root || [[ "$(id -un)" == rabbitmq ]]; }
}

# After starting the local node ourselves, also require the node itself to answer.
rabbitmq_node_up() {
    rabbitmq_port_up || return 1
    if diag_usable; then
        rabbitmq-diagnostics -q ping >/dev/null 2>&1 || return 1
    fi
}

APT_UPDATED=0
apt_install() {   # apt_install PACKAGE BINARY DESCRIPTION
    local pkg="$1" bin="$2" what="$3" out
    if ! is_root; then
        die "$what is not running and $bin is not installed (and we are not root, so cannot install it). Install it first, e.g. \`sudo apt-get install -y $pkg\` (Debian/Ubuntu), or run $what on $HOST yourself, or set INFERQ_SKIP_SERVICES=1."
    fi
    have apt-get || die "$bin not found and apt-get is unavailable; install $pkg by other means."
    export DEBIAN_FRONTEND=noninteractive
    out="$(mktemp)"
    if [[ "$APT_UPDATED" == 0 ]]; then
        log "apt-get update"
        apt-get update >"$out" 2>&1 || { tail -n 30 "$out" >&2; rm -f "$out"; die "apt-get update failed"; }
        APT_UPDATED=1
    fi
    log "apt-get install -y $pkg"
    apt-get install -y "$pkg" >"$out" 2>&1 || { tail -n 30 "$out" >&2; rm -f "$out"; die "apt-get install $pkg failed"; }
    rm -f "$out"
    have "$bin" || die "installed $pkg but $bin is still not on PATH"
}

# wait_for SECONDS CHECK_FN: poll every 0.5 s until CHECK_FN succeeds or SECONDS have passed.
wait_for() {
    local deadline=$((SECONDS + $1)) check="$2"
    while ((SECONDS < deadline)); do
        "$check" && return 0
        sleep 0.5
    done
    "$check"
}

show_log() {   # show_log FILE... : tail of each existing, non-empty file
    local f
    for f in "$@"; do
        [[ -s "$f" ]] || continue
        echo "----- tail of $f -----" >&2
        tail -n 40 "$f" >&2
    done
}

ensure_redis() {
    if redis_up; then
        REDIS_STATE="redis up"
        return
    fi
    have redis-server || apt_install redis-server redis-server "Redis (port $REDIS_PORT)"
    # A package's postinst may have started it already (where services can be started).
    if redis_up; then
        REDIS_STATE="redis up (installed)"
        return
    fi
    local dir log
    if is_root; then
        dir="${REDIS_DIR:-/var/lib/redis}"
        log="${REDIS_LOG:-/var/log/redis/ci.log}"
    else
        dir="${REDIS_DIR:-$PWD/.cache/redis/data}"
        log="${REDIS_LOG:-$PWD/.cache/redis/ci.log}"
    fi
    mkdir -p "$dir" "$(dirname "$log")"
    log "starting redis-server on $HOST:$REDIS_PORT (log: $log)"
    local out
    if ! out="$(redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
            --save "" --appendonly no --dir "$dir" --logfile "$log" 2>&1)"; then
        [[ -n "$out" ]] && echo "$out" >&2
        show_log "$log"
        die "redis-server failed to start"
    fi
    if ! wait_for "$REDIS_WAIT_SECS" redis_up; then
        [[ -n "$out" ]] && echo "$out" >&2
        show_log "$log"
        die "redis-server did not answer PING on $HOST:$REDIS_PORT within ${REDIS_WAIT_SECS}s"
    fi
    REDIS_STATE="redis up (started)"
}

ensure_rabbitmq() {
    if rabbitmq_port_up; then
        RABBITMQ_STATE="rabbitmq up"
        return
    fi
    have rabbitmq-server || apt_install rabbitmq-server rabbitmq-server "RabbitMQ (port $RABBITMQ_PORT)"
    if rabbitmq_port_up; then
        RABBITMQ_STATE="rabbitmq up (installed)"
        return
    fi
    local logdir="${RABBITMQ_LOG_BASE:-/var/log/rabbitmq}" startlog
    if is_root; then
        startlog="$logdir/ci-start.log"
        mkdir -p "$logdir"
    else
        startlog="$PWD/.cache/rabbitmq-start.log"
        mkdir -p "$PWD/.cache"
    fi
    # The Debian/RPM package wrapper refuses (or misbehaves for) anyone but root and rabbitmq.
    local server
    server="$(command -v rabbitmq-server)"
    if ! is_root && [[ "$(id -un)" != rabbitmq ]] && grep -q "Only root or rabbitmq" "$server" 2>/dev/null; then
        die "RabbitMQ is not running on $HOST:$RABBITMQ_PORT and $server must be run as root or the rabbitmq user. Start it with \`sudo rabbitmq-server -detached\` (or your service manager), or set INFERQ_SKIP_SERVICES=1."
    fi
    # The node is named rabbit@<short hostname>; in a fresh container that name
    # often does not resolve and the node cannot start. localhost always does.
    if [[ -z "${RABBITMQ_NODENAME:-}" ]] && ! getent hosts "$(hostname -s 2>/dev/null || echo none)" >/dev/null 2>&1; then
        export RABBITMQ_NODENAME=rabbit@localhost
    fi
    # Skip the start if the node is merely still booting (e.g. started by apt or a previous run).
    if diag_usable && rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
        log "rabbitmq node is running but $HOST:$RABBITMQ_PORT is not open yet; waiting"
    else
        log "starting rabbitmq-server -detached (waiting up to ${RABBITMQ_WAIT_SECS}s)"
        # The Debian wrapper drops to the rabbitmq user when run as root.
        if ! rabbitmq-server -detached >"$startlog" 2>&1; then
            show_log "$startlog"
            is_root || die "rabbitmq-server -detached failed (not root: start RabbitMQ as root or the rabbitmq user, or set INFERQ_SKIP_SERVICES=1)"
            die "rabbitmq-server -detached failed"
        fi
    fi
    if ! wait_for "$RABBITMQ_WAIT_SECS" rabbitmq_node_up; then
        local f nodelog=""
        for f in "$logdir"/rabbit@*.log; do   # newest node log (not *_upgrade.log)
            [[ -f "$f" && "$f" != *_upgrade.log ]] || continue
            [[ -z "$nodelog" || "$f" -nt "$nodelog" ]] && nodelog="$f"
        done
        show_log "$startlog" "$logdir/startup_log" "$logdir/startup_err" ${nodelog:+"$nodelog"}
        die "rabbitmq did not come up on $HOST:$RABBITMQ_PORT within ${RABBITMQ_WAIT_SECS}s"
    fi
    RABBITMQ_STATE="rabbitmq up (started)"
}

REDIS_STATE="" RABBITMQ_STATE=""
ensure_redis
ensure_rabbitmq
echo "services: $REDIS_STATE, $RABBITMQ_STATE"
