#!/usr/bin/env python3
"""The bare Python pipeline `make bench` compares InferQ against.

What a user would write instead of running a service: Pillow decodes the
image, numpy preprocesses it exactly as the model's manifest says
(`model.toml`: shorter-side resize + centre crop, or stretch; bilinear or
other filter; mean/std; NCHW/NHWC; RGB/BGR; float32/uint8/int32), and
onnxruntime runs the same `model.onnx` with one intra-op thread and no
spinning, as InferQ's worker does. One process per core, each pinned to its
core with os.sched_setaffinity, runs a closed loop over the same image bytes
(decode + preprocess + inference + softmax/top-k) for --secs seconds after a
warm-up. No queue, no HTTP: the cost of the model and the image work alone,
in the language most pipelines are written in.

Prints one JSON object on stdout (inferq-bench parses it):
  {"images_per_sec": ..., "p50_ms": ..., "p99_ms": ..., "images": N,
   "secs": ..., "processes": P, "cores": [...], "top1": i, "top5": [...],
   "versions": {...}}
`top1` is the class index of the image, so the bench can check that this
pipeline and InferQ agree (the comparison is only honest if they compute
the same thing).

Usage: scripts/bare_pipeline.py --model-dir models --model efficientnet-lite0
       --version 1 --image tests/images/photo-640x480.jpg [--secs 5]
       [--warmup 1] [--cores 0,1]
"""
import argparse
import io
import json
import math
import multiprocessing
import os
import sys
import time
import tomllib

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

FILTERS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
}


def load_manifest(model_dir, model, version):
    """The manifest of model:version and the path of its ONNX file."""
    vdir = os.path.join(model_dir, model, str(version))
    with open(os.path.join(vdir, "model.toml"), "rb") as f:
        manifest = tomllib.load(f)
    return manifest, os.path.join(vdir, "model.onnx")


class Preprocess:
    """The manifest's `[input]` and `[preprocess]`, applied with Pillow + numpy."""

    def __init__(self, manifest):
        inp = manifest["input"]
        pre = manifest.get("preprocess", {})
        self.width = int(inp["width"])
        self.height = int(inp["height"])
        self.layout = inp.get("layout", "nchw")
        self.color = inp.get("color", "rgb")
        self.dtype = inp.get("dtype", "float32")
        self.name = inp["name"]
        self.resize = pre.get("resize", "stretch")
        self.crop = pre.get("crop", "none")
        self.resize_to = pre.get("resize_to")
        filt = pre.get("filter", "bilinear")
        if filt not in FILTERS:
            raise SystemExit(f"filter {filt!r} is not supported by this script")
        self.filter = FILTERS[filt]
        if self.resize not in ("shorter_side", "stretch"):
            raise SystemExit(f"resize {self.resize!r} is not supported by this script")
        if self.layout not in ("nchw", "nhwc") or self.color not in ("rgb", "bgr"):
            raise SystemExit(f"layout {self.layout!r} / color {self.color!r} not supported")
        mean = np.array(pre.get("mean", [0.0, 0.0, 0.0]), dtype=np.float32)
        std = np.array(pre.get("std", [1.0, 1.0, 1.0]), dtype=np.float32)
        self.mean = mean.reshape(1, 1, 3)
        self.inv_std = (1.0 / std).reshape(1, 1, 3)

    def needed_shorter_side(self, size):
        """The draft (DCT-scaled JPEG) size the resize still needs."""
        w, h = size
        if self.resize == "shorter_side" and self.crop == "center":
            s = (self.resize_to or min(self.width, self.height)) / min(w, h)
        else:
            s = max(self.width / w, self.height / h)
        return (math.ceil(w * s), math.ceil(h * s))

    def window(self, size):
        """Source window (x0, y0, x1, y1) that ends up in the input: the
        centre crop of a shorter-side resize, computed as InferQ does."""
        sw, sh = size
        tw, th = self.width, self.height
        if not (self.resize == "shorter_side" and self.crop == "center"):
            return (0, 0, sw, sh)
        s = (self.resize_to or min(tw, th)) / min(sw, sh)
        rw, rh = round(sw * s), round(sh * s)
        cx = max(math.floor((rw - tw) / 2), 0) / s
        cy = max(math.floor((rh - th) / 2), 0) / s
        cw, ch = min(tw / s, sw), min(th / s, sh)
        x0, y0 = round(cx), round(cy)
        w = min(max(round(cw), 1), sw - min(x0, sw - 1))
        h = min(max(round(ch), 1), sh - min(y0, sh - 1))
        return (x0, y0, x0 + w, y0 + h)

    def __call__(self, data):
        img = Image.open(io.BytesIO(data))
        # JPEG: let libjpeg scale down by 1/2, 1/4, 1/8 when the result is
        # still large enough, as InferQ's decoder does.
        img.draft("RGB", self.needed_shorter_side(img.size))
        img = ImageOps.exif_transpose(img).convert("RGB")
        box = self.window(img.size)
        img = img.resize((self.width, self.height), self.filter, box=box)
        a = np.asarray(img)
        if self.color == "bgr":
            a = a[:, :, ::-1]
        if self.dtype == "float32":
            a = (a.astype(np.float32) - self.mean) * self.inv_std
        elif self.dtype == "int32":
            a = a.astype(np.int32)
        if self.layout == "nchw":
            a = a.transpose(2, 0, 1)
        return np.ascontiguousarray(a)[np.newaxis]


