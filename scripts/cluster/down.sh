#!/usr/bin/env bash
# Tear the simulated cluster down: every process of it, its namespaces, bridge, veths,
# /etc/netns entries and .cache/cluster (data, logs, cookie, env file).
#
#   scripts/cluster/down.sh                 (as root)
#   CLUSTER_KEEP_LOGS=1 scripts/cluster/down.sh   keep the logs in .cache/cluster-logs/<time>/
#
# Works after a crash and when nothing runs (idempotent). Only our processes are signalled:
# those inside our namespaces (`ip netns pids`), and, in loopback mode, the pids our pid files
# name after checking that each is the process we started. The machine's own RabbitMQ and
# Redis are never touched.
set -uo pipefail
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ "$(id -u)" == 0 ]] || die "run as root"

our_pids() {
    local h n ns
    # Everything inside our namespaces is ours (servers, epmd, CLIs, test binaries).
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${CLUSTER_PREFIX}-"); do
        ip netns pids "$ns" 2>/dev/null
    done
    # Loopback mode (and belt and braces): the pids behind our pid files, verified.
    for h in $RABBIT_HOSTS; do rabbit_pid "$h"; done
    for n in $REDIS_INSTANCES; do redis_pid "$n"; done
    for h in $SENTINEL_HOSTS; do redis_pid "$(sentinel_name "$h")"; done
}

t0=$(now_ms)
pids="$(our_pids | sort -un | tr '\n' ' ')"
if [[ -n "${pids// /}" ]]; then
    log "killing $(wc -w <<< "$pids") processes: $pids"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null
    for _ in $(seq 50); do
        alive=0
        for p in $pids; do [[ -e /proc/$p ]] && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
fi
# Loopback mode: the private epmd (its own port, never the machine's 4369).
if [[ "$(current_mode)" == loopback ]] && command -v epmd >/dev/null; then
    ERL_EPMD_PORT=$LOOPBACK_EPMD_PORT epmd -kill >/dev/null 2>&1 || true
fi

for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${CLUSTER_PREFIX}-"); do
    ip netns del "$ns" 2>/dev/null || log "could not delete namespace $ns"
    rm -rf "/etc/netns/$ns"
done
rmdir /etc/netns 2>/dev/null || true
# Root-side veths die with their namespace; remove strays and the bridge.
for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^${CLUSTER_PREFIX}-"); do
    ip link del "$link" 2>/dev/null || true
done

if [[ -d "$STATE" ]]; then
    if [[ "${CLUSTER_KEEP_LOGS:-0}" == 1 ]]; then
        keep="$(dirname "$STATE")/cluster-logs/$(date +%Y%m%d-%H%M%S)"
        mkdir -p "$keep"
        (cd "$STATE" && find . \( -name '*.log' -o -name '*.conf' -o -name env \) -print0 \
            | xargs -0 -r cp --parents -t "$keep")
        log "logs kept in $keep"
    fi
    rm -rf "$STATE"
fi

left="$(ip netns list 2>/dev/null | grep -c "^${CLUSTER_PREFIX}-" || true)"
[[ "$left" == 0 ]] || die "$left namespaces are left"
log "down in $(( $(now_ms) - t0 ))ms: no processes, namespaces or state left"
