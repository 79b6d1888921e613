#!/usr/bin/env python3
"""Check the converted EfficientNet-Lite0 with onnxruntime on known images.

Preprocessing is the one the manifest (model.toml) declares and the Rust worker does:
resize the shorter side to 256 (bilinear), centre-crop 224x224, RGB, (pixel - 127) / 128,
NCHW float32. Prints the top-5 (index, probability, label) per image and exits 1 if any
top-1 differs from the expected class.

Usage: .cache/venv/bin/python scripts/verify_model.py [--model M] [--labels L] [IMAGE=CLASS ...]
Default checks: tests/images/chelsea.png=282 (tiger cat), tests/images/coffee.png=967 (espresso).
"""
import argparse
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

DEFAULT_CHECKS = ["tests/images/chelsea.png=282", "tests/images/coffee.png=967"]


def preprocess(path, resize_to=256, crop=224):
    img = Image.open(path).convert("RGB")
    scale = resize_to / min(img.width, img.height)
    w, h = round(img.width * scale), round(img.height * scale)
    img = img.resize((w, h), Image.Resampling.BILINEAR)
    left, top = (w - crop) // 2, (h - crop) // 2
    img = img.crop((left, top, left + crop, top + crop))
    x = (np.asarray(img, dtype=np.float32) - 127.0) / 128.0  # HWC
    return x.transpose(2, 0, 1)[None]  # 1x3xHxW


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/efficientnet-lite0/1/model.onnx")
    ap.add_argument("--labels", default="models/efficientnet-lite0/labels.txt")
    ap.add_argument("checks", nargs="*", default=DEFAULT_CHECKS, help="IMAGE=EXPECTED_CLASS_INDEX")
    args = ap.parse_args()

    labels = open(args.labels, encoding="utf-8").read().splitlines()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # same as the worker: one thread per session
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])

    ok = True
    for check in args.checks:
        path, expected = check.rsplit("=", 1)
        x = preprocess(path)
        sess.run(["logits"], {"input": x})  # warm-up, so the timing below is steady-state
        t0 = time.perf_counter()
        (logits,) = sess.run(["logits"], {"input": x})
        ms = (time.perf_counter() - t0) * 1000
        probs = softmax(logits[0].astype(np.float64))
        top = np.argsort(-probs)[:5]
        good = int(top[0]) == int(expected)
        ok &= good
        print(f"{path}: expected {expected}, {'OK' if good else 'MISMATCH'} ({ms:.1f} ms)")
        for i in top:
            print(f"  {i:4d}  {probs[i]:.4f}  {labels[i]}")
    # Dynamic batch dim: a batch of 2 must give the same logits as two single runs.
    xb = np.concatenate([preprocess(c.rsplit("=", 1)[0]) for c in args.checks[:2]] * 2)[:2]
    (lb,) = sess.run(["logits"], {"input": xb})
    (l0,) = sess.run(["logits"], {"input": xb[:1]})
    if lb.shape != (2, 1000) or not np.allclose(lb[:1], l0, atol=1e-4):
        print(f"batch check failed: shape {lb.shape}")
        ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
