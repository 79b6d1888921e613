#!/usr/bin/env python3
"""Fails when the files of one crate import each other in a circle.

Rust allows modules of one crate to refer to each other freely, so a cycle
creeps in silently: two files that can only be understood together. This
reads every `crate::…` and `super::…` path (also inside `use …::{…}` groups)
of each non-test source file, resolves it to the file that defines the
module, and reports every strongly connected group of files. Child modules
declared by their parent (`mod x;`, `pub use x::…`) are not edges: a parent
re-exporting its children is the normal shape, not a cycle.

Usage: check_module_cycles.py SRC_DIR...   (exit 1 when a cycle is found)
"""
import pathlib
import re
import sys

PATH_SEG = re.compile(r"^[a-z_][a-z_0-9]*$")


def module_file(src, parts):
    """The file defining the longest prefix of `parts` that is a module."""
    for n in range(len(parts), 0, -1):
        base = src.joinpath(*parts[:n])
        for cand in (base.with_suffix(".rs"), base / "mod.rs"):
            if cand.exists():
                return cand.relative_to(src).as_posix()
    return None


def graph(src):
    edges = {}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src)
        if rel.name == "tests.rs" or rel.name.endswith("_tests.rs") or "tests" in rel.parts[:-1]:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "mod":
            parts = parts[:-1]
        parent = parts[:-1]
        text = re.sub(r"//[^\n]*", "", path.read_text(encoding="utf-8"))
        cut = text.find("#[cfg(test)]\nmod tests {")
        if cut >= 0:
            text = text[:cut]
        me = rel.as_posix()

        def add(segments):
            target = module_file(src, segments)
            if target and target != me and target not in ("lib.rs", "main.rs"):
                edges.setdefault(me, set()).add(target)

        for m in re.finditer(r"\b(crate|super)((?:::[a-z_][a-z_0-9]*)+)", text):
            base = [] if m.group(1) == "crate" else parent
            add(base + m.group(2).strip(":").split("::"))
        for m in re.finditer(r"\b(crate|super)::\{([^}]*)\}", text):
            base = [] if m.group(1) == "crate" else parent
            for item in m.group(2).split(","):
                segments = [s for s in item.strip().split("::") if s != "self" and PATH_SEG.match(s)]
                if segments:
                    add(base + segments)
    return edges


def cycles(edges):
    """Tarjan's strongly connected components of more than one file."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    nodes = set(edges) | {w for ws in edges.values() for w in ws}
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


def main(dirs):
    bad = 0
    for d in dirs:
        src = pathlib.Path(d)
        edges = graph(src)
        for group in cycles(edges):
            bad += 1
            print(f"import cycle in {d}:")
            for f in group:
                print(f"  {f} -> {', '.join(sorted(w for w in edges.get(f, ()) if w in group))}")
    if bad:
        return 1
    print(f"module cycles: none in {len(dirs)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
