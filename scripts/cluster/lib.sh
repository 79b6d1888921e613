# shellcheck shell=bash
# Shared settings and helpers of the simulated cluster (scripts/cluster/*.sh). Sourced, not run.
# See docs/cluster-harness.md for the topology and what each piece is for.
#
# Settings (environment, read by up.sh; the other scripts use those of the running cluster,
# kept in .cache/cluster/settings; CLUSTER_PREFIX and CLUSTER_STATE_DIR must be given to all):
#   CLUSTER_MODE=auto|netns|loopback   auto: network namespaces when `ip netns` works, else loopback
#   CLUSTER_PREFIX=iqc                 prefix of namespace, bridge and veth names
#   CLUSTER_NET=10.77.0                first three octets of the /24 of the test hosts
#   CLUSTER_WORKERS=3                  empty "worker hosts" w1..wN for test binaries (netns mode)
#   CLUSTER_STATE_DIR=<repo>/.cache/cluster   data, logs, cookie, env file
#   CLUSTER_MANAGEMENT=0|1             enable rabbitmq_management (HTTP on :15672 of each node)
#   CLUSTER_NET_TICKTIME=10            Erlang distribution tick time (s) of the RabbitMQ nodes
#   CLUSTER_REDIS_DOWN_AFTER_MS=1000   Sentinel down-after-milliseconds
#   CLUSTER_REDIS_FAILOVER_TIMEOUT_MS=3000  Sentinel failover-timeout

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_DIR/../.." && pwd)"

CLUSTER_MODE="${CLUSTER_MODE:-auto}"
CLUSTER_PREFIX="${CLUSTER_PREFIX:-iqc}"
CLUSTER_NET="${CLUSTER_NET:-10.77.0}"
CLUSTER_WORKERS="${CLUSTER_WORKERS:-3}"
CLUSTER_STATE_DIR="${CLUSTER_STATE_DIR:-$REPO_ROOT/.cache/cluster}"
CLUSTER_MANAGEMENT="${CLUSTER_MANAGEMENT:-0}"
CLUSTER_NET_TICKTIME="${CLUSTER_NET_TICKTIME:-10}"
CLUSTER_REDIS_DOWN_AFTER_MS="${CLUSTER_REDIS_DOWN_AFTER_MS:-1000}"
CLUSTER_REDIS_FAILOVER_TIMEOUT_MS="${CLUSTER_REDIS_FAILOVER_TIMEOUT_MS:-3000}"

STATE="$CLUSTER_STATE_DIR"
# A running cluster keeps the settings it was started with (written by up.sh), so that the
# helpers (node.sh start, write_env, ...) use them whatever their own environment says.
SETTINGS_FILE="$STATE/settings"
if [[ -f "$SETTINGS_FILE" ]]; then
    # shellcheck source=/dev/null
    source "$SETTINGS_FILE"
fi
ENV_FILE="$STATE/env"
MODE_FILE="$STATE/mode"
BRIDGE="${CLUSTER_PREFIX}-br0"
GATEWAY_IP="$CLUSTER_NET.1"
RABBIT_BIN=/usr/lib/rabbitmq/bin      # the real scripts; /usr/sbin/rabbitmq* would su to the rabbitmq user
REDIS_MASTER_NAME=inferq
RABBIT_HOSTS="h1 h2 h3"               # one RabbitMQ node each
SENTINEL_HOSTS="h1 h2 h3"             # one Sentinel each
REDIS_INSTANCES="redis-a redis-b"     # redis-a starts as the primary (on h4), redis-b as its replica (h5)
# Loopback mode: a private epmd port, so nothing registers with the machine's own epmd (4369).
LOOPBACK_EPMD_PORT=4371

export PATH="$PATH:/usr/sbin:/sbin"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

case "$STATE" in *[[:space:]]*) die "CLUSTER_STATE_DIR must not contain white space: '$STATE'";; esac

worker_hosts() { local i; for ((i = 1; i <= CLUSTER_WORKERS; i++)); do printf 'w%d ' "$i"; done; }
all_hosts() { echo "h1 h2 h3 h4 h5 $(worker_hosts)"; }

# The mode of the running cluster (written by up.sh), else the requested one.
current_mode() {
    if [[ -f "$MODE_FILE" ]]; then cat "$MODE_FILE"; else echo "$CLUSTER_MODE"; fi
}

