#!/usr/bin/env bash
# Fault injection and restarts for the simulated cluster. The env file is rewritten after each
# command (pids change on restart).
#
#   scripts/cluster/node.sh kill    NODE   SIGKILL (a RabbitMQ node: its beam.smp; epmd stays)
#   scripts/cluster/node.sh stop    NODE   graceful stop (rabbitmqctl stop / SHUTDOWN NOSAVE)
#   scripts/cluster/node.sh start   NODE   start again with the same data; waits until it runs
#   scripts/cluster/node.sh pid     NODE   print the OS pid ("" when down)
#   scripts/cluster/node.sh isolate HOST   cut HOST off the bridge (its veth down; netns mode)
#   scripts/cluster/node.sh heal    HOST   reconnect HOST
#
# NODE: rabbit@h1..rabbit@h3 (or h1..h3), redis-a, redis-b, sentinel-1..sentinel-3.
# A RabbitMQ node that starts again rejoins the cluster by itself (same data directory).
# A Redis instance that starts again asks the Sentinels for the current primary and starts as
# its replica unless it is that primary: an empty ex-primary (no persistence here) must never
# come back as a primary, or the replica would resync from it and lose everything.
set -euo pipefail
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -f "$MODE_FILE" ]] || die "the cluster is not up (scripts/cluster/up.sh)"

cmd="${1:-}" target="${2:-}"
[[ -n "$cmd" && -n "$target" ]] || { sed -n '2,17p' "$0"; exit 2; }

kind="" h=""
case "$target" in
    rabbit@h[1-3]|rabbit-h[1-3]@localhost) kind=rabbit; h="$(host_of_rabbit_node "$target")" ;;
    h[1-3]) if [[ "$cmd" == isolate || "$cmd" == heal ]]; then kind=host; else kind=rabbit; fi; h="$target" ;;
    redis-a|redis-b) kind=redis; h="$(redis_host "$target")" ;;
    sentinel-[1-3]) kind=sentinel; h="h${target#sentinel-}" ;;
    h[4-9]|w[0-9]*) kind=host; h="$target" ;;
    *) die "unknown node '$target'" ;;
esac

pid_of() {
    case "$kind" in
        rabbit) rabbit_pid "$h" ;;
        redis|sentinel) redis_pid "$target" ;;
    esac
}
wait_gone() { local p="$1"; for _ in $(seq 100); do [[ -e /proc/$p ]] || return 0; sleep 0.05; done; return 1; }

case "$cmd" in
    pid) pid_of; exit 0 ;;
    kill)
        p="$(pid_of)"; [[ -n "$p" ]] || die "$target is not running"
        kill -KILL "$p"; wait_gone "$p"
        log "$target (pid $p) killed" ;;
    stop)
        p="$(pid_of)"; [[ -n "$p" ]] || die "$target is not running"
        case "$kind" in
            rabbit) rctl "$h" stop >/dev/null ;;
            redis) redis_cli "$h" "$(redis_port "$target")" SHUTDOWN NOSAVE >/dev/null 2>&1 || true ;;
            sentinel) redis_cli "$h" "$(sentinel_port "$h")" SHUTDOWN >/dev/null 2>&1 || true ;;
        esac
        wait_gone "$p" || { log "$target did not stop: SIGKILL"; kill -KILL "$p"; }
        log "$target (pid $p) stopped" ;;
    start)
        [[ -z "$(pid_of)" ]] || die "$target already runs (pid $(pid_of))"
        t0=$(now_ms)
        case "$kind" in
            rabbit) rabbit_start "$h"; rabbit_await "$h" 120 ;;
            redis)
                primary="$(bash "$CLUSTER_DIR/redis-primary.sh" --short 2>/dev/null || true)"
                me="$(host_ip "$h"):$(redis_port "$target")"
                if [[ -n "$primary" && "$primary" != "$me" ]]; then
                    redis_start "$target" "${primary%:*}" "${primary##*:}"
                else
                    log "WARNING: the Sentinels still name $target the primary: it starts empty as the primary"
                    redis_start "$target"
                fi ;;
            sentinel)
                # Sentinel rewrote its config with everything it learned: start from that file.
                d="$(redis_dir "$target")"
                on "$h" redis-server "$d/sentinel.conf" --sentinel </dev/null >/dev/null 2>&1 ;;
        esac
        for _ in $(seq 100); do [[ -n "$(pid_of)" ]] && break; sleep 0.1; done
        [[ -n "$(pid_of)" ]] || die "$target did not start"
        log "$target started (pid $(pid_of)) in $(( $(now_ms) - t0 ))ms" ;;
    isolate|heal)
        [[ "$(current_mode)" == netns ]] || die "$cmd needs netns mode"
        if [[ "$cmd" == isolate ]]; then ip link set "$(ns_name "$h")" down; else ip link set "$(ns_name "$h")" up; fi
        log "host $h $( [[ "$cmd" == isolate ]] && echo 'cut off the bridge' || echo 'reconnected')" ;;
    *) die "unknown command '$cmd'" ;;
esac
write_env
