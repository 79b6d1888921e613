"""The client against a real InferQ server (``INFERQ_TEST_URL``; see conftest.py).

The server must serve ``efficientnet-lite0`` (default), ``tiny-invert`` (an
image model) and ``tiny-slow`` (~28 ms a job, to have jobs still queued).
"""

from __future__ import annotations

import asyncio
import io
import shutil
import uuid
from pathlib import Path

import pytest

import inferq
from inferq import AsyncClient, BatchCounts, Client, RetryPolicy

CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def top1(result: dict[str, object]) -> int:
    top = result["top_k"]
    assert isinstance(top, list)
    return int(top[0]["index"])


def test_submit_path_bytes_and_file_object(url: str, images: Path) -> None:
    photo = images / "chelsea.png"
    with Client(url) as c:
        job = c.submit(photo, top_k=5)
        assert job.status in {"queued", "running", "succeeded"} and job.model == "efficientnet-lite0"
        assert top1(job.result(timeout=60)) in CATS
        assert job.status == "succeeded" and job.timings and job.timings["total_ms"] > 0
        assert job.raw["input"]["format"] == "png"
        for image in (str(photo), photo.read_bytes(), io.BytesIO(photo.read_bytes())):
            assert top1(c.submit(image, top_k=3).result(timeout=60)) in CATS
        again = c.get(job.id)
        assert again.id == job.id and again.prediction == job.prediction


def test_idempotency_key_finds_the_same_job(url: str, images: Path) -> None:
    key = f"py-{uuid.uuid4()}"
    with Client(url) as c:
        a = c.submit(images / "coffee.png", idempotency_key=key)
        b = c.submit(images / "coffee.png", idempotency_key=key)
        assert a.id == b.id
        with pytest.raises(inferq.Unprocessable) as e:
            c.submit(images / "chelsea.png", idempotency_key=key)
        assert e.value.code == "idempotency_key_reused"


def test_failing_job_raises_job_failed_with_code(url: str, images: Path) -> None:
    corrupt = (images / "chelsea.png").read_bytes()[:100]  # header fine, pixels cut off
    with Client(url) as c:
        job = c.submit(corrupt)
        with pytest.raises(inferq.JobFailed) as e:
            job.result(timeout=60)
    assert e.value.code == "decode_failed" and e.value.status == "failed" and e.value.message
    assert job.error is not None and job.error.code == "decode_failed"


def test_refusals_are_typed_problems(url: str, images: Path) -> None:
    with Client(url) as c:
        with pytest.raises(inferq.NotFound) as nf:
            c.submit(images / "chelsea.png", model="no-such-model")
        assert nf.value.code == "model_not_found" and nf.value.type.endswith("model_not_found")
        assert nf.value.title and nf.value.detail
        with pytest.raises(inferq.UnsupportedMedia) as um:
            c.submit(b"definitely not an image")
        assert um.value.code == "unsupported_image_format"
        with pytest.raises(inferq.NotFound) as jn:
            c.get(str(uuid.uuid4()))
        assert jn.value.code == "job_not_found"


def test_cancel_a_queued_job(url: str, images: Path) -> None:
    data = (images / "coffee.png").read_bytes()
    with Client(url) as c:
        queue = [c.submit(data, model="tiny-slow") for _ in range(25)]
        last = queue[-1].cancel()
        assert last.status == "canceled"
        with pytest.raises(inferq.JobFailed) as e:
            last.result(timeout=5)
        assert e.value.code == "canceled"
        first = queue[0].wait(timeout=60)
        with pytest.raises(inferq.Conflict) as c409:
            first.cancel()
        assert c409.value.code == "job_finished"


def test_output_of_an_image_model(url: str, images: Path) -> None:
    with Client(url) as c:
        job = c.submit(images / "coffee.png", model="tiny-invert")
        result = job.result(timeout=60)
        assert result["kind"] == "image"
        png = job.output()
        assert png.startswith(PNG_MAGIC) and len(png) > 100
        with pytest.raises(inferq.NotFound) as e:
            job.output(view="colormap")  # not a heatmap: no such view
        assert e.value.code == "output_not_found"


def test_models(url: str) -> None:
    with Client(url) as c:
        m = c.models()
    names = {x["name"] for x in m["models"]}
    assert m["default_model"] == "efficientnet-lite0"
    assert {"efficientnet-lite0", "tiny-invert"} <= names


def test_file_uri_reference(url: str, images: Path, file_root: Path) -> None:
    target = file_root / f"ref-{uuid.uuid4().hex}.png"
    shutil.copy(images / "chelsea.png", target)
    with Client(url) as c:
        assert top1(c.submit(target.as_uri(), top_k=3).result(timeout=60)) in CATS


