#!/usr/bin/env python3
"""What every check of the offline deployment validation shares (validate_deploy.py).

The pass/fail record and its printing, reading repository files, and the facts read from the
sources rather than restated: the INFERQ_* option variables (`env = "…"` in the Rust code),
the API's routes (api/src/lib.rs) and the metric names (shared/runtime/src/metrics/mod.rs).
"""

import functools
import os
import re

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
