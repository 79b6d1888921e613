#!/usr/bin/env python3
"""Drives InferQ with the KServe Python SDK's own REST client.

Used by tests/tests/kserve.rs, run with .cache/kserve-venv (scripts/requirements-kserve.txt):
`kserve.InferenceRESTClient` is what KServe users call, and it reads InferQ's answers its own
way (health bodies, 2xx-or-not for model readiness, the `inference-header-content-length`
framing, the `error` member in its exceptions). The script makes the calls below against a
running API and prints one JSON object with what it observed; the Rust test asserts on it.

- v2: server live / ready, model ready (a known and an unknown model);
- v2: two encoded photos as one binary BYTES input, and one as JSON (non-binary) BYTES, the
  probabilities read back through `InferResponse.as_numpy`;
- v2: an unknown model, to see the server's `error` text in the SDK's exception;
- v1 (the TF Serving shape KServe's v1 protocol shares): `:predict` with `b64` instances.

Usage: kserve_sdk_client.py --url http://127.0.0.1:PORT --model NAME --images DIR
"""

import argparse
import asyncio
import base64
import json
import sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def run(url: str, model: str, images: str) -> dict:
    def read(name: str) -> bytes:
        with open(f"{images}/{name}", "rb") as f:
            return f.read()

    cat, coffee = read("chelsea.png"), read("coffee.png")
    out: dict = {}
    v2 = InferenceRESTClient(RESTConfig(protocol="v2", timeout=120, retries=0))
    try:
        out["live"] = await v2.is_server_live(url)
        out["ready"] = await v2.is_server_ready(url)
        out["model_ready"] = await v2.is_model_ready(url, model)
        out["unknown_model_ready"] = await v2.is_model_ready(url, "no-such-model")

        # Two photos as one binary BYTES input (length-prefixed, after the JSON header).
        photos = InferInput("image", [2], "BYTES")
        photos.set_data_from_numpy(np.array([cat, coffee], dtype=np.object_), binary_data=True)
        res = await v2.infer(url, InferRequest(model, [photos], request_id="sdk-binary"), model)
        probs = res.outputs[0].as_numpy()
        out["binary"] = {
            "id": res.id,
            "model_name": res.model_name,
            "output": res.outputs[0].name,
            "shape": list(probs.shape),
            "top1": [int(i) for i in probs.argmax(axis=1)],
        }

        # One photo as base64 text in a plain JSON request.
        text = InferInput("image", [1], "BYTES")
        text.set_data_from_numpy(
            np.array([base64.b64encode(coffee).decode()], dtype=np.object_), binary_data=False
        )
        res = await v2.infer(url, InferRequest(model, [text]), model)
        out["json_top1"] = int(res.outputs[0].as_numpy().argmax(axis=1)[0])

        try:
            await v2.infer(url, InferRequest("no-such-model", [text]), "no-such-model")
            out["unknown_model_error"] = None
        except httpx.HTTPStatusError as e:
            out["unknown_model_error"] = {"status": e.response.status_code, "message": str(e)}
    finally:
        await v2.close()

    v1 = InferenceRESTClient(RESTConfig(protocol="v1", timeout=120, retries=0))
    try:
        body = {"instances": [{"b64": base64.b64encode(cat).decode()}]}
        res = await v1.infer(url, body, model)
        out["v1_predictions"] = len(res.get("predictions", []))
        first = res["predictions"][0]
        out["v1_first"] = first if not isinstance(first, list) else {"len": len(first)}
    finally:
        await v1.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--images", required=True)
    args = ap.parse_args()
    json.dump(asyncio.run(run(args.url, args.model, args.images)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