def test_batch_over_a_file_prefix_with_progress(url: str, images: Path, file_root: Path) -> None:
    base = file_root / f"batch-{uuid.uuid4().hex}"
    (base / "in" / "a").mkdir(parents=True)
    shutil.copy(images / "chelsea.png", base / "in" / "a" / "cat.png")
    shutil.copy(images / "coffee.png", base / "in" / "a" / "coffee.png")
    (base / "in" / "broken.png").write_bytes((images / "chelsea.png").read_bytes()[:100])
    seen: list[tuple[BatchCounts, str]] = []
    with Client(url) as c:
        b = c.batch(prefix=(base / "in").as_uri() + "/", output=(base / "out").as_uri() + "/", top_k=2)
        assert b.state in {"queued", "running"}
        b.wait(timeout=120, progress=lambda n, st: seen.append((n, st)), poll_interval=0.05)
    assert b.state == "succeeded", b.raw
    assert (b.counts.total, b.counts.succeeded, b.counts.failed) == (3, 2, 1)
    assert seen[0][1] in {"queued", "running"} and seen[-1] == (b.counts, "succeeded")
    # results, errors_stats (Vertex's name) and errors (the earlier name)
    assert len(b.files) == 3 and (base / "out" / "a" / "cat.png.json").is_file()


def test_async_submit_result_and_failure(url: str, images: Path) -> None:
    async def main() -> None:
        async with AsyncClient(url) as c:
            jobs = await asyncio.gather(*(c.submit(images / "chelsea.png", top_k=3) for _ in range(3)))
            results = await asyncio.gather(*(j.result(timeout=60) for j in jobs))
            assert all(top1(r) in CATS for r in results)
            bad = await c.submit((images / "chelsea.png").read_bytes()[:100])
            with pytest.raises(inferq.JobFailed) as e:
                await bad.result(timeout=60)
            assert e.value.code == "decode_failed"
            slow = [await c.submit(images / "coffee.png", model="tiny-slow") for _ in range(20)]
            assert (await slow[-1].cancel()).status == "canceled"
            out = await c.submit(images / "coffee.png", model="tiny-invert")
            await out.wait(timeout=60)
            assert (await out.output()).startswith(PNG_MAGIC)
            assert "models" in await c.models()

    asyncio.run(main())


@pytest.mark.asyncio
async def test_async_batch(url: str, images: Path, file_root: Path) -> None:
    base = file_root / f"abatch-{uuid.uuid4().hex}"
    (base / "in").mkdir(parents=True)
    shutil.copy(images / "coffee.png", base / "in" / "coffee.png")
    async with AsyncClient(url) as c:
        b = await c.batch(prefix=(base / "in").as_uri(), output=(base / "out").as_uri())
        counts: list[BatchCounts] = []
        await b.wait(timeout=120, progress=lambda n, st: counts.append(n), poll_interval=0.05)
    assert b.state == "succeeded" and b.counts.succeeded == 1 and counts[-1].succeeded == 1


def test_api_key_and_429_retry_after(limited: tuple[str, str], images: Path) -> None:
    """Against a server with keys on and ``--max-backlog 1`` (default model tiny-slow)."""
    url, key = limited
    data = (images / "coffee.png").read_bytes()
    with Client(url) as anon, pytest.raises(inferq.Unauthorized) as e401:
        anon.models()
    assert e401.value.code == "unauthorized"
    with Client(url, api_key=key, retries=0) as c:
        refused = None
        for _ in range(50):
            try:
                c.submit(data)
            except inferq.Overloaded as e:
                refused = e
                break
        assert refused is not None, "a backlog of 1 must refuse a burst"
        assert refused.status == 429 and refused.code == "overloaded"
        assert refused.retry_after is not None and refused.retry_after > 0
    # With retries the same burst gets through: each refusal waits Retry-After
    # (capped at max_delay here, to keep the test short) and sends the same key.
    # Without Retry-After the first wait would be base_delay (0.01 s).
    policy = RetryPolicy(retries=50, base_delay=0.01, max_delay=0.2, jitter=0.0)
    with Client(url, api_key=key, retries=policy) as c:
        slept: list[float] = []
        real = c._sleep

        def record(d: float) -> None:
            slept.append(d)
            real(d)

        c._sleep = record
        jobs = [c.submit(data) for _ in range(4)]
        for j in jobs:
            j.wait(timeout=60)
    assert slept and all(d == 0.2 for d in slept), slept
    assert len({j.id for j in jobs}) == 4
