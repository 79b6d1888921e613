#!/usr/bin/env python3
"""Offline checks of the deployment files that no schema makes (run by validate-deploy.sh).

  validate_deploy.py dockerfile            Dockerfile + .dockerignore + the health check script
  validate_deploy.py compose FILE          docker-compose.yml against the code's options
  validate_deploy.py k8s --versions 1.30,1.37 NAME=RENDERED.yaml... [--plain FILE...]
                                           rendered kustomizations: Kubernetes schemas
                                           (kubernetes-validate), KEDA ScaledObject against a
                                           small schema of our own, and cross-references

Facts are read from the sources, never restated: option variables from `env = "INFERQ_…"`
in the Rust code, probe routes from api/src/lib.rs, metric names from
shared/runtime/src/metrics/mod.rs, binary names from the Cargo manifests, the ONNX Runtime version
from scripts/requirements.txt. Prints one line per finding; exit status 1 if any failed.
"""

import argparse
import fnmatch
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERBOSE = os.environ.get("VALIDATE_VERBOSE", "") not in ("", "0")
failures, passes = [], []


def ok(msg):
    passes.append(msg)
    if VERBOSE:
        print(f"  ok    {msg}")


def fail(msg):
    failures.append(msg)
    print(f"  FAIL  {msg}")


def skip(msg):
    print(f"  SKIP  {msg}")


def check(cond, msg, why=""):
    (ok if cond else fail)(msg if cond or not why else f"{msg}: {why}")
    return cond


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def rust_sources(*dirs):
    for d in dirs:
        for base, _, files in os.walk(os.path.join(ROOT, d)):
            for name in files:
                if name.endswith(".rs"):
                    with open(os.path.join(base, name), encoding="utf-8") as f:
                        yield f.read()


