#!/usr/bin/env python3
"""Drives InferQ's TF Serving / Vertex AI REST routes the way their clients do.

Used by tests/tests/tf_serving.rs. TensorFlow itself is far too large to
install for a test, so this script sends, with plain `requests`, the requests
that TF Serving's REST API documentation and the Vertex AI SDK's
`Endpoint.predict` put on the wire, and reads the answers the way those
clients do (only the members they know). It prints one JSON object with what
it observed; the Rust test asserts on it.

- model status `GET /v1/models/{m}` (`model_version_status`) and
  `GET /v1/models/{m}/versions/1`;
- signature metadata `GET /v1/models/{m}/metadata`;
- row format with `signature_name`: `{"instances": [{"b64"}, ...]}` (TF
  Serving's documented base64 convention) and Vertex's image payload
  `{"instances": [{"image_bytes": {"b64"}, "key"}], "parameters"}`;
- columnar format: `{"inputs": {"image_bytes": [...]}}`, and the photo
  preprocessed here with numpy/Pillow into the model's NCHW tensor, sent as
  `{"inputs": {"<tensor input>": [tensor]}}`;
- failures: an unknown model, a bad instance, bad JSON, a wrong input name, reading the
  `error` member as TF Serving clients do.

Usage: tf_serving_client.py --url http://127.0.0.1:PORT --model NAME
"""

import argparse
import base64
import io
import json
import sys

import numpy as np
import requests
from PIL import Image


def png(rgb, size=(40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, rgb).save(out, format="PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def top_index(prediction):
    """The best class of an InferQ classification result."""
    return prediction["top_k"][0]["index"]


def call(method, url, **kw):
    r = requests.request(method, url, timeout=60, **kw)
    try:
        body = r.json()
    except ValueError:
        body = None
    return r.status_code, body


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True)
    args = ap.parse_args()
    base = f"{args.url}/v1/models/{args.model}"
    out = {}

    _, status = call("GET", base)
    out["status"] = status.get("model_version_status")
    _, vstatus = call("GET", f"{base}/versions/1")
    out["version_status"] = vstatus.get("model_version_status")

    _, meta = call("GET", f"{base}/metadata")
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    out["model_spec"] = meta["model_spec"]
    out["signature_inputs"] = {
        name: {"dtype": t["dtype"], "shape": [int(d["size"]) for d in t["tensor_shape"]["dim"]]}
        for name, t in sig["inputs"].items()
    }
    out["signature_outputs"] = sorted(sig["outputs"])
    out["method_name"] = sig["method_name"]

    red, blue = png((255, 0, 0)), png((0, 0, 255))
    # TF Serving's documented row request, with the signature named.
    code, rows = call(
        "POST",
        f"{base}:predict",
        json={"signature_name": "serving_default", "instances": [{"b64": b64(red)}, {"b64": b64(blue)}]},
    )
    out["rows_status"] = code
    out["rows"] = [top_index(p) for p in rows["predictions"]]
    # Vertex AI's image payload (what Endpoint.predict sends as JSON).
    code, vertex = call(
        "POST",
        f"{base}/versions/1:predict",
        json={"instances": [{"image_bytes": {"b64": b64(blue)}, "key": "b-1"}], "parameters": {"top_k": 2}},
    )
    out["vertex_status"] = code
    out["vertex"] = [top_index(p) for p in vertex["predictions"]]
    out["vertex_top_k_len"] = len(vertex["predictions"][0]["top_k"])

    # Columnar: named image input, and unnamed batch.
    code, cols = call("POST", f"{base}:predict", json={"inputs": {"image_bytes": [{"b64": b64(red)}, {"b64": b64(blue)}]}})
    out["columns_status"] = code
    out["columns_keys"] = sorted(cols)
    out["columns"] = [top_index(p) for p in cols["outputs"]]
    code, unnamed = call("POST", f"{base}:predict", json={"inputs": [{"b64": b64(blue)}]})
    out["unnamed_status"] = code
    out["unnamed"] = [top_index(p) for p in unnamed["outputs"]]

    # Columnar tensor input: the manifest's preprocessing done here
    # (stretch to the input size, x / 255, NCHW), by the signature's name.
    tensor_name = next(n for n, t in out["signature_inputs"].items() if t["dtype"] != "DT_STRING")
    _, c, h, w = out["signature_inputs"][tensor_name]["shape"]
    img = Image.open(io.BytesIO(red)).convert("RGB").resize((w, h), Image.BILINEAR)
    x = (np.asarray(img, dtype=np.float32) / 255.0).transpose(2, 0, 1)
    code, tens = call("POST", f"{base}:predict", json={"inputs": {tensor_name: [x.tolist()]}})
    out["tensor_status"] = code
    out["tensor"] = [top_index(p) for p in tens["outputs"]] if code == 200 else tens

    # Failures, read as TF Serving clients read them: status and `error`.
    errors = {}
    code, body = call("POST", f"{args.url}/v1/models/no-such-model:predict", json={"instances": [{"b64": b64(red)}]})
    errors["unknown_model"] = [code, body.get("error")]
    code, body = call("POST", f"{base}:predict", json={"instances": [{"b64": "%%%"}]})
    errors["bad_instance"] = [code, body.get("error")]
    code, body = call("POST", f"{base}:predict", data=b"{not json", headers={"Content-Type": "application/json"})
    errors["bad_json"] = [code, body.get("error")]
    code, body = call("POST", f"{base}:predict", json={"inputs": {"pixels": [[1]]}})
    errors["bad_input_name"] = [code, body.get("error")]
    out["errors"] = errors
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
