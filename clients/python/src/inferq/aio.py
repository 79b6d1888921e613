"""The asyncio client: ``AsyncClient(url, api_key, timeout, retries)``.

The same calls as :class:`~inferq.Client`, as coroutines, on one
``httpx.AsyncClient``; use ``async with`` or ``await client.aclose()``.
Every call goes through :meth:`_send`, which retries connection errors,
429 and 503 with backoff (honouring ``Retry-After``); submits carry an ``Idempotency-Key`` so that a retry can
never make a second job.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Awaitable, Callable, Mapping

import httpx

from . import _core, errors
from ._input import ImageInput, read_image
from .jobs import AsyncBatch, AsyncJob

__all__ = ["AsyncClient"]

_UA = "inferq-python/0.1.0"


class AsyncClient:
    """Asyncio InferQ client (arguments as for :class:`~inferq.Client`).

    ``url`` and ``api_key`` default to ``INFERQ_URL`` / ``INFERQ_API_KEY``;
    ``timeout`` is per request (long-polls get their wait on top);
    ``retries`` is a count or a :class:`~inferq.RetryPolicy`. ``transport``
    replaces the network (tests pass an ``httpx.MockTransport``).
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int | _core.RetryPolicy = 3,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = _core.Settings.resolve(url, api_key, timeout, retries, _UA)
        self._long_poll_chunk = _core.LONG_POLL_CHUNK
        #: How retries wait; tests replace it to record delays instead of sleeping.
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._http = httpx.AsyncClient(
            base_url=self.settings.url, headers=self.settings.headers, transport=transport
        )

    # -- lifecycle -------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- sending ---------------------------------------------------------------------

    async def _send(self, req: _core.Request) -> httpx.Response:
        """Send with retries; returns the last answer (error answers included)."""
        policy = self.settings.retry
        attempt = 0
        while True:
            try:
                resp = await self._http.request(req.method, req.path, **req.kwargs(self.settings.timeout))
            except httpx.TransportError as e:
                if attempt >= policy.retries:
                    raise errors.ConnectionFailed(f"{req.method} {req.path}: {e!r}") from e
                await self._sleep(policy.delay(attempt, None))
                attempt += 1
                continue
            if not _core.should_retry(resp) or attempt >= policy.retries:
                return resp
            retry_after = _core.parse_retry_after(resp.headers.get("Retry-After"))
            await resp.aclose()
            await self._sleep(policy.delay(attempt, retry_after))
            attempt += 1

    async def _json(self, req: _core.Request) -> dict[str, Any]:
        return _core.json_body(await self._send(req))

    # -- jobs ------------------------------------------------------------------------

    async def submit(
        self,
        image: ImageInput,
        model: str | None = None,
        version: int | None = None,
        top_k: int | None = None,
        webhook: str | Mapping[str, str] | None = None,
        output_uri: str | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncJob:
        """Submit one image (path, bytes, binary file, or ``gs://``/``s3://``/``http(s)://``/``file://`` URI).

        Returns the accepted (``queued``) job; ``job.result()`` waits for its answer.
        """
        req = _core.submit_request(
            await asyncio.to_thread(read_image, image),
            model=model,
            version=version,
            top_k=top_k,
            webhook=webhook,
            output_uri=output_uri,
            idempotency_key=idempotency_key,
        )
        return AsyncJob.from_record(self, await self._json(req))

    async def get(self, job_id: str, wait: float | None = None) -> AsyncJob:
        """The job ``job_id`` (long-polling up to ``wait`` seconds for it to finish)."""
        return AsyncJob.from_record(self, await self._get_job(job_id, wait))

    async def models(self) -> dict[str, Any]:
        """``GET /v1/models``: ``default_model`` and ``models`` with their versions and manifests."""
        return await self._json(_core.Request("GET", "/v1/models"))

    async def _get_job(self, job_id: str, wait: float | None) -> dict[str, Any]:
        params: dict[str, Any] = {}
        extra = 0.0
        if wait is not None:
            params["wait"] = f"{wait:.3f}"
            extra = wait
        return await self._json(_core.Request("GET", f"/v1/jobs/{job_id}", params=params, extra_timeout=extra))

    async def _cancel_job(self, job_id: str) -> dict[str, Any]:
        return await self._json(_core.Request("POST", f"/v1/jobs/{job_id}/cancel"))

    async def _job_output(self, job_id: str, view: str | None) -> bytes:
        req = _core.Request("GET", f"/v1/jobs/{job_id}/output", params={"view": view})
        resp = await self._send(req)
        _core.raise_for_status(resp)
        return resp.content

    # -- batches ---------------------------------------------------------------------

    async def batch(
        self,
        *,
        output: str,
        prefix: str | None = None,
        jsonl: str | None = None,
        file_list: str | None = None,
        model: str | None = None,
        version: int | None = None,
        top_k: int | None = None,
        mirror: bool | None = None,
        shard_size: int | None = None,
        webhook: str | Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncBatch:
        """Start a batch prediction over ``prefix``, ``jsonl`` or ``file_list``, written to ``output``."""
        body = _core.batch_body(
            prefix=prefix,
            jsonl=jsonl,
            file_list=file_list,
            output=output,
            model=model,
            version=version,
            top_k=top_k,
            mirror=mirror,
            shard_size=shard_size,
            webhook=webhook,
        )
        return AsyncBatch.from_record(self, await self._json(_core.batch_request(body, idempotency_key)))

    async def get_batch(self, batch_id: str) -> AsyncBatch:
        """The batch ``batch_id`` with its live counts."""
        return AsyncBatch.from_record(self, await self._get_batch(batch_id))

    async def _get_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._json(_core.Request("GET", f"/v1/batches/{batch_id}"))

    async def _cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._json(_core.Request("POST", f"/v1/batches/{batch_id}/cancel"))
