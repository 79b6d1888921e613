"""The real-image sets behind the int8 EfficientNet-Lite0 (scripts/quantize_int8.py).

Every image comes from the data folder of the PyPI wheel scikit-image==0.26.0 (CC0 / public
domain photos), downloaded once into .cache/wheels like scripts/fetch_test_images.py does; the
wheel's bytes are pinned, so both sets are identical on every machine.

The two sets are disjoint by *source photo*: no evaluation image is derived from a photo the
calibration saw.

- EVALUATION (240 images): 12 photos x 20 variants each (VARIANTS below: the photo, flips,
  a quarter turn, five 60 % crops, two more centre crops, two flipped crops, three rescales,
  a squeezed aspect ratio and two JPEG re-encodings).
- CALIBRATION (112 images): 10 other photos x 8 variants (the photo, a mirror, four 60 %
  corner crops, a 40 % centre crop, a half-size rescale) plus the first 32 faces of
  lfw_subset.npy (25x25 greyscale, upscaled by the pipeline like any small upload).

Preprocessing follows the manifest exactly as the Rust worker does it
(shared/vision/src/preprocess/fit.rs): for `shorter_side` + centre crop, the source window
that survives the crop is computed in source pixels and only that window is resized
(convolution filter, as fast_image_resize does) to the input size, then (pixel - mean) / std,
NCHW float32. Greyscale is spread to RGB and alpha dropped, as the decoder does.
"""
import glob
import io
import math
import os
import subprocess
import sys
import tomllib
import zipfile

import numpy as np
from PIL import Image

SKIMAGE_WHEEL = "scikit-image==0.26.0"
WHEEL_CACHE = ".cache/wheels"

EVAL_SOURCES = [
    "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png", "retina.jpg",
    "horse.png", "camera.png", "coins.png", "clock_motion.png", "moon.png", "gravel.png",
    "cell.png",
]
# Most colour photos go to calibration: activation ranges must cover colourful scenes.
CALIB_SOURCES = [
    "astronaut.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png", "color.png", "logo.png",
    "brick.png", "grass.png", "page.png", "text.png",
]
CALIB_FACES = 32


def wheel_path():
    """The scikit-image wheel, downloaded once (any platform's wheel has the same data)."""
    pattern = os.path.join(WHEEL_CACHE, "scikit_image-0.26.0-*.whl")
    found = sorted(glob.glob(pattern))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--disable-pip-version-check", "--cache-dir", ".cache/pip", "-d",
                        WHEEL_CACHE, SKIMAGE_WHEEL], check=True)
        found = sorted(glob.glob(pattern))
    return found[0]


def _crop(img, frac, fx, fy):
    """A `frac`-sized crop whose top-left sits at (fx, fy) of the free room."""
    w, h = max(1, round(img.width * frac)), max(1, round(img.height * frac))
    x, y = round((img.width - w) * fx), round((img.height - h) * fy)
    return img.crop((x, y, x + w, y + h))


def _scale(img, s):
    return img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))),
                      Image.Resampling.BICUBIC)


def _jpeg(img, quality):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


FLIP = Image.Transpose.FLIP_LEFT_RIGHT

# (name, transform) — 20 variants of each evaluation photo.
VARIANTS = [
    ("orig", lambda im: im),
    ("hflip", lambda im: im.transpose(FLIP)),
    ("vflip", lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM)),
    ("rot90", lambda im: im.transpose(Image.Transpose.ROTATE_90)),
    ("crop60-tl", lambda im: _crop(im, 0.6, 0, 0)),
    ("crop60-tr", lambda im: _crop(im, 0.6, 1, 0)),
    ("crop60-bl", lambda im: _crop(im, 0.6, 0, 1)),
    ("crop60-br", lambda im: _crop(im, 0.6, 1, 1)),
    ("crop60-c", lambda im: _crop(im, 0.6, 0.5, 0.5)),
    ("crop40-c", lambda im: _crop(im, 0.4, 0.5, 0.5)),
    ("crop80-c", lambda im: _crop(im, 0.8, 0.5, 0.5)),
    ("hflip-crop60-c", lambda im: _crop(im.transpose(FLIP), 0.6, 0.5, 0.5)),
    ("hflip-crop80-tl", lambda im: _crop(im.transpose(FLIP), 0.8, 0, 0)),
    ("scale50", lambda im: _scale(im, 0.5)),
    ("scale25", lambda im: _scale(im, 0.25)),
    ("scale150", lambda im: _scale(im, 1.5)),
    ("squeeze-w60", lambda im: im.resize((max(1, round(im.width * 0.6)), im.height),
                                         Image.Resampling.BICUBIC)),
    ("jpeg-q40", lambda im: _jpeg(im, 40)),
    ("scale50-jpeg-q85", lambda im: _jpeg(_scale(im, 0.5), 85)),
    ("crop60-c-jpeg-q60", lambda im: _jpeg(_crop(im, 0.6, 0.5, 0.5), 60)),
]

