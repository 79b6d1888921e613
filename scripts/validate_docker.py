#!/usr/bin/env python3
"""Offline checks of the container files (run through validate_deploy.py).

The Dockerfile (BuildKit's parser) with .dockerignore and the health check script it copies,
docker-compose.yml against the code's options, and the compose override of `make deploy-test`
(docker-compose.deploy-test.yml) against the file it overrides.
"""

import fnmatch
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

import yaml

from deploy_checks import ROOT, check, check_env_names, ok, read, seconds, skip

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


def parse_stages(path):
    """BuildKit's parse of a Dockerfile: (instructions, global ARGs, stages with resolved bases)."""
    import dockerfile  # BuildKit's parser

    cmds = dockerfile.parse_file(path)
    args, stages, stage = {}, [], None

    def resolve(text):
        for _ in range(5):  # ARG defaults may name earlier ARGs
            text = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)
        return text

    for c in cmds:
        if c.cmd == "ARG" and stage is None:
            k, _, v = c.value[0].partition("=")
            args[k] = resolve(v)
        elif c.cmd == "FROM":
            name = c.value[2] if len(c.value) > 2 else None
            stage = {"image": resolve(c.value[0]), "from": c.value[0], "name": name, "cmds": []}
            stages.append(stage)
        elif stage is not None:
            stage["cmds"].append(c)
    return cmds, args, stages


def check_base_images(stages, where=""):
    names = []
    for s in stages:
        image, label = s["image"], s["name"] or "(unnamed)"
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        if image == "scratch":
            ok(f"{where}stage {label}: FROM scratch")
        elif image in names:
            ok(f"{where}stage {label}: FROM the earlier stage {image}")
        else:
            check(tag and tag != "latest" and "$" not in image,
                  f"{where}stage {label}: base image {image} has a fixed tag")
        names.append(s["name"])


def check_dockerfile():
    text = read("Dockerfile")
    cmds, args, stages = parse_stages(os.path.join(ROOT, "Dockerfile"))
    ok(f"Dockerfile parses with BuildKit's parser ({len(cmds)} instructions)")
    # Offline engines: no frontend image to pull, nothing Docker 20.10's built-in frontend lacks.
    check(not re.match(r"\s*#\s*syntax\s*=", text, re.I),
          "no `# syntax=` line: the engine's built-in frontend, no frontend image pulled")
    check(not any(c.heredocs for c in cmds), "no heredocs (Docker 20.10's built-in frontend has none)")
    check_base_images(stages)
    for arg in ("BUILDER_IMAGE", "PYTHON_IMAGE", "NODE_IMAGE", "BASE_IMAGE", "ARTIFACTS"):
        check(arg in args, f"ARG {arg} (scripts/deploy-test.sh sets the offline build through it)")
    names = [s["name"] for s in stages]
    for choice in ("source", "prebuilt"):
        check(f"artifacts-{choice}" in names, f"ARTIFACTS={choice} has its stage artifacts-{choice}")
    patterns = dockerignore_patterns()
    for i, s in enumerate(stages):
        for c in s["cmds"]:
            if c.cmd != "COPY":
                continue
            src_from = [f.split("=", 1)[1] for f in c.flags if f.startswith("--from=")]
            if src_from:
                check(src_from[0] in names[:i], f"COPY --from={src_from[0]} names an earlier stage")
                continue
            for src in c.value[:-1]:
                if s["name"] == "artifacts-prebuilt":
                    # Not in the repository: scripts/deploy-test.sh assembles it in its context.
                    check(src.startswith("prebuilt/"), f"COPY {src}: the prebuilt stage reads prebuilt/ only")
                    continue
                exists = os.path.exists(os.path.join(ROOT, src))
                check(exists and not ignored(src, patterns),
                      f"COPY {src}: in the build context",
                      "missing" if not exists else "excluded by .dockerignore")
    for needed in ("Cargo.toml", "Cargo.lock", "api/src/main.rs", "worker/src/main.rs",
                   "embedded/src/main.rs", "shared/core/Cargo.toml", "shared/vision/Cargo.toml",
                   "shared/runtime/Cargo.toml", "shared/backends/Cargo.toml", "tests/Cargo.toml", "bench/Cargo.toml", "client/Cargo.toml",
                   "scripts/convert_efficientnet_lite0.py", "models/efficientnet-lite0/1/model.toml",
                   "models/efficientnet-lite0/labels.txt", "scripts/inferq-healthcheck"):
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
    by_name = {s["name"]: s for s in stages}
    from_source = " ".join(" ".join(c.value) + " " for c in by_name.get("artifacts-source", {"cmds": []})["cmds"]
                           if c.cmd == "COPY")
    for b in sorted(cargo_bins()):
        check(f"--bin {b}" in build, f"builder builds the binary {b}")
        check(f"/out/{b} " in from_source, f"artifacts-source takes {b} from the builder")
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
        for src in c.value[:-1]:
            path = dest + os.path.basename(src.rstrip("/")) if dest.endswith("/") else dest
            copied.add(path.replace("${ORT_VERSION}", version))
    ort = env.get("ORT_DYLIB_PATH", "").replace("${ORT_VERSION}", version)
    check(ort in copied, f"ORT_DYLIB_PATH {ort} is the copied library")
    model_dir = env.get("INFERQ_MODEL_DIR", "")
    check(any(c.value[-1].startswith(model_dir + "/") for c in copies if "models" in c.value[0]),
          f"INFERQ_MODEL_DIR {model_dir} holds the copied models")
    binaries = " ".join(" ".join(c.value) for c in copies)
    for b in sorted(cargo_bins()):
        check(f"/out/bin/{b} " in binaries + " ", f"runtime image has {b}")
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
    sources = [(c.value[0], c.flags) for c in copies if c.value[-1] == script_path and len(c.value) == 2]
    if check(bool(sources), f"HEALTHCHECK runs {script_path}, copied from the build context"):
        check("--chmod=0755" in sources[0][1], f"{script_path} is copied executable (--chmod=0755)")
        check_healthcheck_script(read(sources[0][0]))
    check_service_dockerfiles()


