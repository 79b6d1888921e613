#!/usr/bin/env python3
"""Fetch the test images into tests/images/ (reproducible; the results are committed).

- chelsea.png, coffee.png, astronaut.png: copied byte-for-byte from the PyPI wheel
  scikit-image==0.26.0 (skimage/data/, CC0 / public domain). PyPI is the only image
  source reachable from our machines, and a pinned wheel gives identical bytes every time.
- photo-640x480.jpg: coffee.png resized to 640 px wide and centre-cropped to 480 px high,
  JPEG quality 93 (~93 KB): a realistic camera-sized JPEG upload. Needs Pillow (venv).
- two-people.jpg: astronaut.png (left) beside camera.png (right; the cameraman, CC0, from the
  same wheel, greyscale), 1024x512, JPEG quality 90: a real photo of two people for the
  multi-person pose test.

Usage: .cache/venv/bin/python scripts/fetch_test_images.py [--out-dir tests/images]
"""
import argparse
import glob
import os
import subprocess
import sys
import zipfile

WHEEL = "scikit-image==0.26.0"
FILES = ["chelsea.png", "coffee.png", "astronaut.png"]
CACHE = ".cache/wheels"


def fetch_wheel():
    """Download the wheel once (any platform's wheel carries the same data files)."""
    found = glob.glob(os.path.join(CACHE, "scikit_image-0.26.0-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--cache-dir", ".cache/pip", "-d", CACHE, WHEEL], check=True)
        found = glob.glob(os.path.join(CACHE, "scikit_image-0.26.0-*.whl"))
    return sorted(found)[0]


def make_jpeg(src, dst, size=(640, 480)):
    from PIL import Image  # only this step needs Pillow
    img = Image.open(src).convert("RGB")  # coffee.png is 600x400 (3:2)
    # Scale so the image covers 640x480 (here: 720x480), then centre-crop.
    scale = max(size[0] / img.width, size[1] / img.height)
    w, h = round(img.width * scale), round(img.height * scale)
    img = img.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - size[0]) // 2, (h - size[1]) // 2
    img.crop((left, top, left + size[0], top + size[1])).save(dst, "JPEG", quality=93)


def make_two_people(wheel, astronaut, dst):
    import io
    from PIL import Image
    with zipfile.ZipFile(wheel) as z:
        camera = Image.open(io.BytesIO(z.read("skimage/data/camera.png"))).convert("RGB")
    left = Image.open(astronaut).convert("RGB")
    both = Image.new("RGB", (left.width + camera.width, max(left.height, camera.height)))
    both.paste(left, (0, 0))
    both.paste(camera, (left.width, 0))
    both.save(dst, "JPEG", quality=90)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default="tests/images")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    with zipfile.ZipFile(fetch_wheel()) as z:
        for name in FILES:
            with open(os.path.join(args.out_dir, name), "wb") as f:
                f.write(z.read(f"skimage/data/{name}"))
    make_jpeg(os.path.join(args.out_dir, "coffee.png"), os.path.join(args.out_dir, "photo-640x480.jpg"))
    make_two_people(fetch_wheel(), os.path.join(args.out_dir, "astronaut.png"),
                    os.path.join(args.out_dir, "two-people.jpg"))
    for name in FILES + ["photo-640x480.jpg", "two-people.jpg"]:
        p = os.path.join(args.out_dir, name)
        print(f"{p}: {os.path.getsize(p)} bytes")


if __name__ == "__main__":
    main()
