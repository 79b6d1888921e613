#!/usr/bin/env bash
# Start the simulated cluster: test hosts as network namespaces on a bridge, a 3-node RabbitMQ
# cluster, a Redis primary + replica and 3 Sentinels. Writes .cache/cluster/env for test drivers.
#
#   scripts/cluster/up.sh            (as root; see lib.sh for the settings, docs/cluster-harness.md)
#
# Idempotent: when the cluster already runs and answers, it only rewrites the env file. A
# half-started or crashed cluster is torn down (down.sh) and started afresh. Nothing of the
# machine's own RabbitMQ (127.0.0.1:5672, /etc/rabbitmq, its cookie, epmd on 127.0.0.1:4369)
# or Redis (127.0.0.1:6379) is read, stopped or changed.
set -euo pipefail
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ "$(id -u)" == 0 ]] || die "run as root (network namespaces, apt-get)"

# ---------------------------------------------------------------------------------------------
# Packages: installed only when absent.
need=()
[[ -x "$RABBIT_BIN/rabbitmq-server" ]] || need+=(rabbitmq-server)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v ip >/dev/null || need+=(iproute2)
command -v setsid >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
    log "installing ${need[*]} (apt-get)"
    # Debian's rabbitmq-server/redis-server postinst may start the system services: that is the
    # machine's business (the machine's own services are expected there anyway), not ours.
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ---------------------------------------------------------------------------------------------
# Already up?
healthy() {
    [[ -f "$ENV_FILE" && -f "$MODE_FILE" ]] || return 1
    local h n
    for h in $RABBIT_HOSTS; do [[ -n "$(rabbit_pid "$h")" ]] || return 1; done
    for n in $REDIS_INSTANCES; do [[ -n "$(redis_pid "$n")" ]] || return 1; done
    for h in $SENTINEL_HOSTS; do [[ -n "$(redis_pid "$(sentinel_name "$h")")" ]] || return 1; done
    [[ -n "$(sentinel_primary h1)" ]] || return 1
    rctl h1 await_online_nodes 3 --timeout 5 >/dev/null 2>&1 || return 1
}
if healthy; then
    write_env
    log "already up ($(current_mode) mode); env: $ENV_FILE"
    exit 0
fi
# A test left a node killed or a host cut off? Heal that (seconds) instead of starting over.
heal() {
    [[ -f "$ENV_FILE" && -f "$MODE_FILE" ]] || return 1
    local h n
    if [[ "$(current_mode)" == netns ]]; then
        for h in $(all_hosts); do
            ip netns list | grep -q "^$(ns_name "$h")\b" || return 1
            ip link set "$(ns_name "$h")" up 2>/dev/null || return 1
        done
    fi
    for n in $RABBIT_HOSTS $REDIS_INSTANCES $(for h in $SENTINEL_HOSTS; do sentinel_name "$h"; done); do
        if [[ -z "$(bash "$CLUSTER_DIR/node.sh" pid "$n")" ]]; then
            log "$n is down: starting it"
            bash "$CLUSTER_DIR/node.sh" start "$n" || return 1
        fi
    done
    healthy
}
if [[ -z "${CLUSTER_UP_AFTER_DOWN:-}" ]] && heal; then
    write_env
    log "healed ($(current_mode) mode); env: $ENV_FILE"
    exit 0
fi
if [[ -d "$STATE" ]] || ip netns list 2>/dev/null | grep -q "^${CLUSTER_PREFIX}-"; then
    [[ -z "${CLUSTER_UP_AFTER_DOWN:-}" ]] || die "down.sh left something behind (see above)"
    log "leftovers of an earlier cluster found: tearing them down first"
    bash "$CLUSTER_DIR/down.sh"
    # Start over in a new process: the settings sourced above were the old cluster's.
    CLUSTER_UP_AFTER_DOWN=1 exec bash "$0" "$@"
fi

t0=$(now_ms)
mkdir -p "$STATE"

