#!/usr/bin/env python3
"""Many concurrent HTTP/2 streams on one cleartext connection to InferQ.

Used by tests/tests/h2c.rs. An httpx client limited to a single connection
speaks HTTP/2 with prior knowledge (h2c) and:

1. submits `--jobs` images at once (all as concurrent streams), so that the
   server's single inference thread has seconds of backlog;
2. opens `--polls` long-polls at once on the last job, each waiting
   `--wait` seconds. The job is still queued behind the backlog, so every
   poll takes the whole wait: on one multiplexed connection they overlap
   and all end after about one wait; served one after another they would
   take `polls x wait`;
3. sends one KServe v2 inference request per colour at once and reads the
   answers back, which must match what HTTP/1.1 answers for the same image.

Prints one JSON object with what it saw; the Rust test asserts on it.

Usage: h2_streams.py --url http://127.0.0.1:PORT --model tiny-slow
"""

import argparse
import asyncio
import base64
import io
import json
import sys
import time

import httpx
from PIL import Image


def png(rgb) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), rgb).save(buf, format="PNG")
    return buf.getvalue()


async def run(url: str, model: str, jobs: int, polls: int, wait: float) -> dict:
    out: dict = {}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    timeout = httpx.Timeout(120.0)
    async with httpx.AsyncClient(
        base_url=url, http1=False, http2=True, limits=limits, timeout=timeout
    ) as client:
        image = png((200, 30, 30))

        async def submit():
            r = await client.post(
                f"/v1/jobs?model={model}", content=image, headers={"Content-Type": "image/png"}
            )
            return r.status_code, r.http_version, r.json().get("id")

        t0 = time.monotonic()
        submitted = await asyncio.gather(*(submit() for _ in range(jobs)))
        out["submit_secs"] = time.monotonic() - t0
        out["submit_statuses"] = sorted({s for s, _, _ in submitted})
        out["submit_versions"] = sorted({v for _, v, _ in submitted})
        last = submitted[-1][2]

        async def poll():
            t = time.monotonic()
            r = await client.get(f"/v1/jobs/{last}?wait={wait}")
            return r.status_code, r.http_version, r.json().get("status"), time.monotonic() - t

        t0 = time.monotonic()
        polled = await asyncio.gather(*(poll() for _ in range(polls)))
        out["polls_secs"] = time.monotonic() - t0
        out["poll_statuses"] = sorted({s for s, _, _, _ in polled})
        out["poll_versions"] = sorted({v for _, v, _, _ in polled})
        out["poll_job_states"] = sorted({j for _, _, j, _ in polled})
        out["poll_min_secs"] = min(d for _, _, _, d in polled)

        colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)]

        def infer_body(rgb) -> dict:
            data = base64.b64encode(png(rgb)).decode()
            return {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [data]}]}

        async def infer(rgb):
            r = await client.post(f"/v2/models/{model}/infer", json=infer_body(rgb))
            return r.status_code, r.http_version, r.json()["outputs"][0]["data"]

        h2 = await asyncio.gather(*(infer(c) for c in colours))
        out["infer_statuses"] = sorted({s for s, _, _ in h2})
        out["infer_versions"] = sorted({v for _, v, _ in h2})

    async with httpx.AsyncClient(base_url=url, timeout=timeout) as http1:
        same = []
        for rgb, (_, _, data) in zip(colours, h2):
            r = await http1.post(f"/v2/models/{model}/infer", json=infer_body(rgb))
            same.append(r.http_version == "HTTP/1.1" and r.json()["outputs"][0]["data"] == data)
        out["same_as_http1"] = same
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--jobs", type=int, default=150)
    ap.add_argument("--polls", type=int, default=16)
    ap.add_argument("--wait", type=float, default=1.0)
    args = ap.parse_args()
    result = asyncio.run(run(args.url, args.model, args.jobs, args.polls, args.wait))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
