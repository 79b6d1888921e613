#!/usr/bin/env python3
"""Write models/efficientnet-lite0/labels.txt: the 1000 ImageNet-1k class names, one per line,
line i = class index i (the output order of EfficientNet-Lite0's logits).

Source: npm @tensorflow-models/mobilenet@2.1.1 (Apache-2.0), dist/imagenet_classes.js, an
object literal `N: 'name'` (some names split as 'a' + 'b', with \\' escapes). npm is the only
registry here that carries a clean copy. The JS is parsed with a regex, not executed.
The output is committed; rerun only to regenerate it. Needs `npm` on PATH.

Usage: scripts/fetch_labels.py [--out models/efficientnet-lite0/labels.txt]
"""
import argparse
import glob
import re
import subprocess
import tarfile
import tempfile

PACKAGE = "@tensorflow-models/mobilenet@2.1.1"
MEMBER = "package/dist/imagenet_classes.js"

STRING = r"'(?:[^'\\]|\\.)*'"
ENTRY = re.compile(rf"(\d+)\s*:\s*({STRING}(?:\s*\+\s*{STRING})*)")


def unquote(lit):
    return re.sub(r"\\(.)", r"\1", lit[1:-1])  # only \' occurs; handle any single-char escape


def parse(js):
    labels = {}
    for m in ENTRY.finditer(js):
        labels[int(m.group(1))] = "".join(unquote(s) for s in re.findall(STRING, m.group(2)))
    if sorted(labels) != list(range(1000)):
        raise SystemExit(f"expected indices 0..999, got {len(labels)} entries")
    return [labels[i] for i in range(1000)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models/efficientnet-lite0/labels.txt")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", "--silent", PACKAGE], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        with tarfile.open(glob.glob(f"{tmp}/*.tgz")[0]) as tar:
            js = tar.extractfile(MEMBER).read().decode("utf-8")
    labels = parse(js)
    # Sanity checks on well-known indices (catches an off-by-one or a different class order).
    for i, want in [(0, "tench"), (281, "tabby"), (282, "tiger cat"), (285, "Egyptian cat"), (967, "espresso")]:
        assert labels[i].startswith(want), (i, labels[i])
    assert all("\n" not in l for l in labels)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(labels) + "\n")
    print(f"wrote {args.out}: {len(labels)} labels")


if __name__ == "__main__":
    main()