# ---------------------------------------------------------------------------------------------
# Mode
mode="$CLUSTER_MODE"
if [[ "$mode" == auto ]]; then
    probe="${CLUSTER_PREFIX}-probe$$"
    if ip netns add "$probe" 2>/dev/null && ip netns exec "$probe" ip link set lo up 2>/dev/null \
        && ip link add "${CLUSTER_PREFIX}-pv$$" type veth peer name pv0 netns "$probe" 2>/dev/null; then
        mode=netns
    else
        mode=loopback
        log "network namespaces / veth do not work here: falling back to loopback ports"
    fi
    ip link del "${CLUSTER_PREFIX}-pv$$" 2>/dev/null || true
    ip netns del "$probe" 2>/dev/null || true
fi
echo "$mode" > "$MODE_FILE"
save_settings
log "mode: $mode"

# ---------------------------------------------------------------------------------------------
# Hosts
if [[ "$mode" == netns ]]; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$GATEWAY_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    hosts_file="$STATE/hosts"
    {
        echo "127.0.0.1 localhost"
        echo "$GATEWAY_IP gw"
        for h in $(all_hosts); do echo "$(host_ip "$h") $h"; done
    } > "$hosts_file"
    for h in $(all_hosts); do
        ns="$(ns_name "$h")"
        ip netns add "$ns"
        ip netns exec "$ns" ip link set lo up
        # Root side named after the host (iqc-h1), namespace side eth0.
        ip link add "$ns" type veth peer name eth0 netns "$ns"
        ip link set "$ns" master "$BRIDGE" up
        ip netns exec "$ns" ip addr add "$(host_ip "$h")/24" dev eth0
        ip netns exec "$ns" ip link set eth0 up
        # `ip netns exec` bind-mounts /etc/netns/NS/hosts over /etc/hosts: names h1..w3 resolve
        # inside every namespace (the Erlang node names rabbit@h1.. need it). No default route:
        # a namespace reaches only the test hosts and the root namespace (GATEWAY_IP).
        mkdir -p "/etc/netns/$ns"
        cp "$hosts_file" "/etc/netns/$ns/hosts"
    done
    log "hosts: $(all_hosts)on $BRIDGE ($CLUSTER_NET.0/24, root namespace = $GATEWAY_IP)"
fi

# ---------------------------------------------------------------------------------------------
# RabbitMQ: own cookie (in our HOME), own config, data and logs per node.
mkdir -p "$STATE/home"
if [[ ! -s "$STATE/home/.erlang.cookie" ]]; then
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$STATE/home/.erlang.cookie"
    chmod 400 "$STATE/home/.erlang.cookie"
fi
for h in $RABBIT_HOSTS; do
    d="$(rabbit_dir "$h")"
    mkdir -p "$d/log" "$d/data"
    echo "# no settings: keeps /etc/rabbitmq/rabbitmq-env.conf (the machine's node) out" > "$d/rabbitmq-env.conf"
    {
        echo "# $(rabbit_node "$h"), written by scripts/cluster/up.sh"
        if [[ "$mode" == loopback ]]; then
            echo "listeners.tcp.1 = 127.0.0.1:$(rabbit_port "$h")"
        else
            echo "listeners.tcp.default = $(rabbit_port "$h")"
        fi
        echo "loopback_users = none"
        echo "cluster_name = inferq-sim"
        echo "cluster_partition_handling = pause_minority"
        echo "log.file.level = info"
        echo "log.console = false"
        if [[ "$CLUSTER_MANAGEMENT" == 1 ]]; then
            [[ "$mode" == loopback ]] && echo "management.tcp.ip = 127.0.0.1"
            echo "management.tcp.port = $(rabbit_mgmt_port "$h")"
        fi
    } > "$d/rabbitmq.conf"
    if [[ "$mode" == loopback ]]; then
        echo '[{kernel, [{inet_dist_use_interface, {127,0,0,1}}]}].' > "$d/advanced.config"
    else
        echo '[].' > "$d/advanced.config"
    fi
    if [[ "$CLUSTER_MANAGEMENT" == 1 ]]; then echo '[rabbitmq_management].' > "$d/enabled_plugins"
    else echo '[].' > "$d/enabled_plugins"; fi