@functools.lru_cache(maxsize=None)
def known_env():
    """Every environment variable a binary reads through clap (`env = "…"`)."""
    names = set()
    for text in rust_sources("shared", "api/src", "worker/src", "embedded/src", "client/src"):
        names.update(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', text))
    return names


def check_env_names(where, names):
    bad = sorted(n for n in names if n.startswith("INFERQ_") and n not in known_env())
    check(not bad, f"{where}: every INFERQ_* variable is an option of the code",
          f"unknown {bad} (typo, or an option that was renamed?)")


@functools.lru_cache(maxsize=None)
def api_routes():
    return set(re.findall(r'\.route\(\s*"([^"]+)"', read("api/src/lib.rs")))


@functools.lru_cache(maxsize=None)
def metric_names():
    return set(re.findall(r'"(inferq_[a-z0-9_]+)"', read("shared/runtime/src/metrics/mod.rs")))


def seconds(value):
    """Compose durations ("45s", "1m30s") or plain numbers, in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    total, units = 0.0, {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    for num, unit in re.findall(r"([\d.]+)(ms|h|m|s)", str(value)):
        total += float(num) * units[unit]
    return total


# ----------------------------------------------------------------------------- Dockerfile

def dockerignore_patterns():
    pats = []
    for line in read(".dockerignore").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pats.append(line)
    return pats


def ignored(path, patterns):
    """Docker's rule, simplified: a path is left out when it or a parent matches."""
    parts = path.strip("/").split("/")
    result = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat.lstrip("!").strip("/").replace("**/", "*")
        for i in range(1, len(parts) + 1):
            if fnmatch.fnmatchcase("/".join(parts[:i]), pat):
                result = not neg
                break
    return result


def cargo_bins():
    bins = set()
    for manifest in ("api/Cargo.toml", "worker/Cargo.toml", "embedded/Cargo.toml"):
        text = read(manifest)
        bins.update(re.findall(r'\[\[bin\]\]\s*name\s*=\s*"([^"]+)"', text))
    return bins


def default_ports():
    text = read("shared/runtime/src/config.rs") + read("worker/src/config.rs") + read("embedded/src/config.rs")
    return {int(p) for p in re.findall(r'"0\.0\.0\.0:(\d+)"', text)}


def check_dockerfile():
    import dockerfile  # BuildKit's parser

    cmds = dockerfile.parse_file(os.path.join(ROOT, "Dockerfile"))
    ok(f"Dockerfile parses with BuildKit's parser ({len(cmds)} instructions)")
    args, stages, stage = {}, [], None
    for c in cmds:
        if c.cmd == "ARG" and stage is None:
            k, _, v = c.value[0].partition("=")
            args[k] = v
        elif c.cmd == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), c.value[0])
            name = c.value[2] if len(c.value) > 2 else None
            stage = {"image": image, "name": name, "cmds": []}
            stages.append(stage)
        elif stage is not None:
            stage["cmds"].append(c)
    for s in stages:
        tag = s["image"].rsplit(":", 1)[-1] if ":" in s["image"] else ""
        check(tag and tag != "latest" and "$" not in s["image"],
              f"stage {s['name']}: base image {s['image']} has a fixed tag")
    names = [s["name"] for s in stages]
    patterns = dockerignore_patterns()
    for i, s in enumerate(stages):
        for c in s["cmds"]:
            if c.cmd != "COPY":
                continue
            src_from = [f.split("=", 1)[1] for f in c.flags if f.startswith("--from=")]
            if src_from:
                check(src_from[0] in names[:i], f"COPY --from={src_from[0]} names an earlier stage")
            elif not c.heredocs:
                for src in c.value[:-1]:
                    exists = os.path.exists(os.path.join(ROOT, src))
                    check(exists and not ignored(src, patterns),
                          f"COPY {src}: in the build context",
                          "missing" if not exists else "excluded by .dockerignore")
    for needed in ("Cargo.toml", "Cargo.lock", "api/src/main.rs", "worker/src/main.rs",
                   "embedded/src/main.rs", "shared/core/Cargo.toml", "shared/vision/Cargo.toml",
                   "shared/runtime/Cargo.toml", "shared/backends/Cargo.toml", "tests/Cargo.toml", "bench/Cargo.toml", "client/Cargo.toml",
                   "scripts/convert_efficientnet_lite0.py", "models/efficientnet-lite0/1/model.toml",
                   "models/efficientnet-lite0/labels.txt"):
        check(not ignored(needed, patterns), f".dockerignore keeps {needed}")
    for generated in ("target/release/inferq", ".cache/venv", "models/efficientnet-lite0/1/model.onnx"):
        check(ignored(generated, patterns), f".dockerignore leaves out {generated}")

    # Versions and binaries agree with the sources.
    pin = re.search(r"^onnxruntime==([\d.]+)", read("scripts/requirements.txt"), re.M).group(1)
    check(args.get("ORT_VERSION") == pin,
          f"ORT_VERSION {args.get('ORT_VERSION')} = onnxruntime pin in scripts/requirements.txt ({pin})")
    check(f"libonnxruntime.so.{pin}" in read("Makefile"), "the Makefile's ORT_DYLIB_PATH has the same version")
    build = " ".join(c.value[0] for c in stages[0]["cmds"] if c.cmd == "RUN")
    check("--locked" in build and "--release" in build, "cargo build --release --locked")
    for b in sorted(cargo_bins()):
        check(f"--bin {b}" in build, f"builder builds the binary {b}")
    final = stages[-1]
    env = {}
    for c in final["cmds"]:
        if c.cmd == "ENV":
            env.update(dict(zip(c.value[::2], c.value[1::2])))
    check_env_names("Dockerfile ENV", env)
    copies = [c for c in final["cmds"] if c.cmd == "COPY"]
    version = args.get("ORT_VERSION", "")
    copied = set()  # destination paths of the files copied into the runtime image
    for c in copies:
        dest = c.value[-1]
        for src in ([] if c.heredocs else c.value[:-1]):
            path = dest + os.path.basename(src.rstrip("/")) if dest.endswith("/") else dest
            copied.add(path.replace("${ORT_VERSION}", version))
    ort = env.get("ORT_DYLIB_PATH", "").replace("${ORT_VERSION}", version)
    check(ort in copied, f"ORT_DYLIB_PATH {ort} is the copied library")
    model_dir = env.get("INFERQ_MODEL_DIR", "")
    check(any(c.value[-1].startswith(model_dir + "/") for c in copies if "models" in c.value[0]),
          f"INFERQ_MODEL_DIR {model_dir} holds the copied models")
    binaries = " ".join(" ".join(c.value) for c in copies)
    for b in sorted(cargo_bins()):
        check(f"/out/{b} " in binaries + " ", f"runtime image has {b}")
    user = [c.value[0] for c in final["cmds"] if c.cmd == "USER"]
    check(user and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0",
          f"runtime runs as a numeric non-root user ({user[-1] if user else 'none'})")
    exposed = {int(p.split("/")[0]) for c in final["cmds"] if c.cmd == "EXPOSE" for p in c.value}
    check(default_ports() <= exposed, f"EXPOSE {sorted(exposed)} covers the default ports {sorted(default_ports())}")
    cmd = [c.value for c in final["cmds"] if c.cmd == "CMD"]
    check(cmd and cmd[-1] == ("inferq-api",), "default command is inferq-api")
    hc = [c for c in final["cmds"] if c.cmd == "HEALTHCHECK"]
    if not check(bool(hc), "runtime image has a HEALTHCHECK"):
        return
    script_path = hc[-1].value[1]
    scripts = [h.content for c in copies if c.value[-1] == script_path for h in c.heredocs]
    if check(bool(scripts), f"HEALTHCHECK runs {script_path}, written in the Dockerfile"):
        check_healthcheck_script(scripts[0])


