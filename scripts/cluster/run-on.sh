#!/usr/bin/env bash
# Run a command on a test host of the simulated cluster, with the cluster's env file exported:
#
#   scripts/cluster/run-on.sh HOST CMD [ARGS...]     HOST: h1..h5, w1..wN, or "root"
#   e.g. scripts/cluster/run-on.sh w1 target/debug/inferq-worker
#
# HOST's network namespace (netns mode) is entered with `ip netns exec`; "root" (and any host
# in loopback mode) runs the command here. down.sh kills every process left in a namespace,
# so whatever runs on h*/w* never outlives the cluster.
set -euo pipefail
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $# -ge 2 ]] || { sed -n '2,9p' "$0"; exit 2; }
[[ -f "$ENV_FILE" ]] || die "the cluster is not up (scripts/cluster/up.sh)"
host="$1"; shift
set -a
# shellcheck disable=SC1090
source "$ENV_FILE"
set +a
if [[ "$host" == root ]]; then exec "$@"; fi
case "$host" in h[1-9]|w[0-9]*) ;; *) die "unknown host '$host'" ;; esac
if [[ "$(current_mode)" == netns ]]; then
    ip netns list | grep -q "^$(ns_name "$host")\b" || die "no namespace $(ns_name "$host")"
    exec ip netns exec "$(ns_name "$host")" "$@"
fi
exec "$@"