done

# ---------------------------------------------------------------------------------------------
# Redis: redis-a primary (h4), redis-b replica (h5), Sentinels on h1..h3 (quorum 2). Started
# first: the Sentinels discover each other while the RabbitMQ nodes boot.
t_redis=$(now_ms)
ip_a="$(host_ip "$(redis_host redis-a)")"; port_a="$(redis_port redis-a)"
redis_start redis-a
redis_start redis-b "$ip_a" "$port_a"
deadline=$((SECONDS + 20))
until redis_cli "$(redis_host redis-b)" "$(redis_port redis-b)" INFO replication 2>/dev/null | grep -q 'master_link_status:up'; do
    ((SECONDS < deadline)) || die "redis-b did not connect to redis-a (logs: $STATE/redis/)"
    sleep 0.2
done
for h in $SENTINEL_HOSTS; do sentinel_start "$h" "$ip_a" "$port_a"; done

t_rabbit=$(now_ms)
for h in $RABBIT_HOSTS; do rabbit_start "$h"; done
pids=()
for h in $RABBIT_HOSTS; do rabbit_await "$h" 120 & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || die "a RabbitMQ node did not start (see above)"; done
t_booted=$(now_ms)
log "RabbitMQ: 3 nodes booted in $(( t_booted - t_rabbit ))ms: $(for h in $RABBIT_HOSTS; do printf '%s=%s ' "$(rabbit_node "$h")" "$(rabbit_pid "$h")"; done)"

# h2, then h3, join h1 (the CLI output goes to each node's log dir). One at a time: two
# joins at once once crashed Mnesia on a joining node (a schema transaction whose participant
# died: release_schema_commit_lock badarg, MnesiaCore dump).
seed="$(rabbit_node h1)"
for h in $RABBIT_HOSTS; do
    [[ "$h" == h1 ]] && continue
    out="$(rabbit_dir "$h")/log/join.log"
    { rctl "$h" stop_app && rctl "$h" join_cluster "$seed" && rctl "$h" start_app; } >"$out" 2>&1 \
        || { cat "$out" >&2; die "$(rabbit_node "$h"): join_cluster $seed failed"; }
done
rctl h1 await_online_nodes 3 --timeout 60 >/dev/null || die "the RabbitMQ cluster did not reach 3 running nodes"
t_joined=$(now_ms)
log "RabbitMQ: cluster of 3 formed in $(( t_joined - t_booted ))ms (join_cluster $seed)"

# Sentinels find each other and the replica through the primary's hello channel (every 2 s);
# a failover needs that, so wait for it.
deadline=$((SECONDS + 30))
for h in $SENTINEL_HOSTS; do
    until info="$(redis_cli "$h" "$(sentinel_port "$h")" SENTINEL master "$REDIS_MASTER_NAME" 2>/dev/null | paste -sd ' ')" \
        && [[ "$info" =~ num-slaves\ 1\  && "$info" =~ num-other-sentinels\ 2\  ]]; do
        ((SECONDS < deadline)) || die "$(sentinel_name "$h") does not see 1 replica and 2 other Sentinels: $info"
        sleep 0.2
    done
done
t_done=$(now_ms)
log "Redis: primary + replica + 3 Sentinels ready $(( t_done - t_redis ))ms after their start"

awk -v ms="$(( t_done - t0 ))" 'BEGIN { printf "%.1f\n", ms / 1000 }' > "$STATE/up_seconds"
write_env
log "cluster up in $(cat "$STATE/up_seconds")s; env: $ENV_FILE"
grep -E '^INFERQ_CLUSTER_(AMQP_URLS|REDIS_SENTINELS|MODE|NETNS)=' "$ENV_FILE" >&2
