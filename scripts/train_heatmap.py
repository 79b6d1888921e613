#!/usr/bin/env python3
"""Train the seed heatmap model (bright spots) and export it to ONNX:
models/heatmap-bright/1/model.onnx.

Why: InferQ's seed use case is a small fully convolutional net that turns an image into a
one-channel heatmap. No registry ships such weights, so this script reproduces the use case
honestly: it trains one, in seconds on a CPU, on generated data whose right answer is known.

Data (numpy, fixed seeds): 48x48 RGB images in 0..1 = a smooth background (level 0.05..0.35
plus a linear gradient) + 1..4 Gaussian blobs (peak 0.15..0.6 above it, sigma 2..8 px) +
Gaussian noise (sigma 0.02..0.08) + 0..6 "hot pixels" (single pixels at 1.0, the brightest
things in the image but not what we want), all tinted by one random colour per image.
Target: the heatmap of the brightest parts of the *clean* image (no noise, no hot pixels):
clip((luma - 0.45) / 0.5, 0, 1), where luma is the clean brightness. So the net must ignore
noise and isolated hot pixels and grade blobs by brightness; a naive threshold of the raw
image cannot (the check measures both).

Net (Keras, TF 2.21): 4 ReLU 3x3 convolutions of 16 channels with dilations 1, 2, 4, 2
(receptive field 19x19: 9 px each side) and a 1x1 convolution with a sigmoid; 7,425
parameters; `same` padding and no strides, so any H x W works and the output has the input's
size. Adam 3e-3, binary cross-entropy, 3000 images, 6 epochs of batch 32 (~25-45 s on 2 busy
cores). Mean squared error does not work here: with ~8% of target pixels above 0 the sigmoid
collapses to all-zero (measured: loss stuck at 0.0051, heatmap 0 everywhere). Fewer steps
(2000 images x 4 epochs) compress the scale: 0.60 at a blob whose target is 0.48, 0.64 where
it is 0.74. Plain 3x3 convolutions (radius 4) train ~25% faster but reach a 50% higher error
(MAE 0.0029 vs 0.0019, both at 2000 images x 5 epochs).
tf.keras seeds and op determinism are fixed (SEED); a rerun on the same machine gives the
same weights.

Export: tf2onnx (opset 13) from a tf.function with a [None, None, None, 3] signature:
input `image` float32 [N, H, W, 3] RGB NHWC 0..1 (pixel / 255), output `heatmap` float32
[N, H, W, 1] 0..1. Tiling needs 9 px of context per side (the receptive field); the check
proves tiles with that context equal the whole image.

Checks (always run; --check-only skips the training):
1. ONNX equals the Keras model (max abs difference < 1e-4) on the test image;
2. 200 held-out generated 64x64 images: mean absolute error of the heatmap vs the target, against
   the naive baseline (the same formula on the raw, noisy image): the net must be better;
3. a generated 320x240 test image (not the training size) with three blobs of peak 0.30,
   0.42, 0.58 and hot pixels: the raw image's maximum is a hot pixel (so the test means
   something), the heatmap's maximum lies within 3 px of the brightest blob's centre, the
   heatmap is higher at the brightest blob than at the other two, and at each blob centre it is
   within 0.1 of the target;
4. 50 random images of random sizes (48..200 px), 2-3 blobs, the brightest peaking 0.45..0.6
   and the others >= 0.1 below it: the
   heatmap's maximum lies on the brightest blob (within its sigma + 2 px) in >= 95% of them;
5. tiles (64 px, 9 px context) equal the whole image; one-thread time at 256x256 and 640x480.

Usage: .cache/tf-venv/bin/python scripts/train_heatmap.py [--out models/heatmap-bright/1/model.onnx]
       [--check-only]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tf_onnx_util import export_keras, median_ms, session  # noqa: E402

SEED = 20261204
TRAIN_N, TRAIN_SIZE, EPOCHS, BATCH = 3000, 48, 6, 32
LO, SPAN = 0.45, 0.5            # target = clip((clean_luma - LO) / SPAN, 0, 1)
CONTEXT = 9                     # receptive radius in px (dilations 1 + 2 + 4 + 2)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def blob_field(h, w, blobs):
    """Sum of Gaussian blobs (cy, cx, peak, sigma) on an h x w grid."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    f = np.zeros((h, w), np.float32)
    for cy, cx, a, s in blobs:
        f += a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return f


