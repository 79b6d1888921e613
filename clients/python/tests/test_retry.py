"""Retries, backoff, idempotency keys, request shapes and error mapping, on httpx.MockTransport."""

from __future__ import annotations

import json
import uuid
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import httpx
import pytest

import inferq
from inferq import AsyncClient, Client, RetryPolicy
from inferq._core import parse_retry_after

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JOB = {"id": "j1", "status": "queued", "model": "m", "version": 1}


def problem(status: int, code: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/problem+json"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    body = {"type": f"urn:inferq:problem:{code}", "title": code.title(), "status": status,
            "detail": f"detail of {code}", "code": code}
    return httpx.Response(status, headers=headers, content=json.dumps(body).encode())


class Script:
    """A fake server answering from a list and recording every request."""

    def __init__(self, *answers: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        a = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(a, Exception):
            raise a
        if isinstance(a, httpx.Response):
            return a
        return a(request)


def client(script: Script, **kw: Any) -> tuple[Client, list[float]]:
    c = Client("http://inferq.test", transport=httpx.MockTransport(script), **kw)
    slept: list[float] = []
    c._sleep = slept.append
    return c, slept


def test_429_retry_after_is_honoured_and_the_key_is_reused() -> None:
    s = Script(problem(429, "overloaded", "2"), problem(503, "unavailable", "1"), httpx.Response(202, json=JOB))
    c, slept = client(s)
    job = c.submit(PNG, model="m", top_k=3)
    assert job.id == "j1" and job.status == "queued"
    assert slept == [2.0, 1.0]
    keys = {r.headers["Idempotency-Key"] for r in s.requests}
    assert len(s.requests) == 3 and len(keys) == 1
    uuid.UUID(keys.pop(), version=4)


def test_retry_after_http_date_and_cap() -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=100)
    assert 95 <= (parse_retry_after(format_datetime(when, usegmt=True)) or 0) <= 101
    assert parse_retry_after("junk") is None and parse_retry_after(None) is None
    s = Script(problem(429, "overloaded", "3600"), httpx.Response(202, json=JOB))
    c, slept = client(s, retries=RetryPolicy(retries=1, max_delay=5))
    c.submit(PNG)
    assert slept == [5]


def test_exponential_backoff_without_retry_after_then_typed_error() -> None:
    s = Script(problem(503, "unavailable"))
    c, slept = client(s, retries=RetryPolicy(retries=3, base_delay=1.0, jitter=0.0))
    with pytest.raises(inferq.Unavailable) as e:
        c.submit(PNG)
    assert slept == [1.0, 2.0, 4.0] and len(s.requests) == 4
    assert e.value.status == 503 and e.value.code == "unavailable"
    assert e.value.type == "urn:inferq:problem:unavailable" and e.value.detail == "detail of unavailable"


def test_connection_errors_are_retried_then_raised() -> None:
    s = Script(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.Response(202, json=JOB))
    c, slept = client(s)
    assert c.submit(PNG).id == "j1"
    assert len(slept) == 2 and len({r.headers["Idempotency-Key"] for r in s.requests}) == 1
    c, _ = client(Script(httpx.ConnectError("refused")), retries=2)
    with pytest.raises(inferq.ConnectionFailed):
        c.models()


def test_no_retry_for_client_errors() -> None:
    for status, code, cls in [(400, "invalid_argument", inferq.BadRequest), (401, "unauthorized", inferq.Unauthorized),
                              (404, "model_not_found", inferq.NotFound), (409, "job_finished", inferq.Conflict),
                              (415, "unsupported_image_format", inferq.UnsupportedMedia),
                              (422, "idempotency_key_reused", inferq.Unprocessable)]:
        s = Script(problem(status, code))
        c, slept = client(s)
        with pytest.raises(cls) as e:
            c.submit(PNG)
        assert e.value.code == code and len(s.requests) == 1 and slept == []
    c, _ = client(Script(problem(503, "overloaded", "1")), retries=0)
    with pytest.raises(inferq.Overloaded) as o:
        c.submit(PNG)
    assert o.value.retry_after == 1.0


def test_raw_submit_shape() -> None:
    s = Script(httpx.Response(202, json=JOB))
    c, _ = client(s, api_key="k" * 20)
    c.submit(PNG, model="m", version=2, top_k=3, output_uri="gs://o/",
             webhook={"url": "https://h/x", "format": "cloudevents"}, idempotency_key="abc")
    r = s.requests[0]
    assert r.method == "POST" and r.url.path == "/v1/jobs"
    assert r.headers["Content-Type"] == "image/png" and r.headers["Idempotency-Key"] == "abc"
    assert r.headers["Authorization"] == "Bearer " + "k" * 20
    assert dict(r.url.params) == {"model": "m", "version": "2", "top_k": "3", "output_uri": "gs://o/",
                                  "webhook_url": "https://h/x", "webhook_format": "cloudevents"}
    assert r.content == PNG