class _Probe(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        code = 200 if self.path in ("/healthz", "/readyz", "/metrics") else 503
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def check_healthcheck_script(script):
    """bash -n, then the HTTP probe itself against a loopback server."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "inferq-healthcheck")
        with open(path, "w") as f:
            f.write(script)
        os.chmod(path, 0o755)
        r = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
        check(r.returncode == 0, "health check script: bash -n", r.stderr.strip())
        shellcheck = os.path.join(os.path.dirname(sys.executable), "shellcheck")
        if os.path.exists(shellcheck):
            r = subprocess.run([shellcheck, "-s", "bash", path], capture_output=True, text=True)
            check(r.returncode == 0, "health check script: shellcheck", r.stdout.strip())
        else:
            skip("health check script: shellcheck (not installed)")
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Probe)
        port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        closed = http.server.HTTPServer(("127.0.0.1", 0), _Probe)
        closed_port = closed.server_address[1]
        closed.server_close()

        def run(*argv, env=None):
            return subprocess.run(list(argv), capture_output=True, text=True, timeout=20,
                                  env={**os.environ, **(env or {})}).returncode

        check(run(path, str(port), "/readyz") == 0, "health check: 200 answer -> healthy")
        check(run(path, str(port), "/other") == 1, "health check: 503 answer -> unhealthy")
        check(run(path, str(closed_port), "/healthz") == 1, "health check: closed port -> unhealthy")
        # Process detection, in a PID namespace of its own so that only the fake processes
        # are seen (needs root; skipped where unshare is refused).
        fake = os.path.join(tmp, "bin")
        os.makedirs(fake)
        for name in ("inferq-worker", "inferq-api"):
            shutil.copy("/bin/sleep", os.path.join(fake, name))
        # The fake process runs as PID 2 of the namespace; wait until it has exec'd, then
        # probe. When bash (PID 1 there) exits, the kernel ends the namespace's processes.
        probe = ("unshare --pid --fork --mount-proc bash -c '{0}/{1} 30 & for _ in $(seq 100); do "
                 "[ \"$(cat /proc/$!/comm 2>/dev/null)\" = {1} ] && break; sleep 0.05; done; {2}'")
        cases = [("inferq-worker", {"INFERQ_METRICS_LISTEN": f"0.0.0.0:{port}"}, 0, "worker -> /metrics"),
                 ("inferq-worker", {"INFERQ_METRICS_LISTEN": f"0.0.0.0:{closed_port}"}, 1,
                  "worker, metrics port closed"),
                 ("inferq-worker", {"INFERQ_METRICS_LISTEN": ""}, 0, "worker with metrics off"),
                 ("inferq-api", {"INFERQ_LISTEN": f"0.0.0.0:{port}"}, 0, "api -> /healthz")]
        if run("unshare", "--pid", "--fork", "--mount-proc", "true") != 0:
            skip("health check process detection (unshare not permitted here)")
        else:
            for name, env, want, what in cases:
                rc = run("bash", "-c", probe.format(fake, name, path), env=env)
                check(rc == want, f"health check finds the process: {what}", f"exit {rc}")
        server.shutdown()
        server.server_close()


# ----------------------------------------------------------------------------- compose

def check_compose(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    services = doc.get("services", {})
    for name, svc in services.items():
        hc = svc.get("healthcheck") or {}
        check(bool(hc.get("test")) and not hc.get("disable"), f"compose {name}: has a healthcheck")
        for dep, cond in (svc.get("depends_on") or {}).items():
            cond = cond.get("condition") if isinstance(cond, dict) else None
            check(cond == "service_healthy", f"compose {name}: waits for {dep} to be healthy")
            check(bool((services.get(dep) or {}).get("healthcheck")),
                  f"compose {dep}: has the healthcheck {name} waits for")
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
        if any(k.startswith("INFERQ_") for k in env):
            check_env_names(f"compose {name}", env)
            check(bool(svc.get("build")) and str(svc.get("image", "")).startswith("inferq:"),
                  f"compose {name}: runs the image built from this repo")
            grace = seconds(svc.get("stop_grace_period", "10s"))
            if "INFERQ_DRAIN_TIMEOUT_SECS" in env:
                drain = float(env["INFERQ_DRAIN_TIMEOUT_SECS"])
                check(grace >= drain + 10, f"compose {name}: stop_grace_period {grace:g}s >= drain {drain:g}s + 10s")
                replicas = (svc.get("deploy") or {}).get("replicas", 1)
                pinned = str(env.get("INFERQ_PIN_THREADS", "true")).lower() == "true"
                check(not (pinned and replicas > 1 and not svc.get("cpuset")),
                      f"compose {name}: replicas do not pin their threads onto the same cores")
            if "INFERQ_SHUTDOWN_GRACE_SECS" in env:
                sg = float(env["INFERQ_SHUTDOWN_GRACE_SECS"])
                check(grace > sg, f"compose {name}: stop_grace_period {grace:g}s > shutdown grace {sg:g}s")
    limits = {str(s["environment"].get("INFERQ_DELIVERY_LIMIT")) for s in services.values()
              if isinstance(s.get("environment"), dict) and "INFERQ_AMQP_URL" in s["environment"]}
    check(len(limits) == 1, f"compose: API and workers agree on INFERQ_DELIVERY_LIMIT ({limits})")
    # Workers fence each tenant's storage references again and sign its webhooks, from the
    # same key entries the API authenticates with.
    keys = {(svc.get("command") or [""])[0]: (svc.get("environment") or {}).get("INFERQ_API_KEYS")
            for svc in services.values() if isinstance(svc.get("environment"), dict)}
    if keys.get("inferq-api"):
        check(keys.get("inferq-worker") == keys["inferq-api"],
              "compose: workers read the API's key entries (INFERQ_API_KEYS)")


# ----------------------------------------------------------------------------- Kubernetes

def _num(s):
    return isinstance(s, str) and re.fullmatch(r"-?\d+(\.\d+)?", s) is not None


_STR, _INT = {"type": "string"}, {"type": "integer", "minimum": 0}
# The fields of keda.sh/v1alpha1 ScaledObject this repository uses or may use, written from
# KEDA's documentation; not KEDA's CRD (no package ships it), so unknown fields fail here.
SCALED_OBJECT = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object", "required": ["scaleTargetRef", "triggers"], "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                                   "properties": {"apiVersion": _STR, "kind": _STR, "name": _STR,
                                                  "envSourceContainerName": _STR}},
                "pollingInterval": _INT, "cooldownPeriod": _INT, "initialCooldownPeriod": _INT,
                "idleReplicaCount": _INT, "minReplicaCount": _INT, "maxReplicaCount": _INT,
                "fallback": {"type": "object", "required": ["failureThreshold", "replicas"],
                             "additionalProperties": False,
                             "properties": {"failureThreshold": _INT, "replicas": _INT, "behavior": _STR}},
                "advanced": {"type": "object", "additionalProperties": False, "properties": {
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                    "scalingModifiers": {"type": "object"},
                    "horizontalPodAutoscalerConfig": {"type": "object", "additionalProperties": False,
                                                      "properties": {"name": _STR, "behavior": {"type": "object"}}}}},
                "triggers": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["type", "metadata"], "additionalProperties": False,
                    "properties": {"type": _STR, "name": _STR, "useCachedMetrics": {"type": "boolean"},
                                   "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                                   "metadata": {"type": "object", "additionalProperties": _STR},
                                   "authenticationRef": {"type": "object", "required": ["name"]}}}},
            }},
    },
}


# The CRDs of the other components, likewise the fields used (KEDA's TriggerAuthentication;
# the prometheus-operator's ServiceMonitor and PodMonitor).
_ENDPOINT = {"type": "object", "required": ["port"], "additionalProperties": False,
             "properties": {"port": _STR, "path": _STR, "interval": _STR, "scrapeTimeout": _STR,
                            "scheme": {"enum": ["http", "https"]}}}
_LABEL_SELECTOR = {"type": "object", "required": ["matchLabels"], "additionalProperties": False,
                   "properties": {"matchLabels": {"type": "object", "additionalProperties": _STR}}}
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "TriggerAuthentication"): {"properties": {"spec": {
        "type": "object", "required": ["secretTargetRef"], "additionalProperties": False,
        "properties": {"secretTargetRef": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["parameter", "name", "key"], "additionalProperties": False,
            "properties": {"parameter": _STR, "name": _STR, "key": _STR}}}}}}},
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {"properties": {"spec": {
        "type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
        "properties": {"selector": _LABEL_SELECTOR,
                       "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT}}}}},
    ("monitoring.coreos.com/v1", "PodMonitor"): {"properties": {"spec": {
        "type": "object", "required": ["selector", "podMetricsEndpoints"], "additionalProperties": False,
        "properties": {"selector": _LABEL_SELECTOR,
                       "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT}}}}},
}


def validate_crd(doc):
    import jsonschema

    schema = dict(CRD_SCHEMAS[(doc["apiVersion"], doc["kind"])])
    schema.update({"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"]})
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)
    return "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:3]) or None


def validate_scaled_object(doc, version):
    import jsonschema
    import kubernetes_validate

    errors = sorted(jsonschema.Draft202012Validator(SCALED_OBJECT).iter_errors(doc), key=str)
    if errors:
        return "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:3])
    spec = doc["spec"]
    behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    if behavior:  # KEDA hands it to the HPA: check it with the HPA's own schema
        hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"},
               "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 1,
                        "behavior": behavior}}
        try:
            kubernetes_validate.validate(hpa, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            return f"advanced.horizontalPodAutoscalerConfig.behavior: {e.message}"
    if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
        return "minReplicaCount > maxReplicaCount"
    for t in spec["triggers"]:
        if t["type"] == "prometheus":
            md = t["metadata"]
            missing = [k for k in ("serverAddress", "query", "threshold") if k not in md]
            if missing:
                return f"prometheus trigger without {missing}"
            if not all(_num(md[k]) for k in ("threshold", "activationThreshold") if k in md):
                return "prometheus threshold/activationThreshold must be numbers (as strings)"
        elif t["type"] == "rabbitmq":
            md = t["metadata"]
            missing = [k for k in ("queueName", "mode", "value") if k not in md]
            if missing:
                return f"rabbitmq trigger without {missing}"
            if md["mode"] != "QueueLength" or md.get("protocol") != "http":
                return ("rabbitmq trigger: mode QueueLength over protocol http (the amqp protocol "
                        "counts ready messages only, so busy workers would look idle)")
            if not all(_num(md[k]) for k in ("value", "activationValue") if k in md):
                return "rabbitmq value/activationValue must be numbers (as strings)"
            if "host" in md or "authenticationRef" not in t:
                return "rabbitmq trigger: credentials through a TriggerAuthentication, not `host`"
        else:
            return f"trigger type {t['type']} is not checked here"
    return None


def check_k8s(renders, plain, versions):
    import kubernetes_validate
    from kubernetes_validate import utils as kv

    kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)  # parse each schema once
    secrets = {}
    for path in plain:
        for doc in filter(None, yaml.safe_load_all(open(path))):
            validate_docs(os.path.relpath(path, ROOT), [doc], versions, kubernetes_validate)
            if doc.get("kind") == "Secret":
                secrets[doc["metadata"]["name"]] = set((doc.get("stringData") or {}) | (doc.get("data") or {}))
    for name, path in renders:
        docs = [d for d in yaml.safe_load_all(open(path)) if d]
        validate_docs(name, docs, versions, kubernetes_validate)
        cross_check(name, docs, secrets)


def validate_docs(where, docs, versions, kubernetes_validate):
    for doc in docs:
        what = f"{where}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        passed, crd = [], False
        for v in versions:
            try:
                kubernetes_validate.validate(doc, v, strict=True)
                passed.append(v)
            except kubernetes_validate.ValidationError as e:
                fail(f"{what} (Kubernetes {v}): {'.'.join(map(str, e.path))}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                crd = True
        if passed:
            ok(f"{what}: Kubernetes {', '.join(passed)} schemas (strict)")
        if not crd:
            continue
        if doc.get("kind") == "ScaledObject" and doc.get("apiVersion") == "keda.sh/v1alpha1":
            err = validate_scaled_object(doc, versions[-1])
            check(err is None, f"{what}: KEDA CRD, checked against our schema of the fields used", err or "")
        elif (doc.get("apiVersion"), doc.get("kind")) in CRD_SCHEMAS:
            err = validate_crd(doc)
            check(err is None, f"{what}: CRD, checked against our schema of the fields used", err or "")
        else:
            skip(f"{what}: {doc.get('apiVersion')} is a CRD with no schema here")


def pod_matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_monitors(where, by_kind, deployments):
    """A ServiceMonitor selects exactly one Service and scrapes a port it has; a PodMonitor
    selects the pods of exactly one Deployment and scrapes a container port they declare."""
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    for m in by_kind.get("ServiceMonitor", []):
        sel = m["spec"]["selector"]["matchLabels"]
        hits = [n for n, s in services.items() if pod_matches(sel, s["metadata"].get("labels", {}))]
        name = m["metadata"]["name"]
        if check(len(hits) == 1, f"{where}: ServiceMonitor {name} selects one Service ({hits})"):
            ports = {p.get("name") for p in services[hits[0]]["spec"]["ports"]}
            for e in m["spec"]["endpoints"]:
                check(e["port"] in ports, f"{where}: ServiceMonitor {name} scrapes port {e['port']} of {hits[0]}")
    for m in by_kind.get("PodMonitor", []):
        sel = m["spec"]["selector"]["matchLabels"]
        hits = [n for n, d in deployments.items() if pod_matches(sel, d["spec"]["template"]["metadata"]["labels"])]
        name = m["metadata"]["name"]
        if check(len(hits) == 1, f"{where}: PodMonitor {name} selects the pods of one Deployment ({hits})"):
            ports = {p.get("name") for c in deployments[hits[0]]["spec"]["template"]["spec"]["containers"]
                     for p in c.get("ports", [])}
            for e in m["spec"]["podMetricsEndpoints"]:
                check(e["port"] in ports, f"{where}: PodMonitor {name} scrapes port {e['port']} of {hits[0]}")


def key_file(pod, container):
    """(path, Secret) of the API key file a container reads, or None."""
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    path = env.get("INFERQ_API_KEYS_FILE")
    if not path:
        return None
    volumes = {v["name"]: (v.get("secret") or {}).get("secretName") for v in pod.get("volumes", [])}
    for m in container.get("volumeMounts", []):
        if path.startswith(m["mountPath"].rstrip("/") + "/"):
            return path, volumes.get(m["name"])
    return path, None


def check_key_files(where, deployments):
    """Workers read the API's key file (same path, same Secret): they fence each tenant's
    storage references again and sign its webhooks with its own secret."""
    files = {"inferq-api": set(), "inferq-worker": set()}
    for d in deployments.values():
        pod = d["spec"]["template"]["spec"]
        for c in pod["containers"]:
            binary = c.get("command", [""])[0]
            if binary in files:
                files[binary].add(key_file(pod, c))
    for api in files["inferq-api"] - {None}:
        check(api[1] is not None, f"{where}: the API's key file {api[0]} is mounted from a Secret")
        if files["inferq-worker"]:
            check(files["inferq-worker"] == {api},
                  f"{where}: workers read the API's key file {api[0]} from Secret {api[1]}",
                  f"workers: {sorted(map(str, files['inferq-worker']))}")


def cross_check(where, docs, secrets):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in by_kind.get("ConfigMap", [])}
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    probe_routes = {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"} & api_routes()
    for name, d in deployments.items():
        tpl = d["spec"]["template"]
        pod = tpl["spec"]
        check(pod_matches(d["spec"]["selector"]["matchLabels"], tpl["metadata"]["labels"]),
              f"{where}: {name} selector matches its pods")
        for c in pod["containers"]:
            cname = f"{where}: {name}/{c['name']}"
            env = {e["name"]: e for e in c.get("env", [])}
            names = set(env)
            for ref in c.get("envFrom", []):
                cm = ref.get("configMapRef", {}).get("name")
                if check(cm in configmaps, f"{cname}: envFrom ConfigMap {cm} is in the output"):
                    names |= set(configmaps[cm])
            check_env_names(cname, names)
            for e in env.values():
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    check(ref["key"] in secrets.get(ref["name"], set()),
                          f"{cname}: Secret {ref['name']}/{ref['key']} is described in k8s/examples")
            ports = {p.get("name") for p in c.get("ports", [])}
            worker = c.get("command", [""])[0] == "inferq-worker"
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = c.get(kind)
                if not check(bool(probe), f"{cname}: has a {kind}"):
                    continue
                get = probe.get("httpGet") or {}
                routes = {"/metrics"} if worker else probe_routes
                check(get.get("port") in ports and get.get("path") in routes,
                      f"{cname}: {kind} GET {get.get('path')} on port {get.get('port')} is served",
                      f"expected one of {sorted(routes)} on a declared port")
            value = lambda k: float(env[k]["value"]) if "value" in env.get(k, {}) else None  # noqa: E731
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if worker:
                res = c.get("resources", {})
                req, lim = res.get("requests", {}), res.get("limits", {})
                guaranteed = all(req.get(k) is not None and str(req.get(k)) == str(lim.get(k))
                                 for k in ("cpu", "memory"))
                check(guaranteed and re.fullmatch(r"\d+", str(lim.get("cpu"))) is not None,
                      f"{cname}: Guaranteed QoS with whole CPUs (requests == limits)",
                      f"requests {req}, limits {lim}")
                drain = value("INFERQ_DRAIN_TIMEOUT_SECS")
                check(drain is not None and grace >= drain + 10,
                      f"{cname}: terminationGracePeriodSeconds {grace} >= drain {drain} s + 10 s")
            else:
                sleep = (c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command") or [None, 0])
                pre = float(sleep[1]) if sleep[0] == "sleep" else 0.0
                check(pre > 0, f"{cname}: preStop hook lets endpoints drop the pod before SIGTERM")
                sg = value("INFERQ_SHUTDOWN_GRACE_SECS") or 10.0
                check(grace > pre + sg, f"{cname}: terminationGracePeriodSeconds {grace} > preStop {pre:g} s "
                                        f"+ shutdown grace {sg:g} s")
    limits = {str(cm.get("INFERQ_DELIVERY_LIMIT")) for cm in configmaps.values()}
    check(len(limits) <= 1, f"{where}: one INFERQ_DELIVERY_LIMIT for API and workers")
    check_key_files(where, deployments)
    for kind in ("Service", "PodDisruptionBudget"):
        for s in by_kind.get(kind, []):
            sel = s["spec"]["selector"]
            sel = sel.get("matchLabels", sel) if kind == "PodDisruptionBudget" else sel
            hits = [n for n, d in deployments.items() if pod_matches(sel, d["spec"]["template"]["metadata"]["labels"])]
            check(len(hits) == 1, f"{where}: {kind} {s['metadata']['name']} selects the pods of {hits}")
            if kind == "Service" and hits:
                ports = {p.get("name") for c in deployments[hits[0]]["spec"]["template"]["spec"]["containers"]
                         for p in c.get("ports", [])}
                for p in s["spec"]["ports"]:
                    check(p.get("targetPort") in ports, f"{where}: Service port {p['name']} targets a container port")
    check_monitors(where, by_kind, deployments)
    auths = {a["metadata"]["name"]: a for a in by_kind.get("TriggerAuthentication", [])}
    for a in auths.values():
        for ref in a["spec"]["secretTargetRef"]:
            check(ref["key"] in secrets.get(ref["name"], set()),
                  f"{where}: TriggerAuthentication {a['metadata']['name']} reads Secret "
                  f"{ref['name']}/{ref['key']}, described in k8s/examples")
    queues = {cm.get("INFERQ_QUEUE") for cm in configmaps.values()} - {None}
    owners = {}
    for so in by_kind.get("ScaledObject", []):
        owners.setdefault(so["spec"]["scaleTargetRef"]["name"], []).append("ScaledObject")
        for t in so["spec"]["triggers"]:
            if t["type"] == "rabbitmq":
                auth = t.get("authenticationRef", {}).get("name")
                check(auth in auths, f"{where}: rabbitmq trigger's TriggerAuthentication {auth} is in the output")
                check(queues == {t["metadata"].get("queueName")},
                      f"{where}: rabbitmq trigger reads the queue the workers consume (INFERQ_QUEUE {queues})")
                continue
            used = set(re.findall(r"inferq_[a-z0-9_]+", t["metadata"].get("query", "")))
            check(used and used <= metric_names(),
                  f"{where}: KEDA query reads {sorted(used)}, defined in shared/runtime/src/metrics/mod.rs")
            mn = so["spec"].get("minReplicaCount", 1)
            check(mn > 0 or "activationThreshold" in t["metadata"],
                  f"{where}: scale-from-zero trigger sets activationThreshold")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        owners.setdefault(hpa["spec"]["scaleTargetRef"]["name"], []).append("HPA")
        for m in hpa["spec"].get("metrics", []):
            if m["type"] == "External":
                n = m["external"]["metric"]["name"]
                check(n in metric_names(), f"{where}: HPA external metric {n} is defined in shared/runtime/src/metrics/mod.rs")
    for target, who in owners.items():
        check(len(who) == 1, f"{where}: one autoscaler for {target} ({', '.join(who)})")
        check(target in deployments and "replicas" not in deployments[target]["spec"],
              f"{where}: autoscaled {target} exists and leaves `replicas` to the autoscaler")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("dockerfile")
    c = sub.add_parser("compose")
    c.add_argument("file")
    k = sub.add_parser("k8s")
    k.add_argument("--versions", required=True)
    k.add_argument("--plain", nargs="*", default=[])
    k.add_argument("renders", nargs="+", help="NAME=FILE of a rendered kustomization")
    args = ap.parse_args()
    if args.what == "dockerfile":
        check_dockerfile()
    elif args.what == "compose":
        check_compose(args.file)
    else:
        renders = [r.split("=", 1) for r in args.renders]
        check_k8s(renders, args.plain, args.versions.split(","))
    more = "" if VERBOSE else " (VALIDATE_VERBOSE=1 lists them)"
    print(f"  {len(passes)} checks passed, {len(failures)} failed{more}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
