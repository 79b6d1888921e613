#!/usr/bin/env bash
# `make deploy-test`: build the container images and run docker-compose.yml end to end on this
# machine, with no image registry. Not part of `make test`: it needs root (or a running
# Docker engine) and takes minutes. docs/deploy.md ("make deploy-test") has the details and
# the measured times.
#
#  1. Engine: uses a running Docker engine; else, as root, starts Debian's dockerd (apt-get
#     install docker.io if missing) with --iptables=false --ip-forward=false, so the host's
#     firewall and forwarding stay untouched, and stops it at the end.
#  2. Base image: `debootstrap --variant=minbase` of Debian bookworm from the apt mirror,
#     slimmed like debian:bookworm-slim (no docs, man pages, locales, apt lists), imported
#     as inferq-deploy-test/base:bookworm. The tarball is cached in .cache/deploy-test/.
#  3. Images: the repo's Dockerfile with BASE_IMAGE=that base and ARTIFACTS=prebuilt: the
#     release binaries (target/release, built with `cargo build --release` if missing), the
#     ONNX Runtime library of the pinned wheel (.cache/venv) and the default models
#     (make assets) are copied from the host instead of built in the image. RabbitMQ and
#     Redis from Debian's packages on the same base (scripts/deploy-test/*.Dockerfile).
#  4. Asserts: image size; `docker-compose up` (docker-compose.yml + docker-compose.deploy-test.yml)
#     gets every service healthy; an EfficientNet-Lite0 job through the composed API
#     succeeds; `docker kill` of the worker container during a batch loses no job; `down`
#     leaves exactly the two named volumes and the data in them (a job survives down + up);
#     `down -v` leaves nothing of the project.
#
# Environment: DOCKER (docker CLI; default /usr/bin/docker, Debian's, whose built-in BuildKit
# client needs no buildx), COMPOSE (default `docker compose` if the v2 plugin works, else
# docker-compose), DEPLOY_TEST_API_PORT (18080), DEPLOY_TEST_METRICS_PORT (18090),
# DEPLOY_TEST_MANAGEMENT_PORT (18672), DEPLOY_TEST_JOBS (300), DEPLOY_TEST_MAX_IMAGE_MB
# (uncompressed bound, 330), DEPLOY_TEST_MAX_COMPRESSED_MB (150, the target of docs/deploy.md),
# DEPLOY_TEST_MIRROR (the first deb.debian.org-style URI in /etc/apt), DEPLOY_TEST_KEEP=1
# (leave the project running on failure, for a look).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

PROJECT=inferq-deploy-test
CACHE=.cache/deploy-test
RELEASE=bookworm
BASE_TAG=inferq-deploy-test/base:$RELEASE
TAG=deploy-test
RABBITMQ_IMAGE=inferq-deploy-test/rabbitmq:local
REDIS_IMAGE=inferq-deploy-test/redis:local
API_KEY=local-dev-key-change-me
JOBS=${DEPLOY_TEST_JOBS:-300}
MAX_MB=${DEPLOY_TEST_MAX_IMAGE_MB:-330}
MAX_GZ_MB=${DEPLOY_TEST_MAX_COMPRESSED_MB:-150}
ORT_VERSION=$(sed -n 's/^ARG ORT_VERSION=//p' Dockerfile)
ORT_LIB=.cache/venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION
MODELS=(efficientnet-lite0 movenet-lightning movenet-multipose esrgan-psnr-small heatmap-bright)

export INFERQ_TAG=$TAG INFERQ_API_PORT=${DEPLOY_TEST_API_PORT:-18080}
export INFERQ_METRICS_PORT=${DEPLOY_TEST_METRICS_PORT:-18090}
export RABBITMQ_MANAGEMENT_PORT=${DEPLOY_TEST_MANAGEMENT_PORT:-18672}
export DEPLOY_TEST_RABBITMQ_IMAGE=$RABBITMQ_IMAGE DEPLOY_TEST_REDIS_IMAGE=$REDIS_IMAGE
# Nothing from a developer's .env or shell may change what is tested.
unset INFERQ_API_KEYS RABBITMQ_PASSWORD REDIS_PASSWORD INFERQ_PUBLISH_ADDR INFERQ_WEBHOOK_SECRETS

start_all=$(date +%s)
report=()   # "name|value"
note() { report+=("$1|$2"); printf '   %s: %s\n' "$1" "$2"; }
step() { printf '\n== %s\n' "$*"; }
die() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }
since() { echo "$(( $(date +%s) - $1 )) s"; }