CALIB_VARIANTS = [VARIANTS[i] for i in (0, 1, 4, 5, 6, 7, 9, 13)]


def _photo(z, name):
    return Image.open(io.BytesIO(z.read(f"skimage/data/{name}"))).convert("RGB")


def evaluation_set():
    """[(label, PIL RGB image)]: 12 photos x 20 variants."""
    with zipfile.ZipFile(wheel_path()) as z:
        photos = [(n, _photo(z, n)) for n in EVAL_SOURCES]
    return [(f"{n}:{v}", f(im)) for n, im in photos for v, f in VARIANTS]


def calibration_set():
    """[(label, PIL RGB image)]: 10 other photos x 8 variants + 32 LFW faces."""
    with zipfile.ZipFile(wheel_path()) as z:
        photos = [(n, _photo(z, n)) for n in CALIB_SOURCES]
        faces = np.load(io.BytesIO(z.read("skimage/data/lfw_subset.npy")))
    out = [(f"{n}:{v}", f(im)) for n, im in photos for v, f in CALIB_VARIANTS]
    for i, face in enumerate(faces[:CALIB_FACES]):
        grey = Image.fromarray(np.round(face * 255).astype(np.uint8), "L").convert("RGB")
        out.append((f"lfw_subset.npy:{i}", grey))
    return out


def describe():
    return (f"evaluation: {len(EVAL_SOURCES)} scikit-image 0.26.0 photos x {len(VARIANTS)} variants "
            f"= {len(EVAL_SOURCES) * len(VARIANTS)} images ({', '.join(EVAL_SOURCES)}; variants "
            f"{', '.join(v for v, _ in VARIANTS)}); calibration (disjoint photos): "
            f"{len(CALIB_SOURCES)} photos x {len(CALIB_VARIANTS)} variants + {CALIB_FACES} LFW faces "
            f"= {len(CALIB_SOURCES) * len(CALIB_VARIANTS) + CALIB_FACES} images "
            f"({', '.join(CALIB_SOURCES)}, lfw_subset.npy)")


class Preprocessor:
    """The manifest's preprocessing, as the worker does it (classification manifests)."""

    FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
               "bicubic": Image.Resampling.BICUBIC}

    def __init__(self, manifest_path):
        with open(manifest_path, "rb") as f:
            m = tomllib.load(f)
        i, p = m["input"], m["preprocess"]
        if i.get("dtype", "float32") != "float32" or i.get("layout", "nchw") != "nchw":
            raise SystemExit(f"{manifest_path}: only float32 NCHW inputs are supported here")
        if p.get("resize") != "shorter_side" or p.get("crop", "center") != "center":
            raise SystemExit(f"{manifest_path}: only shorter_side + center crop is supported here")
        self.input_name = i["name"]
        self.output_name = m["output"]["name"]
        self.size = (int(i["width"]), int(i["height"]))
        self.resize_to = p.get("resize_to")
        self.bgr = i.get("color", "rgb") == "bgr"
        self.filter = self.FILTERS[p.get("filter", "bilinear")]
        self.mean = np.asarray(p.get("mean", [0.0, 0.0, 0.0]), np.float32)
        self.std = np.asarray(p.get("std", [1.0, 1.0, 1.0]), np.float32)

    def window(self, sw, sh):
        """fit.rs `center_window` (f32 arithmetic, Rust's round-half-away-from-zero)."""
        tw, th = self.size
        f = np.float32
        rnd = lambda v: math.floor(float(v) + 0.5)  # noqa: E731  (all values are >= 0)
        t = f(self.resize_to if self.resize_to is not None else min(tw, th))
        s = f(t / f(min(sw, sh)))
        rw, rh = rnd(f(sw) * s), rnd(f(sh) * s)
        cx = f(max(math.floor((rw - tw) / 2), 0)) / s
        cy = f(max(math.floor((rh - th) / 2), 0)) / s
        cw, ch = min(f(tw) / s, f(sw)), min(f(th) / s, f(sh))
        x0, y0 = rnd(cx), rnd(cy)
        w = min(max(rnd(cw), 1), sw - min(x0, sw - 1))
        h = min(max(rnd(ch), 1), sh - min(y0, sh - 1))
        return x0, y0, w, h

    def __call__(self, img):
        x0, y0, w, h = self.window(img.width, img.height)
        img = img.resize(self.size, self.filter, box=(x0, y0, x0 + w, y0 + h))
        x = (np.asarray(img, dtype=np.float32) - self.mean) / self.std
        if self.bgr:
            x = x[..., ::-1]
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])
