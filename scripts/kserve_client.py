#!/usr/bin/env python3
"""Drives InferQ's KServe v2 endpoints with the real Triton client.

Used by tests/tests/kserve.rs: `tritonclient[http]` (PyPI, by the Triton
authors) is an independent implementation of the v2 protocol and of its
binary-tensor and classification extensions, so what it can read is what any
v2 client can read. The script makes the calls below against a running API
and prints one JSON object with what it observed; the Rust test asserts on it.

- server live / ready, model ready, model metadata;
- two encoded photos in one `BYTES` input, binary (the client's default),
  full probability output read back as a binary FP32 tensor;
- one photo as base64 text in a JSON (non-binary) request, JSON output;
- the classification extension (`class_count=3`);
- the photo preprocessed here with numpy/Pillow into the model's NCHW FP32
  tensor, sent as a binary tensor;
- the same two photos with compression on: gzip request / deflate answer
  and deflate request / gzip answer (`request_compression_algorithm`,
  `response_compression_algorithm`);
- server metadata (extensions) and the model configuration
  (`get_model_config`);
- the health bodies (`{"live": true}`, `{"ready": true}`) as the KServe SDK
  reads them, with plain urllib;
- an unknown model, to see the error reach the client, and the raw error
  body of an unknown route under /v2.

Usage: kserve_client.py --url 127.0.0.1:PORT --model NAME --images DIR
"""

import argparse
import base64
import json
import sys
import urllib.error
import urllib.request

import numpy as np
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException


def nchw_tensor(path: str) -> np.ndarray:
    """EfficientNet-Lite0 preprocessing as its model.toml declares it:
    shorter side to 256 (bilinear), center crop 224, (x - 127) / 128, NCHW."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    scale = 256 / min(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    x = (np.asarray(img, dtype=np.float32) - 127.0) / 128.0
    return x.transpose(2, 0, 1)[np.newaxis, ...].copy()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--images", required=True)
    args = ap.parse_args()
    client = httpclient.InferenceServerClient(url=args.url, network_timeout=120.0)
    out = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(args.model),
        "metadata": client.get_model_metadata(args.model),
    }
    output_name = out["metadata"]["outputs"][0]["name"]

    def read(name: str) -> bytes:
        with open(f"{args.images}/{name}", "rb") as f:
            return f.read()

    cat, coffee = read("chelsea.png"), read("coffee.png")

    # Two photos, binary in and out.
    images = httpclient.InferInput("image", [2], "BYTES")
    images.set_data_from_numpy(np.array([cat, coffee], dtype=np.object_), binary_data=True)
    result = client.infer(
        args.model,
        [images],
        outputs=[httpclient.InferRequestedOutput(output_name, binary_data=True)],
        request_id="two-photos",
    )
    probs = result.as_numpy(output_name)
    out["binary"] = {
        "id": result.get_response()["id"],
        "shape": list(probs.shape),
        "dtype": str(probs.dtype),
        "top1": [int(i) for i in probs.argmax(axis=1)],
        "row_sums": [float(s) for s in probs.sum(axis=1)],
    }

    # One photo as base64 text, JSON in and out, at an explicit version.
    text = httpclient.InferInput("image", [1], "BYTES")
    text.set_data_from_numpy(
        np.array([base64.b64encode(cat).decode()], dtype=np.object_), binary_data=False
    )
    result = client.infer(
        args.model,
        [text],
        model_version="1",
        outputs=[httpclient.InferRequestedOutput(output_name, binary_data=False)],
    )
    out["json"] = {
        "top1": int(result.as_numpy(output_name).argmax(axis=1)[0]),
        "model_version": result.get_response()["model_version"],
    }

    # The classification extension.
    images = httpclient.InferInput("image", [1], "BYTES")
    images.set_data_from_numpy(np.array([coffee], dtype=np.object_), binary_data=True)
    result = client.infer(
        args.model,
        [images],
        outputs=[httpclient.InferRequestedOutput(output_name, class_count=3)],
    )
    out["classification"] = [
        s.decode() if isinstance(s, bytes) else s
        for s in result.as_numpy(output_name).reshape(-1).tolist()
    ]

    # A raw FP32 tensor, preprocessed here.
    input_meta = out["metadata"]["inputs"][0]
    tensor = httpclient.InferInput(input_meta["name"], [1, 3, 224, 224], "FP32")
    tensor.set_data_from_numpy(nchw_tensor(f"{args.images}/chelsea.png"), binary_data=True)
    result = client.infer(args.model, [tensor])
    out["tensor_top1"] = int(result.as_numpy(output_name).argmax(axis=1)[0])

    # Compression both ways, both algorithms: the same classes as uncompressed.
    out["compressed"] = {}
    for req_alg, resp_alg in [("gzip", "deflate"), ("deflate", "gzip")]:
        images = httpclient.InferInput("image", [2], "BYTES")
        images.set_data_from_numpy(np.array([cat, coffee], dtype=np.object_), binary_data=True)
        result = client.infer(
            args.model,
            [images],
            outputs=[httpclient.InferRequestedOutput(output_name, binary_data=True)],
            request_compression_algorithm=req_alg,
            response_compression_algorithm=resp_alg,
        )
        probs = result.as_numpy(output_name)
        out["compressed"][f"{req_alg}-{resp_alg}"] = [int(i) for i in probs.argmax(axis=1)]

    out["server_metadata"] = client.get_server_metadata()
    out["config"] = client.get_model_config(args.model)

    def raw_get(path: str):
        try:
            with urllib.request.urlopen(f"http://{args.url}{path}", timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    out["health_bodies"] = {
        "live": raw_get("/v2/health/live"),
        "ready": raw_get("/v2/health/ready"),
        "unknown_route": raw_get("/v2/models/no-such-model/nothing"),
    }

    # An error reaches the client as its exception, with the server's message.
    try:
        client.infer("no-such-model", [images])
        out["unknown_model_error"] = None
    except InferenceServerException as e:
        out["unknown_model_error"] = e.message()

    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
