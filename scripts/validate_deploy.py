#!/usr/bin/env python3
"""Offline checks of the deployment files that no schema makes (run by validate-deploy.sh).

  validate_deploy.py dockerfile            Dockerfile + .dockerignore + the health check script
  validate_deploy.py compose FILE          docker-compose.yml against the code's options
  validate_deploy.py compose-override BASE FILE
                                           docker-compose.deploy-test.yml swaps images only
  validate_deploy.py k8s --versions 1.30,1.37 NAME=RENDERED.yaml... [--plain FILE...]
                                           rendered kustomizations: Kubernetes schemas
                                           (kubernetes-validate), KEDA ScaledObject against a
                                           small schema of our own, and cross-references

Facts are read from the sources, never restated: option variables from `env = "INFERQ_…"`
in the Rust code, probe routes from api/src/lib.rs, metric names from
shared/runtime/src/metrics/mod.rs, binary names from the Cargo manifests, the ONNX Runtime version
from scripts/requirements.txt. Prints one line per finding; exit status 1 if any failed.
The shared helpers are in deploy_checks.py, the Dockerfile and compose checks in
validate_docker.py; the Kubernetes checks are here.
"""

import argparse
import functools
import os
import re
import sys

import yaml

from deploy_checks import (ROOT, VERBOSE, api_routes, check, check_env_names, fail, failures,
                           metric_names, ok, passes, skip)
from validate_docker import check_compose, check_compose_override, check_dockerfile

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
    o = sub.add_parser("compose-override")
    o.add_argument("base")
    o.add_argument("override")
    k = sub.add_parser("k8s")
    k.add_argument("--versions", required=True)
    k.add_argument("--plain", nargs="*", default=[])
    k.add_argument("renders", nargs="+", help="NAME=FILE of a rendered kustomization")
    args = ap.parse_args()
    if args.what == "dockerfile":
        check_dockerfile()
    elif args.what == "compose":
        check_compose(args.file)
    elif args.what == "compose-override":
        check_compose_override(args.base, args.override)
    else:
        renders = [r.split("=", 1) for r in args.renders]
        check_k8s(renders, args.plain, args.versions.split(","))
    more = "" if VERBOSE else " (VALIDATE_VERBOSE=1 lists them)"
    print(f"  {len(passes)} checks passed, {len(failures)} failed{more}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