def session(model_path):
    """An ONNX Runtime session as InferQ's worker builds one."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])


def one(sess, pre, data):
    """decode + preprocess + inference + softmax/top-5; the top-5 indices."""
    x = pre(data)
    logits = sess.run(None, {pre.name: x})[0][0].astype(np.float64)
    e = np.exp(logits - logits.max())
    probs = e / e.sum()
    return np.argsort(-probs)[:5].tolist()


def child(core, args, barrier, out):
    os.sched_setaffinity(0, {core})
    manifest, model_path = load_manifest(args.model_dir, args.model, args.version)
    pre = Preprocess(manifest)
    sess = session(model_path)
    with open(args.image, "rb") as f:
        data = f.read()
    end = time.perf_counter() + args.warmup
    top5 = one(sess, pre, data)
    while time.perf_counter() < end:
        one(sess, pre, data)
    barrier.wait()
    lat = []
    start = time.perf_counter()
    end = start + args.secs
    while True:
        t = time.perf_counter()
        if t >= end:
            break
        one(sess, pre, data)
        lat.append(time.perf_counter() - t)
    out.put({"core": core, "lat": lat, "secs": time.perf_counter() - start, "top5": top5})


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list (seconds -> ms)."""
    if not sorted_values:
        return 0.0
    i = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[i - 1] * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default="models")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--version", default="1")
    ap.add_argument("--image", required=True)
    ap.add_argument("--secs", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--cores", default="", help="comma-separated; default: every allowed core")
    args = ap.parse_args()
    cores = (
        [int(c) for c in args.cores.split(",") if c]
        if args.cores
        else sorted(os.sched_getaffinity(0))
    )
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(cores))
    out = ctx.Queue()
    procs = [ctx.Process(target=child, args=(c, args, barrier, out)) for c in cores]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a pipeline process failed (exit {p.exitcode})")
    lat = sorted(x for r in results for x in r["lat"])
    top5s = {tuple(r["top5"]) for r in results}
    if len(top5s) != 1:
        raise SystemExit(f"processes disagree on the top-5: {top5s}")
    top5 = list(top5s.pop())
    print(
        json.dumps(
            {
                "images_per_sec": sum(len(r["lat"]) / r["secs"] for r in results),
                "p50_ms": percentile(lat, 50),
                "p99_ms": percentile(lat, 99),
                "images": len(lat),
                "secs": max(r["secs"] for r in results),
                "processes": len(procs),
                "cores": cores,
                "top1": top5[0],
                "top5": top5,
                "versions": {
                    "python": sys.version.split()[0],
                    "pillow": Image.__version__,
                    "numpy": np.__version__,
                    "onnxruntime": ort.__version__,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