def test_uri_submit_is_json() -> None:
    s = Script(httpx.Response(202, json=JOB))
    c, _ = client(s)
    c.submit("gs://b/cat.jpg", top_k=1, webhook="https://h/x", output_uri="gs://o/")
    body = json.loads(s.requests[0].content)
    assert body == {"input": {"uri": "gs://b/cat.jpg"}, "top_k": 1,
                    "webhook": {"url": "https://h/x"}, "output": {"uri": "gs://o/"}}
    assert s.requests[0].headers["Idempotency-Key"]


def test_env_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERQ_URL", "http://env.test:9/")
    monkeypatch.setenv("INFERQ_API_KEY", "from-env")
    c = Client()
    assert c.settings.url == "http://env.test:9" and c.settings.headers["Authorization"] == "Bearer from-env"


def test_wait_long_polls_then_result_and_failure() -> None:
    states = iter(["running", "running", "succeeded"])

    def answer(req: httpx.Request) -> httpx.Response:
        assert float(req.url.params["wait"]) > 0
        st = next(states)
        rec = dict(JOB, status=st)
        if st == "succeeded":
            rec["result"] = {"kind": "classification", "top_k": [{"index": 1}]}
        return httpx.Response(200, json=rec)

    s = Script(httpx.Response(202, json=JOB), answer)
    c, _ = client(s)
    job = c.submit(PNG)
    assert job.result(timeout=10)["top_k"][0]["index"] == 1
    assert job.status == "succeeded" and job.prediction is not None
    assert len(s.requests) == 4

    failed = dict(JOB, status="failed", error={"code": "decode_failed", "message": "bad"})
    c, _ = client(Script(httpx.Response(200, json=failed)))
    with pytest.raises(inferq.JobFailed) as e:
        c.get("j1").result()
    assert e.value.code == "decode_failed" and e.value.message == "bad"


def test_wait_timeout() -> None:
    c, _ = client(Script(httpx.Response(200, json=dict(JOB, status="running"))))
    c._long_poll_chunk = 0.05
    with pytest.raises(inferq.WaitTimeout):
        c.get("j1").wait(timeout=0.2)


def test_batch_progress() -> None:
    recs = [
        {"id": "b", "state": "queued", "counts": {"succeeded": 0, "failed": 0}},
        {"id": "b", "state": "running", "counts": {"total": 3, "succeeded": 1, "failed": 0}},
        {"id": "b", "state": "running", "counts": {"total": 3, "succeeded": 1, "failed": 0}},
        {"id": "b", "state": "succeeded", "counts": {"total": 3, "succeeded": 2, "failed": 1}, "files": ["f"]},
    ]
    s = Script(*[httpx.Response(202 if i == 0 else 200, json=r) for i, r in enumerate(recs)])
    c, _ = client(s)
    b = c.batch(prefix="file:///in/", output="file:///out", top_k=2)
    assert json.loads(s.requests[0].content) == {"input": {"prefix": "file:///in/"},
                                                 "output": {"prefix": "file:///out"}, "top_k": 2}
    seen: list[tuple[int, int, str]] = []
    b.wait(progress=lambda n, st: seen.append((n.succeeded, n.failed, st)), poll_interval=0.001)
    assert seen == [(0, 0, "queued"), (1, 0, "running"), (2, 1, "succeeded")]
    assert b.files == ["f"] and b.counts.total == 3
    with pytest.raises(ValueError):
        c.batch(output="x", prefix="a", jsonl="b")


async def _async_slept(script: Script, **kw: Any) -> tuple[AsyncClient, list[float]]:
    c = AsyncClient("http://inferq.test", transport=httpx.MockTransport(script), **kw)
    slept: list[float] = []

    async def fake(d: float) -> None:
        slept.append(d)

    c._sleep = fake
    return c, slept


@pytest.mark.asyncio
async def test_async_retries_honour_retry_after() -> None:
    s = Script(httpx.ConnectError("x"), problem(429, "overloaded", "7"), httpx.Response(202, json=JOB))
    c, slept = await _async_slept(s, retries=RetryPolicy(retries=3, base_delay=0.25, jitter=0.0))
    async with c:
        job = await c.submit(PNG)
    assert job.id == "j1" and slept == [0.25, 7.0]
    assert len({r.headers["Idempotency-Key"] for r in s.requests}) == 1
