#!/usr/bin/env bash
# End-to-end test of the web console in a real headless browser (tests/browser/).
#
# Uses Debian's Chromium, driven by playwright-core from npm (pinned in
# tests/browser/package-lock.json), against the already-built debug `inferq`
# binary; it builds nothing itself (`make test` builds first).
#
# - Chromium missing: installed with `apt-get install -y chromium` (without
#   recommends) when running as root; if that is impossible or fails, prints
#   "SKIPPED: browser test (reason)" and exits 0.
# - npm packages: `npm ci` with its cache under .cache/npm.
# - The binary: $INFERQ_BIN, else $CARGO_TARGET_DIR/debug/inferq, else
#   target/debug/inferq. The models come from `make assets`.
#
# Environment: CHROMIUM (default /usr/bin/chromium), INFERQ_BIN,
# CARGO_TARGET_DIR, ORT_DYLIB_PATH (default: the one in .cache/venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

skip() { echo "SKIPPED: browser test ($*)"; exit 0; }
die() { echo "browser-test: ERROR: $*" >&2; exit 1; }

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
    [[ "$(id -u)" == 0 ]] || skip "no Chromium at $CHROMIUM; as root this script installs it (apt-get install chromium)"
    command -v apt-get >/dev/null 2>&1 || skip "no Chromium at $CHROMIUM and no apt-get to install it"
    mkdir -p .cache
    echo "browser-test: installing chromium with apt-get (log: .cache/apt-chromium.log)"
    export DEBIAN_FRONTEND=noninteractive
    # Without recommends (udev, avahi, printer tools: ~110 packages a headless
    # test does not use); fonts-liberation is the one that shows in pages.
    packages=(--no-install-recommends chromium fonts-liberation)
    # A stale package list fails the first try; refresh it and try again.
    if ! apt-get install -y -q "${packages[@]}" >.cache/apt-chromium.log 2>&1; then
        { apt-get update -q && apt-get install -y -q "${packages[@]}"; } >>.cache/apt-chromium.log 2>&1 ||
            skip "apt-get install chromium failed; see .cache/apt-chromium.log"
    fi
    [[ -x "$CHROMIUM" ]] || skip "chromium installed but $CHROMIUM is not there"
fi

command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    skip "node and npm are needed to drive Chromium (apt-get install nodejs npm; node >= 20)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
(( node_major >= 20 )) || skip "node $(node --version) is too old for playwright-core (needs >= 20)"

INFERQ_BIN="${INFERQ_BIN:-${CARGO_TARGET_DIR:-target}/debug/inferq}"
[[ "$INFERQ_BIN" == /* ]] || INFERQ_BIN="$ROOT/$INFERQ_BIN"
[[ -x "$INFERQ_BIN" ]] || die "$INFERQ_BIN not built; run 'cargo build --bin inferq' (make test does)"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/.cache/venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1}"
[[ -f "$ORT_DYLIB_PATH" ]] || die "ONNX Runtime not found at $ORT_DYLIB_PATH; run 'make assets'"

echo "browser-test: npm ci (tests/browser)"
(cd tests/browser && npm ci --cache "$ROOT/.cache/npm" --prefer-offline --no-audit --no-fund --loglevel=error)

mkdir -p tests/output
echo "browser-test: $("$CHROMIUM" --version 2>/dev/null || echo chromium), $INFERQ_BIN"
export INFERQ_BIN CHROMIUM
cd tests/browser
exec node --test --test-reporter=spec console.test.mjs stream.test.mjs models.test.mjs video.test.mjs
