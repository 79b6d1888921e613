#!/usr/bin/env bash
# The crate graph's promises, checked (run by `make lint`; docs/architecture.md):
# - the API never links a decoder or the vision crate (it validates images from headers only);
# - the worker links neither the API nor the client (the two meet only through broker and store);
# - the client (CLI) links no model runtime, decoder or server crate: it talks HTTP, and
#   `models import` converts in a Python subprocess;
# - no crate has an import cycle between its files.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CARGO=${CARGO:-cargo}
fail=0

forbidden() {   # forbidden CRATE PATTERN WHY
    local hits
    hits=$("$CARGO" tree --offline -q -p "$1" -e normal --prefix none | tail -n +2 | awk '{print $1}' | sort -u | grep -xE "$2" || true)
    if [[ -n "$hits" ]]; then
        echo "architecture: $1 depends on $(echo "$hits" | tr '\n' ' '): $3" >&2
        fail=1
    fi
}
forbidden inferq-api 'inferq-vision|image|zune-jpeg|jpeg-decoder|ort' "the API must not decode pixels or run models"
forbidden inferq-worker 'inferq-api|inferq-client|inferq-embedded' "the worker and the API are peers"
forbidden inferq-client 'inferq-(api|worker|vision|backends|runtime|embedded)|image|ort' "the client talks HTTP and converts in Python"
forbidden inferq-core 'inferq-.*|lapin|redis|reqwest|image|ort|tokio' "the vocabulary does no I/O"
forbidden inferq-convert 'inferq-.*|lapin|redis|reqwest|image|ort' "conversion runs in Python; no services, no runtime"
forbidden inferq-vision 'inferq-backends|inferq-runtime|lapin|redis|reqwest|ort' "vision has no network"

python3 scripts/check_module_cycles.py \
    shared/core/src shared/convert/src shared/vision/src shared/runtime/src shared/backends/src \
    api/src worker/src embedded/src client/src || fail=1

[[ $fail == 0 ]] && echo "architecture: crate graph as documented"
exit $fail