def render(rng, h, w, blobs, hot):
    """(rgb 0..1 [h, w, 3], target 0..1 [h, w]) for the given blobs and number of hot pixels."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    level = rng.uniform(0.05, 0.35)
    gy, gx = rng.uniform(-0.1, 0.1, 2)
    background = level + gy * (yy / h - 0.5) + gx * (xx / w - 0.5)
    clean = np.clip(background + blob_field(h, w, blobs), 0, 1)
    target = np.clip((clean - LO) / SPAN, 0, 1)
    tint = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    tint /= float(LUMA @ tint)                       # keeps the luma of a grey pixel
    noisy = clean + rng.normal(0, rng.uniform(0.02, 0.08), (h, w)).astype(np.float32)
    rgb = np.clip(noisy[..., None] * tint, 0, 1)
    for _ in range(hot):
        rgb[rng.integers(h), rng.integers(w)] = 1.0
    return rgb.astype(np.float32), target.astype(np.float32)


def random_blobs(rng, h, w, n, peaks=None, margin=0):
    """n blobs (cy, cx, peak, sigma): centres at least `margin` px inside, sigma 2..8 px."""
    blobs = []
    for i in range(n):
        a = rng.uniform(0.15, 0.6) if peaks is None else peaks[i]
        blobs.append((rng.uniform(margin, h - margin), rng.uniform(margin, w - margin), a, rng.uniform(2, 8)))
    return blobs


def dataset(rng, n, size=TRAIN_SIZE):
    xs, ys = np.empty((n, size, size, 3), np.float32), np.empty((n, size, size, 1), np.float32)
    for i in range(n):
        blobs = random_blobs(rng, size, size, int(rng.integers(1, 5)))
        xs[i], ys[i, ..., 0] = render(rng, size, size, blobs, int(rng.integers(0, 7)))
    return xs, ys


def build():
    import keras
    inp = keras.Input((None, None, 3), name="image")
    x = inp
    for d in (1, 2, 4, 2):
        x = keras.layers.Conv2D(16, 3, padding="same", dilation_rate=d, activation="relu")(x)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", name="heatmap")(x)
    return keras.Model(inp, out)


def train(out):
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    t0 = time.perf_counter()
    xs, ys = dataset(np.random.default_rng(SEED), TRAIN_N)
    t1 = time.perf_counter()
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    hist = model.fit(xs, ys, batch_size=BATCH, epochs=EPOCHS, shuffle=True, verbose=0)
    t2 = time.perf_counter()
    losses = ", ".join(f"{v:.5f}" for v in hist.history["loss"])
    print(f"data {t1 - t0:.1f}s ({TRAIN_N} x {TRAIN_SIZE}x{TRAIN_SIZE}), training {t2 - t1:.1f}s "
          f"({model.count_params()} parameters); loss per epoch: {losses}")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    export_keras(model, out, "image", "heatmap", (("batch", "height", "width"), ("batch", "height", "width")))
    print(f"wrote {out} ({os.path.getsize(out)} bytes) in {time.perf_counter() - t2:.1f}s")
    return model


def heat(sess, rgb):
    return sess.run(["heatmap"], {"image": rgb[None]})[0][0, ..., 0]


def tiled(sess, x, tile, ctx):
    h, w, _ = x.shape
    out = np.zeros((h, w), np.float32)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa, yb, xb = max(y0 - ctx, 0), max(x0 - ctx, 0), min(y1 + ctx, h), min(x1 + ctx, w)
            r = heat(sess, np.ascontiguousarray(x[ya:yb, xa:xb]))
            out[y0:y1, x0:x1] = r[y0 - ya:y1 - ya, x0 - xa:x1 - xa]
    return out


def test_image():
    """320x240, three blobs (peaks 0.30, 0.42, 0.58 over a ~0.2 background) and 8 hot pixels."""
    rng = np.random.default_rng(7)
    blobs = [(60, 80, 0.30, 7.0), (170, 250, 0.42, 6.0), (150, 120, 0.58, 5.0)]
    rgb, target = render(rng, 240, 320, blobs, hot=8)
    return rgb, target, blobs


def check(path, model=None):
    sess = session(path)
    (i,), (o,) = sess.get_inputs(), sess.get_outputs()
    print(f"I/O: {i.name} {i.type} {i.shape} -> {o.name} {o.type} {o.shape}")
    assert (i.name, i.type, i.shape) == ("image", "tensor(float)", ["batch", "height", "width", 3]), i
    assert (o.name, o.type, o.shape) == ("heatmap", "tensor(float)", ["batch", "height", "width", 1]), o
    bad = []
    rgb, target, blobs = test_image()
    hm = heat(sess, rgb)
    if model is not None:
        diff = float(np.abs(model(rgb[None], training=False).numpy()[0, ..., 0] - hm).max())
        print(f"ONNX vs Keras on the test image: max abs diff {diff:.2e}")
        if diff > 1e-4:
            bad.append(f"ONNX differs from Keras by {diff}")
    # 2. held-out error vs the naive threshold of the raw image
    xs, ys = dataset(np.random.default_rng(SEED + 1), 200, 64)
    pred = sess.run(["heatmap"], {"image": xs})[0]
    naive = np.clip((xs @ LUMA - LO) / SPAN, 0, 1)[..., None]
    mae, mae_naive = float(np.abs(pred - ys).mean()), float(np.abs(naive - ys).mean())
    print(f"200 held-out 64x64 images: MAE {mae:.4f} (naive threshold of the raw image: {mae_naive:.4f})")
    if mae >= mae_naive:
        bad.append(f"net MAE {mae:.4f} not below the naive {mae_naive:.4f}")
    # 3. the test image
    (ry, rx) = np.unravel_index(np.argmax(rgb @ LUMA), hm.shape)
    (py, px) = np.unravel_index(np.argmax(hm), hm.shape)
    by, bx = blobs[2][0], blobs[2][1]
    at = [float(hm[int(round(cy)), int(round(cx))]) for cy, cx, _, _ in blobs]
    want = [float(target[int(round(cy)), int(round(cx))]) for cy, cx, _, _ in blobs]
    print(f"test image 320x240: raw maximum at (x {rx}, y {ry}) = {float((rgb @ LUMA)[ry, rx]):.2f}; "
          f"heatmap maximum {hm.max():.3f} at (x {px}, y {py}); brightest blob at (x {bx}, y {by}); "
          f"heatmap at the blob centres (peaks 0.30 / 0.42 / 0.58): {' / '.join(f'{v:.3f}' for v in at)} "
          f"(target {' / '.join(f'{v:.3f}' for v in want)})")
    if np.hypot(ry - by, rx - bx) < 8:
        bad.append("the raw maximum is on the blob: the test image does not test hot-pixel suppression")
    if np.hypot(py - by, px - bx) > 3:
        bad.append(f"heatmap maximum ({px}, {py}) not within 3 px of the brightest blob ({bx}, {by})")
    if not at[2] > max(at[0], at[1]):
        bad.append(f"heatmap at the blobs {at}: the brightest is not the highest")
    if max(abs(a - b) for a, b in zip(at, want)) > 0.1:
        bad.append(f"heatmap at the blobs {at} not within 0.1 of the target {want}")
    # 4. random scenes of random sizes
    rng = np.random.default_rng(SEED + 2)
    hits, n = 0, 50
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(48, 201, 2))
        k = int(rng.integers(2, 4))
        top = rng.uniform(0.45, 0.6)
        peaks = sorted(rng.uniform(0.15, top - 0.1, k - 1).tolist()) + [top]
        while True:   # blobs apart, so "on the brightest blob" is unambiguous
            bl = random_blobs(rng, h, w, k, peaks, margin=12)
            if all(np.hypot(p[0] - q[0], p[1] - q[1]) > 4 * (p[3] + q[3]) / 2 + 6
                   for j, p in enumerate(bl) for q in bl[j + 1:]):
                break
        img, _ = render(rng, h, w, bl, int(rng.integers(0, 7)))
        m = heat(sess, img)
        y, x = np.unravel_index(np.argmax(m), m.shape)
        cy, cx, _, s = bl[-1]
        hits += np.hypot(y - cy, x - cx) <= s + 2
    print(f"{n} random scenes (48..200 px, 2-3 blobs): heatmap maximum on the brightest blob in {hits}/{n}")
    if hits < 0.95 * n:
        bad.append(f"maximum on the brightest blob in only {hits}/{n} scenes")
    # 5. tiles, timing
    diff = float(np.abs(tiled(sess, rgb, 64, CONTEXT) - hm).max())
    diff0 = float(np.abs(tiled(sess, rgb, 64, 0) - hm).max())
    print(f"64-px tiles with {CONTEXT} px context: max diff to whole image {diff:.2e} (without context {diff0:.3f})")
    if diff > 1e-4:
        bad.append(f"tiles with {CONTEXT} px context differ by {diff}")
    for w, h in ((256, 256), (640, 480)):
        x = np.random.default_rng(0).random((1, h, w, 3), np.float32)
        ms = median_ms(lambda: sess.run(["heatmap"], {"image": x}))
        print(f"  {w}x{h}: {ms:.1f} ms (1 thread)")
    if bad:
        raise SystemExit("heatmap check failed:\n  " + "\n  ".join(bad))
    print("  heatmap peaks on the brightest blob, hot pixels ignored")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models/heatmap-bright/1/model.onnx")
    ap.add_argument("--check-only", action="store_true", help="only check an existing --out")
    args = ap.parse_args()
    model = None if args.check_only else train(args.out)
    check(args.out, model)


if __name__ == "__main__":
    main()