mkdir -p "$CACHE"
own_dockerd=""
own_bridge=""   # docker0, if the dockerd this script started created it
compose_up=0

cleanup() {
    local rc=$?
    if [[ $compose_up == 1 ]]; then
        if [[ $rc != 0 ]]; then
            echo "-- last log lines of each service:"
            "${COMPOSE[@]}" logs --no-color --tail 25 2>&1 | tail -120 || true
        fi
        if [[ $rc != 0 && ${DEPLOY_TEST_KEEP:-} == 1 ]]; then
            echo "DEPLOY_TEST_KEEP=1: project $PROJECT left running (${COMPOSE[*]} down -v removes it)"
            own_dockerd=""
        else
            "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
        fi
    fi
    if [[ -n $own_dockerd ]]; then
        echo "== stopping the dockerd this script started (pid $own_dockerd)"
        kill "$own_dockerd" 2>/dev/null || true
        for _ in $(seq 60); do kill -0 "$own_dockerd" 2>/dev/null || break; sleep 0.5; done
        # dockerd leaves its default bridge behind; it did not exist before this run.
        [[ -n $own_bridge ]] && ip link delete "$own_bridge" 2>/dev/null || true
    fi
    echo "deploy-test: $([[ $rc == 0 ]] && echo PASSED || echo FAILED) in $(since "$start_all")"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------- 1. engine
step "1. container engine"
install_docker_io() {
    [[ $(id -u) == 0 ]] || die "no Docker engine runs here and installing one needs root (apt-get install docker.io)"
    echo "   installing docker.io from the Debian archive"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io >/dev/null
}
if [[ -z ${DOCKER:-} ]]; then
    if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=$(command -v docker || true); fi
fi
if [[ -z $DOCKER ]]; then
    install_docker_io
    DOCKER=/usr/bin/docker
fi
if ! "$DOCKER" info >/dev/null 2>&1 && ! command -v dockerd >/dev/null; then
    install_docker_io
fi
if ! "$DOCKER" info >/dev/null 2>&1; then
    [[ $(id -u) == 0 ]] || die "no Docker engine answers and starting dockerd needs root"
    # No iptables rules, no forwarding: containers reach each other on their bridge and the
    # host through the published ports (docker-proxy), nothing else; the host's firewall,
    # loopback services and other network namespaces are left as they are.
    ip link show docker0 >/dev/null 2>&1 || own_bridge=docker0
    dockerd --iptables=false --ip6tables=false --ip-forward=false \
        >"$CACHE/dockerd.log" 2>&1 &
    own_dockerd=$!
    for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 0.5; done
    "$DOCKER" info >/dev/null 2>&1 || die "dockerd did not start: see $CACHE/dockerd.log"
    echo "   started dockerd (pid $own_dockerd, log $CACHE/dockerd.log)"
fi
note engine "$("$DOCKER" version -f 'Docker {{.Server.Version}}, {{.Server.Os}}/{{.Server.Arch}}'), storage $("$DOCKER" info -f '{{.Driver}}'), cgroup v$("$DOCKER" info -f '{{.CgroupVersion}}')"
if [[ -z ${COMPOSE:-} ]]; then
    if "$DOCKER" compose version >/dev/null 2>&1; then
        COMPOSE="$DOCKER compose"
    else
        command -v docker-compose >/dev/null || {
            [[ $(id -u) == 0 ]] || die "neither 'docker compose' nor docker-compose is installed"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose >/dev/null
        }
        COMPOSE=docker-compose
    fi
fi
read -r -a compose_cmd <<<"$COMPOSE"
COMPOSE=("${compose_cmd[@]}" -p "$PROJECT" -f docker-compose.yml -f docker-compose.deploy-test.yml)
# docker-compose v1 talks to the engine through DOCKER_HOST, like the CLI.
note compose "$("${compose_cmd[@]}" version --short 2>/dev/null || "${compose_cmd[@]}" version | head -1)"
"${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true   # a previous run's leftovers

# ------------------------------------------------------------------------- 2. base image
step "2. base image from Debian packages (debootstrap)"
if ! "$DOCKER" image inspect "$BASE_TAG" >/dev/null 2>&1; then
    tarball=$CACHE/$RELEASE-minbase.tar
    if [[ ! -s $tarball ]]; then
        [[ $(id -u) == 0 ]] || die "debootstrap needs root"
        command -v debootstrap >/dev/null ||
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null
        # The mirror apt uses (deb822 or one-line sources), else deb.debian.org.
        mirror=${DEPLOY_TEST_MIRROR:-$( (grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian\b' \
            /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true) | awk '{print $2; exit}')}
        mirror=${mirror:-http://deb.debian.org/debian}
        t0=$(date +%s)
        root=$CACHE/rootfs
        rm -rf "$root"
        debootstrap --variant=minbase "$RELEASE" "$root" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
            die "debootstrap failed: see $CACHE/debootstrap.log"
        # What debian:*-slim does: no docs, man pages or locales from later installs either,
        # no services started by package scripts, no apt caches in the image.
        cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
        printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
        chmod 755 "$root/usr/sbin/policy-rc.d"
        cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
        printf 'APT::Install-Recommends "false";\n' >"$root/etc/apt/apt.conf.d/90-no-recommends"
        find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
        find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
        rm -rf "$root"/usr/share/{man,info,groff,lintian}/* "$root"/var/cache/apt/*.bin \
            "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
        find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
        tar --numeric-owner -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$root"
        note debootstrap "$RELEASE minbase from $mirror in $(since "$t0")"
    fi
    "$DOCKER" import -c 'CMD ["bash"]' "$tarball" "$BASE_TAG" >/dev/null
fi
note "base image" "$BASE_TAG, $(( $("$DOCKER" image inspect -f '{{.Size}}' "$BASE_TAG") / 1000000 )) MB"

# ------------------------------------------------------------------------------ 3. images
step "3. images"
bins=(inferq-api inferq-worker inferq)
bin_dir=${DEPLOY_TEST_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
t0=$(date +%s)
# cargo decides whether anything is stale; a no-op when `make`'s own build is current.
nice -n 10 "${CARGO:-cargo}" build -q --release --locked "${bins[@]/#/--bin=}" ||
    die "cargo build --release failed"
note "release binaries" "cargo build --release checked/built in $(since "$t0")"
[[ -f $ORT_LIB ]] || die "$ORT_LIB missing: run make assets"
for m in "${MODELS[@]}"; do
    [[ -f models/$m/1/model.onnx ]] || die "models/$m/1/model.onnx missing: run make assets"
done
# The build context: only what the Dockerfile's prebuilt stage and the service images read.
ctx=$CACHE/context
rm -rf "$ctx"
mkdir -p "$ctx/prebuilt/bin" "$ctx/prebuilt/lib" "$ctx/prebuilt/models" "$ctx/scripts/deploy-test"
for b in "${bins[@]}"; do cp "$bin_dir/$b" "$ctx/prebuilt/bin/"; done
cp "$ORT_LIB" "$ctx/prebuilt/lib/"
for m in "${MODELS[@]}"; do
    # Version 1 of each default model and the model's shared files (labels), as the
    # Dockerfile's source stages produce them.
    mkdir -p "$ctx/prebuilt/models/$m"
    find "models/$m" -maxdepth 1 -type f -exec cp {} "$ctx/prebuilt/models/$m/" \;
    cp -r "models/$m/1" "$ctx/prebuilt/models/$m/1"
done
cp scripts/inferq-healthcheck "$ctx/scripts/"
cp scripts/deploy-test/rabbitmq-entrypoint.sh "$ctx/scripts/deploy-test/"

build() {   # build NAME DOCKERFILE TAG ARGS...
    local name=$1 file=$2 tag=$3 t0
    shift 3
    t0=$(date +%s)
    # --network host: the runtime stages apt-get from the Debian mirror, and the engine
    # here does no NAT for its bridge (--iptables=false).
    DOCKER_BUILDKIT=1 "$DOCKER" build -q --network host -f "$file" -t "$tag" \
        --build-arg BASE_IMAGE="$BASE_TAG" "$@" "$ctx" >"$CACHE/build-$name.log" 2>&1 ||
        { tail -40 "$CACHE/build-$name.log"; die "building $tag failed (log: $CACHE/build-$name.log)"; }
    note "build $name" "$tag in $(since "$t0")"
}
build inferq Dockerfile "inferq:$TAG" --build-arg ARTIFACTS=prebuilt
build rabbitmq scripts/deploy-test/rabbitmq.Dockerfile "$RABBITMQ_IMAGE"
build redis scripts/deploy-test/redis.Dockerfile "$REDIS_IMAGE"

size=$("$DOCKER" image inspect -f '{{.Size}}' "inferq:$TAG")
gz=$("$DOCKER" save "inferq:$TAG" | gzip -6 | wc -c)
note "inferq image size" "$(( size / 1000000 )) MB uncompressed (bound $MAX_MB MB), $(( gz / 1000000 )) MB as docker save | gzip -6 (bound $MAX_GZ_MB MB)"
"$DOCKER" history --format '{{.Size}}\t{{.CreatedBy}}' "inferq:$TAG" | cut -c1-110 | sed 's/^/     /'
(( size <= MAX_MB * 1000000 )) || die "image is $(( size / 1000000 )) MB, more than $MAX_MB MB"
(( gz <= MAX_GZ_MB * 1000000 )) || die "compressed image is $(( gz / 1000000 )) MB, more than $MAX_GZ_MB MB"
"$DOCKER" run --rm "inferq:$TAG" inferq-worker --version >/dev/null 2>&1 ||
    die "inferq-worker does not run in the image"

# -------------------------------------------------------------------------- 4. compose up
step "4. ${COMPOSE[*]} up"
wait_healthy() {   # every service's container reports healthy, within $1 seconds
    local deadline=$(( $(date +%s) + $1 )) svc id state pending
    while :; do
        pending=()
        for svc in rabbitmq redis api worker; do
            id=$("${COMPOSE[@]}" ps -q "$svc" 2>/dev/null || true)
            state=$([[ -n $id ]] && "$DOCKER" inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" || echo missing)
            [[ $state == running/healthy ]] || pending+=("$svc=$state")
        done
        [[ ${#pending[@]} == 0 ]] && return 0
        (( $(date +%s) < deadline )) || { echo "   not healthy: ${pending[*]}"; return 1; }
        sleep 2
    done
}
t0=$(date +%s)
compose_up=1
"${COMPOSE[@]}" up -d --no-build 2>&1 | sed 's/^/   /'
wait_healthy 240 || die "services not healthy within 240 s"
note "compose up" "rabbitmq, redis, api, worker healthy $(since "$t0") after up"
url=http://127.0.0.1:$INFERQ_API_PORT
curl -fsS "$url/readyz" >/dev/null || die "GET $url/readyz failed"

step "5. a job through the composed API"
python3 scripts/deploy_test.py one --url "$url" --key "$API_KEY" --image tests/images/chelsea.png \
    --expect-label cat --out "$CACHE/first-job"
first_job=$(cat "$CACHE/first-job")

step "6. docker kill of the worker container during a batch of $JOBS jobs"
worker=$("${COMPOSE[@]}" ps -q worker)
python3 scripts/deploy_test.py kill --url "$url" --key "$API_KEY" --image tests/images/chelsea.png \
    --jobs "$JOBS" --kill "$DOCKER kill $worker" --restart "$DOCKER start $worker"
note "worker kill" "$JOBS jobs, all succeeded (details above)"

# ------------------------------------------------------------------- 7. down, data, down -v
step "7. down keeps exactly the named volumes; down -v removes them"
project_objects() {   # containers, networks, volumes of the project (compose's label)
    local label=com.docker.compose.project=$PROJECT
    echo "containers: $("$DOCKER" ps -aq --filter "label=$label" | wc -l)" \
        "networks: $("$DOCKER" network ls -q --filter "label=$label" | wc -l)" \
        "volumes: $("$DOCKER" volume ls -q --filter "label=$label" | sort | tr '\n' ' ')"
}
all_volumes_before=$("$DOCKER" volume ls -q | sort)
"${COMPOSE[@]}" down 2>&1 | sed 's/^/   /'
left=$(project_objects)
want="containers: 0 networks: 0 volumes: ${PROJECT}_rabbitmq-data ${PROJECT}_redis-data "
[[ $left == "$want" ]] || die "after down: $left (expected: $want)"
note "after down" "$left"
anon=$(comm -13 <(echo "$all_volumes_before") <("$DOCKER" volume ls -q | sort) | tr '\n' ' ')
[[ -z $anon ]] || die "volumes appeared that compose does not name: $anon"
t0=$(date +%s)
"${COMPOSE[@]}" up -d --no-build 2>&1 | sed 's/^/   /'
wait_healthy 240 || die "services not healthy again within 240 s"
note "up again" "healthy in $(since "$t0")"
python3 scripts/deploy_test.py get --url "$url" --key "$API_KEY" --id "$first_job"
"${COMPOSE[@]}" down -v 2>&1 | sed 's/^/   /'
compose_up=0
left=$(project_objects)
[[ $left == "containers: 0 networks: 0 volumes: " ]] || die "after down -v: $left"
note "after down -v" "$left"

# ------------------------------------------------------------------------------- report
step "deploy-test report ($(since "$start_all"))"
for r in "${report[@]}"; do
    IFS='|' read -r name value <<<"$r"
    printf '  %-18s %s\n' "$name" "$value"
done