ns_name() { echo "${CLUSTER_PREFIX}-$1"; }

host_ip() {   # host_ip HOST
    if [[ "$(current_mode)" == loopback ]]; then echo 127.0.0.1; return; fi
    case "$1" in
        h[1-9]) echo "$CLUSTER_NET.$((10 + ${1#h}))" ;;
        w[0-9]*) echo "$CLUSTER_NET.$((20 + ${1#w}))" ;;
        gw) echo "$GATEWAY_IP" ;;
        *) die "unknown host '$1'" ;;
    esac
}

# on HOST CMD...: run CMD "on" a test host (inside its namespace; directly in loopback mode).
on() {
    local h="$1"; shift
    if [[ "$(current_mode)" == loopback ]]; then "$@"; else ip netns exec "$(ns_name "$h")" "$@"; fi
}

# ---------------------------------------------------------------------------------------------
# RabbitMQ

rabbit_index() { echo "${1#h}"; }                      # h2 -> 2
rabbit_node() {                                        # h2 -> rabbit@h2 (loopback: rabbit-h2@localhost)
    if [[ "$(current_mode)" == loopback ]]; then echo "rabbit-$1@localhost"; else echo "rabbit@$1"; fi
}
rabbit_port() {
    if [[ "$(current_mode)" == loopback ]]; then echo $((5680 + $(rabbit_index "$1"))); else echo 5672; fi
}
rabbit_mgmt_port() {
    if [[ "$(current_mode)" == loopback ]]; then echo $((15680 + $(rabbit_index "$1"))); else echo 15672; fi
}
rabbit_url() { echo "amqp://guest:guest@$(host_ip "$1"):$(rabbit_port "$1")/%2f"; }
rabbit_dir() { echo "$STATE/rabbit/$1"; }
host_of_rabbit_node() {                                # rabbit@h2 / rabbit-h2@localhost -> h2
    local n="$1"
    n="${n#rabbit@}"; n="${n#rabbit-}"; n="${n%@localhost}"
    echo "$n"
}

# The environment a RabbitMQ server or CLI of host H runs with: own node name, config, data,
# logs, plugins file and (through HOME) its own Erlang cookie. /etc/rabbitmq is never read.
rabbit_env() {
    local h="$1" d; d="$(rabbit_dir "$h")"
    local erl_args="+S 1:1 +A 4 -kernel net_ticktime $CLUSTER_NET_TICKTIME"
    echo "HOME=$STATE/home"
    echo "RABBITMQ_NODENAME=$(rabbit_node "$h")"
    echo "RABBITMQ_CONF_ENV_FILE=$d/rabbitmq-env.conf"
    echo "RABBITMQ_CONFIG_FILE=$d/rabbitmq.conf"
    echo "RABBITMQ_ADVANCED_CONFIG_FILE=$d/advanced.config"
    echo "RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins"
    echo "RABBITMQ_MNESIA_BASE=$d/data"
    echo "RABBITMQ_MNESIA_DIR=$d/data/mnesia"
    echo "RABBITMQ_PLUGINS_EXPAND_DIR=$d/data/plugins-expand"
    echo "RABBITMQ_LOG_BASE=$d/log"
    echo "RABBITMQ_PID_FILE=$d/beam.pid"
    echo "ERL_CRASH_DUMP=$d/log/erl_crash.dump"
    echo "RABBITMQ_NODE_PORT=$(rabbit_port "$h")"
    echo "RABBITMQ_DIST_PORT=$((20000 + $(rabbit_port "$h")))"
    echo "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=$erl_args"
    if [[ "$(current_mode)" == loopback ]]; then
        echo "ERL_EPMD_PORT=$LOOPBACK_EPMD_PORT"
        echo "ERL_EPMD_ADDRESS=127.0.0.1"
        echo "RABBITMQ_USE_LONGNAME=false"
    fi
}

# rabbit_run HOST CMD ARGS...: run a RabbitMQ CLI (rabbitmqctl, rabbitmq-queues, ...) "on" HOST,
# killed after RABBIT_CLI_TIMEOUT seconds (default 180).
rabbit_run() {
    local h="$1" cmd="$2"; shift 2
    local -a envs; mapfile -t envs < <(rabbit_env "$h")
    on "$h" timeout "${RABBIT_CLI_TIMEOUT:-180}" env "${envs[@]}" "$RABBIT_BIN/$cmd" "$@"
}
rctl() { local h="$1"; shift; rabbit_run "$h" rabbitmqctl -n "$(rabbit_node "$h")" "$@"; }