def check_service_dockerfiles():
    """The RabbitMQ and Redis images of `make deploy-test` (scripts/deploy-test/*.Dockerfile)."""
    folder = os.path.join(ROOT, "scripts", "deploy-test")
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".Dockerfile"):
            continue
        where = f"scripts/deploy-test/{name}: "
        cmds, args, stages = parse_stages(os.path.join(folder, name))
        check("BASE_IMAGE" in args and stages[0]["from"] == "${BASE_IMAGE}",
              f"{where}FROM ${{BASE_IMAGE}} (the debootstrap base)")
        check_base_images(stages, where)
        for c in (c for s in stages for c in s["cmds"] if c.cmd == "COPY"):
            for src in c.value[:-1]:
                check(os.path.exists(os.path.join(ROOT, src)), f"{where}COPY {src} exists")
        user = [c.value[0] for s in stages for c in s["cmds"] if c.cmd == "USER"]
        check(bool(user) and user[-1] not in ("root", "0"), f"{where}runs as a non-root user")


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


def check_compose_override(base_path, path):
    """docker-compose.deploy-test.yml may only swap the images no registry here serves.

    What `make deploy-test` proves is docker-compose.yml's topology; an override that changed
    commands, environment, health checks or volumes would test something else.
    """
    with open(base_path) as f:
        base = yaml.safe_load(f).get("services", {})
    with open(path) as f:
        doc = yaml.safe_load(f)
    where = os.path.basename(path)
    check(set(doc) == {"services"}, f"{where}: overrides services only ({sorted(doc)})")
    for name, svc in (doc.get("services") or {}).items():
        check(name in base, f"{where}: service {name} exists in {os.path.basename(base_path)}")
        check(set(svc) == {"image"}, f"{where}: {name} changes its image only ({sorted(svc)})")
        uses_inferq = bool((base.get(name) or {}).get("build"))
        check(not uses_inferq, f"{where}: {name} is not an InferQ service (those run the repo's image)")
