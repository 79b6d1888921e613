#!/usr/bin/env bash
# Print the Redis primary as each Sentinel sees it, and each Redis instance's own role:
#
#   scripts/cluster/redis-primary.sh [--short]
#   sentinel-1 10.77.0.11:26379 primary=10.77.0.14:6379 instance=redis-a
#   ...
#   redis-a 10.77.0.14:6379 pid=123 role=master
#   redis-b 10.77.0.15:6379 pid=456 role=slave master=10.77.0.14:6379 link=up
#
# --short prints only the address most Sentinels agree on (IP:PORT), exit 1 if none.
set -euo pipefail
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -f "$MODE_FILE" ]] || die "the cluster is not up (scripts/cluster/up.sh)"

short=0; [[ "${1:-}" == --short ]] && short=1
views=()
for h in $SENTINEL_HOSTS; do
    p="$(sentinel_primary "$h" || true)"
    addr="${p/ /:}"
    views+=("$addr")
    ((short)) || echo "$(sentinel_name "$h") $(host_ip "$h"):$(sentinel_port "$h") primary=${addr:-unreachable} instance=$(if [[ -n "$p" ]]; then redis_name_at "$p"; else echo -; fi)"
done
if ((short)); then
    best="$(printf '%s\n' "${views[@]}" | grep -v '^$' | sort | uniq -c | sort -rn | awk 'NR == 1 && $1 >= 2 {print $2}')"
    [[ -n "$best" ]] || { echo "no primary agreed by 2 Sentinels" >&2; exit 1; }
    echo "$best"
    exit 0
fi
for n in $REDIS_INSTANCES; do
    h="$(redis_host "$n")"; port="$(redis_port "$n")"
    info="$(redis_cli "$h" "$port" INFO replication 2>/dev/null | tr -d '\r' || true)"
    role="$(sed -n 's/^role://p' <<< "$info")"
    line="$n $(host_ip "$h"):$port pid=$(redis_pid "$n") role=${role:-down}"
    if [[ "$role" == slave ]]; then
        line+=" master=$(sed -n 's/^master_host://p' <<< "$info"):$(sed -n 's/^master_port://p' <<< "$info") link=$(sed -n 's/^master_link_status://p' <<< "$info")"
    fi
    echo "$line"
done