# The OS pid of the beam.smp of HOST's node ("" when not running).
rabbit_pid() {
    local h="$1" pf p; pf="$(rabbit_dir "$h")/beam.pid"
    [[ -s "$pf" ]] || return 0
    p="$(tr -dc 0-9 < "$pf")"
    # Ours: the node's environment names its data directory (env vars, not argv, carry it).
    if [[ -n "$p" && -r /proc/$p/environ ]] && tr '\0' '\n' < "/proc/$p/environ" | grep -qx "RABBITMQ_MNESIA_DIR=$(rabbit_dir "$h")/data/mnesia"; then
        echo "$p"
    fi
}

# Start HOST's node in the background (own session, output to its log dir). Returns at once.
rabbit_start() {
    local h="$1" d; d="$(rabbit_dir "$h")"
    mkdir -p "$d/log" "$d/data"
    local -a envs; mapfile -t envs < <(rabbit_env "$h")
    # -detached is avoided: with it the pid file and stdout are lost; the server script runs
    # erl as a child and writes RABBITMQ_PID_FILE itself (beam's pid).
    rm -f "$d/beam.pid"
    # Started in its own directory (env -C), so that Mnesia core dumps land there, not in the
    # caller's working directory (the repository). Every fd of the background job is
    # redirected: a caller that reads up.sh's output through a pipe must see EOF.
    on "$h" setsid env -C "$d" "${envs[@]}" "$RABBIT_BIN/rabbitmq-server" \
        >>"$d/log/console.log" 2>&1 </dev/null &
    disown || true
}

# Wait until HOST's node runs the rabbit app (up to $2 s). The pid file appears first.
rabbit_await() {
    local h="$1" secs="${2:-90}"
    local deadline=$((SECONDS + secs))
    until [[ -n "$(rabbit_pid "$h")" ]]; do
        ((SECONDS < deadline)) || { tail -n 30 "$(rabbit_dir "$h")/log/console.log" >&2; die "rabbit@$h: no pid after ${secs}s"; }
        sleep 0.2
    done
    rctl "$h" await_startup --timeout "$((deadline - SECONDS > 5 ? deadline - SECONDS : 5))" >/dev/null \
        || { tail -n 30 "$(rabbit_dir "$h")/log/console.log" >&2; die "$(rabbit_node "$h") did not start"; }
}

# ---------------------------------------------------------------------------------------------
# Redis

redis_host() { case "$1" in redis-a) echo h4 ;; redis-b) echo h5 ;; *) die "unknown Redis instance '$1'" ;; esac; }
redis_port() {
    if [[ "$(current_mode)" == loopback ]]; then
        case "$1" in redis-a) echo 6391 ;; redis-b) echo 6392 ;; esac
    else echo 6379; fi
}
sentinel_name() { echo "sentinel-${1#h}"; }        # h2 -> sentinel-2
sentinel_port() {
    if [[ "$(current_mode)" == loopback ]]; then echo $((26390 + ${1#h})); else echo 26379; fi
}
redis_dir() { echo "$STATE/redis/$1"; }            # redis-a, redis-b, sentinel-1..3

# redis_pid NAME: pid of a Redis server or Sentinel of ours ("" when not running). The pid
# file is checked against the process: its command line names our address and port.
redis_pid() {
    local name="$1" pf p h port; pf="$(redis_dir "$name")/redis.pid"
    [[ -s "$pf" ]] || return 0
    p="$(tr -dc 0-9 < "$pf")"
    h="$(redis_name_host "$name")"
    case "$name" in sentinel-*) port="$(sentinel_port "$h")" ;; *) port="$(redis_port "$name")" ;; esac
    [[ -n "$p" && -r /proc/$p/cmdline ]] || return 0
    tr '\0' ' ' < "/proc/$p/cmdline" | grep -q "^redis-server $(host_ip "$h"):$port" || return 0
    if [[ "$(current_mode)" == netns && "$(ip netns identify "$p" 2>/dev/null)" != "$(ns_name "$h")" ]]; then
        return 0
    fi
    echo "$p"
}
redis_name_host() { case "$1" in sentinel-*) echo "h${1#sentinel-}" ;; *) redis_host "$1" ;; esac; }

