#!/usr/bin/env bash
# Print which RabbitMQ node leads a quorum queue, with the OS pid of that node's beam.smp:
#
#   scripts/cluster/rabbit-leader.sh QUEUE [-p VHOST] [--wait SECS] [--not NODE]
#   -> leader=rabbit@h2 host=h2 pid=12345 netns=iqc-h2 url=amqp://guest:guest@10.77.0.12:5672/%2f term=3 members=rabbit@h1,rabbit@h2,rabbit@h3 online=rabbit@h2,rabbit@h3
#
# One line of KEY=VALUE words (no value has spaces): `eval "$(rabbit-leader.sh q)"` or split it.
# The Raft state comes from `rabbitmq-queues quorum_status`, asked of the first node that
# answers. --wait retries until a leader is reported (after a leader was killed);
# --not NODE waits for a leader other than NODE. Exit 1 when no leader is known in time.
set -euo pipefail
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

queue="" vhost="/" wait=0 not=""
while (($#)); do
    case "$1" in
        -p) vhost="$2"; shift 2 ;;
        --wait) wait="$2"; shift 2 ;;
        --not) not="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) queue="$1"; shift ;;
    esac
done
[[ -n "$queue" ]] || die "usage: $0 QUEUE [-p VHOST] [--wait SECS] [--not NODE]"
[[ -f "$MODE_FILE" ]] || die "the cluster is not up (scripts/cluster/up.sh)"

deadline=$((SECONDS + wait))
while :; do
    for h in $RABBIT_HOSTS; do
        [[ -n "$(rabbit_pid "$h")" ]] || continue
        # A node cut off the network may not answer: -t and RABBIT_CLI_TIMEOUT bound the wait.
        json="$(RABBIT_CLI_TIMEOUT=10 rabbit_run "$h" rabbitmq-queues -n "$(rabbit_node "$h")" \
            -p "$vhost" -t 5 quorum_status "$queue" --formatter json 2>/dev/null | tr -d '\n')" || continue
        # [{"Node Name":"rabbit@h1","Raft State":"leader",...,"Term":1,...}, ...]
        leader="$(grep -o '"Node Name":"[^"]*","Raft State":"leader"' <<< "$json" | head -n 1 | cut -d'"' -f4)" || true
        members="$(grep -o '"Node Name":"[^"]*"' <<< "$json" | cut -d'"' -f4 | paste -sd, -)" || true
        online="$(grep -o '"Node Name":"[^"]*","Raft State":"\(leader\|follower\|candidate\|pre_vote\|await_condition\|receive_snapshot\)"' <<< "$json" \
            | cut -d'"' -f4 | paste -sd, -)" || true
        if [[ -n "$leader" && "$leader" != "$not" ]]; then
            lh="$(host_of_rabbit_node "$leader")"
            term="$(grep -o '"Node Name":"'"$leader"'"[^}]*' <<< "$json" | grep -o '"Term":[0-9]*' | cut -d: -f2)" || true
            ns=""; [[ "$(current_mode)" == netns ]] && ns="$(ns_name "$lh")"
            echo "leader=$leader host=$lh pid=$(rabbit_pid "$lh") netns=$ns url=$(rabbit_url "$lh") term=$term members=$members online=$online"
            exit 0
        fi
        # No leader, or only the excluded one, in this node's view: ask the next node.
    done
    ((SECONDS < deadline)) || { echo "no leader known for queue '$queue' (vhost $vhost)" >&2; exit 1; }
    sleep 0.2
done