redis_cli() {   # redis_cli HOST PORT ARGS...: redis-cli run on HOST (2 s timeout)
    local h="$1" p="$2"; shift 2
    on "$h" timeout 3 redis-cli -h "$(host_ip "$h")" -p "$p" "$@"
}

# Start a Redis server: redis_start redis-a [REPLICAOF_IP REPLICAOF_PORT]
redis_start() {
    local name="$1" h d ip port; h="$(redis_host "$1")"; d="$(redis_dir "$1")"
    ip="$(host_ip "$h")"; port="$(redis_port "$1")"
    mkdir -p "$d"
    rm -f "$d/redis.pid"
    {
        echo "# $name on $h, written by scripts/cluster (rewritten by Sentinel at run time)"
        echo "bind $ip"
        echo "port $port"
        echo "protected-mode no"
        echo "daemonize yes"
        echo "pidfile $d/redis.pid"
        echo "logfile $d/redis.log"
        echo "dir $d"
        echo "save \"\""
        echo "appendonly no"
        # Full syncs (a new or restarted replica) start at once, not after the default 5 s.
        echo "repl-diskless-sync-delay 0"
        echo "replica-announce-ip $ip"
        echo "replica-announce-port $port"
        if [[ $# -ge 3 ]]; then echo "replicaof $2 $3"; fi
    } > "$d/redis.conf"
    on "$h" redis-server "$d/redis.conf" </dev/null >/dev/null 2>&1
}

sentinel_start() {   # sentinel_start h1 PRIMARY_IP PRIMARY_PORT
    local h="$1" name d ip port; name="$(sentinel_name "$h")"; d="$(redis_dir "$name")"
    ip="$(host_ip "$h")"; port="$(sentinel_port "$h")"
    mkdir -p "$d"
    rm -f "$d/redis.pid"
    {
        echo "# $name on $h, written by scripts/cluster (rewritten by Sentinel at run time)"
        echo "bind $ip"
        echo "port $port"
        echo "protected-mode no"
        echo "daemonize yes"
        echo "pidfile $d/redis.pid"
        echo "logfile $d/sentinel.log"
        echo "dir $d"
        echo "sentinel announce-ip $ip"
        echo "sentinel announce-port $port"
        echo "sentinel monitor $REDIS_MASTER_NAME $2 $3 2"
        echo "sentinel down-after-milliseconds $REDIS_MASTER_NAME $CLUSTER_REDIS_DOWN_AFTER_MS"
        echo "sentinel failover-timeout $REDIS_MASTER_NAME $CLUSTER_REDIS_FAILOVER_TIMEOUT_MS"
        echo "sentinel parallel-syncs $REDIS_MASTER_NAME 1"
    } > "$d/sentinel.conf"
    on "$h" redis-server "$d/sentinel.conf" --sentinel </dev/null >/dev/null 2>&1
}

# The primary as Sentinel on HOST sees it: "IP PORT" (empty when it does not answer).
sentinel_primary() {
    redis_cli "$1" "$(sentinel_port "$1")" SENTINEL get-master-addr-by-name "$REDIS_MASTER_NAME" 2>/dev/null | paste -sd ' '
}

# The Redis instance name (redis-a / redis-b) at "IP PORT".
redis_name_at() {
    local n
    for n in $REDIS_INSTANCES; do
        if [[ "$1" == "$(host_ip "$(redis_host "$n")") $(redis_port "$n")" ]]; then echo "$n"; return; fi
    done
    echo "?"
}

# ---------------------------------------------------------------------------------------------
# The environment file for test drivers: KEY=VALUE lines, no quotes, lists comma-separated,
# so that both `source` / `set -a` and a trivial line parser read it.

save_settings() {
    {
        echo "# settings of the running cluster (scripts/cluster/up.sh)"
        echo "CLUSTER_NET=$CLUSTER_NET"
        echo "CLUSTER_WORKERS=$CLUSTER_WORKERS"
        echo "CLUSTER_MANAGEMENT=$CLUSTER_MANAGEMENT"
        echo "CLUSTER_NET_TICKTIME=$CLUSTER_NET_TICKTIME"
        echo "CLUSTER_REDIS_DOWN_AFTER_MS=$CLUSTER_REDIS_DOWN_AFTER_MS"
        echo "CLUSTER_REDIS_FAILOVER_TIMEOUT_MS=$CLUSTER_REDIS_FAILOVER_TIMEOUT_MS"
    } > "$SETTINGS_FILE"
}

write_env() {
    local mode h n list tmp
    mode="$(current_mode)"
    tmp="$ENV_FILE.tmp.$$"
    {
        echo "# InferQ simulated cluster, written by scripts/cluster ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
        echo "# KEY=VALUE, no quotes, lists comma-separated. See docs/cluster-harness.md."
        echo "INFERQ_CLUSTER_MODE=$mode"
        echo "INFERQ_CLUSTER_STATE_DIR=$STATE"
        if [[ "$mode" == netns ]]; then
            list=""; for h in $(all_hosts); do list+="${list:+,}$(ns_name "$h")"; done
            echo "INFERQ_CLUSTER_NETNS=$list"
            echo "INFERQ_CLUSTER_GATEWAY_IP=$GATEWAY_IP"
            echo "INFERQ_CLUSTER_BRIDGE=$BRIDGE"
            list=""; for h in $(worker_hosts); do list+="${list:+,}$(ns_name "$h")"; done
            echo "INFERQ_CLUSTER_WORKER_NETNS=$list"
            for h in $(all_hosts); do
                echo "INFERQ_CLUSTER_${h^^}_NETNS=$(ns_name "$h")"
                echo "INFERQ_CLUSTER_${h^^}_IP=$(host_ip "$h")"
            done
        else
            echo "INFERQ_CLUSTER_NETNS="
            echo "INFERQ_CLUSTER_WORKER_NETNS="
        fi
        list=""; for h in $RABBIT_HOSTS; do list+="${list:+,}$(rabbit_url "$h")"; done
        echo "INFERQ_CLUSTER_AMQP_URLS=$list"
        list=""; for h in $RABBIT_HOSTS; do list+="${list:+,}$(rabbit_node "$h")"; done
        echo "INFERQ_CLUSTER_RABBIT_NODES=$list"
        for h in $RABBIT_HOSTS; do
            echo "INFERQ_CLUSTER_RABBIT_${h^^}_NODE=$(rabbit_node "$h")"
            echo "INFERQ_CLUSTER_RABBIT_${h^^}_URL=$(rabbit_url "$h")"
            echo "INFERQ_CLUSTER_RABBIT_${h^^}_PID=$(rabbit_pid "$h")"
            if [[ "$CLUSTER_MANAGEMENT" == 1 ]]; then
                echo "INFERQ_CLUSTER_RABBIT_${h^^}_MGMT=http://$(host_ip "$h"):$(rabbit_mgmt_port "$h")"
            fi
        done
        echo "INFERQ_CLUSTER_REDIS_MASTER_NAME=$REDIS_MASTER_NAME"
        list=""; for h in $SENTINEL_HOSTS; do list+="${list:+,}$(host_ip "$h"):$(sentinel_port "$h")"; done
        echo "INFERQ_CLUSTER_REDIS_SENTINELS=$list"
        # The form redis::sentinel::SentinelClient::build takes (one URL per Sentinel).
        list=""; for h in $SENTINEL_HOSTS; do list+="${list:+,}redis://$(host_ip "$h"):$(sentinel_port "$h")/"; done
        echo "INFERQ_CLUSTER_REDIS_SENTINEL_URLS=$list"
        for n in $REDIS_INSTANCES; do
            local key="${n^^}"; key="${key//-/_}"
            echo "INFERQ_CLUSTER_${key}_HOST=$(redis_host "$n")"
            echo "INFERQ_CLUSTER_${key}_URL=redis://$(host_ip "$(redis_host "$n")"):$(redis_port "$n")/"
            echo "INFERQ_CLUSTER_${key}_PID=$(redis_pid "$n")"
        done
        for h in $SENTINEL_HOSTS; do
            n="$(sentinel_name "$h")"
            echo "INFERQ_CLUSTER_SENTINEL_${h#h}_PID=$(redis_pid "$n")"
        done
        [[ -f "$STATE/up_seconds" ]] && echo "INFERQ_CLUSTER_UP_SECONDS=$(cat "$STATE/up_seconds")"
    } > "$tmp"
    mv -f "$tmp" "$ENV_FILE"
}
