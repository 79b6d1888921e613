"""The blocking client: ``Client(url, api_key, timeout, retries)``.

One ``httpx.Client`` (connection pool) per ``Client``; use it as a context
manager or call :meth:`Client.close`. Every call goes through :meth:`_send`,
which retries connection errors, 429 and 503 with backoff (honouring
``Retry-After``); submits carry an ``Idempotency-Key`` so that a retry can
never make a second job.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Callable, Mapping

import httpx

from . import _core, errors
from ._input import ImageInput, read_image
from .jobs import Batch, Job

__all__ = ["Client"]

_UA = "inferq-python/0.1.0"


class Client:
    """Blocking InferQ client.

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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = _core.Settings.resolve(url, api_key, timeout, retries, _UA)
        self._long_poll_chunk = _core.LONG_POLL_CHUNK
        #: How retries wait; tests replace it to record delays instead of sleeping.
        self._sleep: Callable[[float], None] = time.sleep
        self._http = httpx.Client(
            base_url=self.settings.url, headers=self.settings.headers, transport=transport
        )

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------

    def _send(self, req: _core.Request) -> httpx.Response:
        """Send with retries; returns the last answer (error answers included)."""
        policy = self.settings.retry
        attempt = 0
        while True:
            try:
                resp = self._http.request(req.method, req.path, **req.kwargs(self.settings.timeout))
            except httpx.TransportError as e:
                if attempt >= policy.retries:
                    raise errors.ConnectionFailed(f"{req.method} {req.path}: {e!r}") from e
                self._sleep(policy.delay(attempt, None))
                attempt += 1
                continue
            if not _core.should_retry(resp) or attempt >= policy.retries:
                return resp
            retry_after = _core.parse_retry_after(resp.headers.get("Retry-After"))
            resp.close()
            self._sleep(policy.delay(attempt, retry_after))
            attempt += 1

    def _json(self, req: _core.Request) -> dict[str, Any]:
        return _core.json_body(self._send(req))

    # -- jobs ------------------------------------------------------------------------

    def submit(
        self,
        image: ImageInput,
        model: str | None = None,
        version: int | None = None,
        top_k: int | None = None,
        webhook: str | Mapping[str, str] | None = None,
        output_uri: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit one image (path, bytes, binary file, or ``gs://``/``s3://``/``http(s)://``/``file://`` URI).

        Returns the accepted (``queued``) job; ``job.result()`` waits for its answer.
        """
        req = _core.submit_request(
            read_image(image),
            model=model,
            version=version,
            top_k=top_k,
            webhook=webhook,
            output_uri=output_uri,
            idempotency_key=idempotency_key,
        )
        return Job.from_record(self, self._json(req))

    def get(self, job_id: str, wait: float | None = None) -> Job:
        """The job ``job_id`` (long-polling up to ``wait`` seconds for it to finish)."""
        return Job.from_record(self, self._get_job(job_id, wait))

    def models(self) -> dict[str, Any]:
        """``GET /v1/models``: ``default_model`` and ``models`` with their versions and manifests."""
        return self._json(_core.Request("GET", "/v1/models"))

    def _get_job(self, job_id: str, wait: float | None) -> dict[str, Any]:
        params: dict[str, Any] = {}
        extra = 0.0
        if wait is not None:
            params["wait"] = f"{wait:.3f}"
            extra = wait
        return self._json(_core.Request("GET", f"/v1/jobs/{job_id}", params=params, extra_timeout=extra))

    def _cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._json(_core.Request("POST", f"/v1/jobs/{job_id}/cancel"))

    def _job_output(self, job_id: str, view: str | None) -> bytes:
        req = _core.Request("GET", f"/v1/jobs/{job_id}/output", params={"view": view})
        resp = self._send(req)
        _core.raise_for_status(resp)
        return resp.content

    # -- batches ---------------------------------------------------------------------

    def batch(
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
    ) -> Batch:
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
        return Batch.from_record(self, self._json(_core.batch_request(body, idempotency_key)))

    def get_batch(self, batch_id: str) -> Batch:
        """The batch ``batch_id`` with its live counts."""
        return Batch.from_record(self, self._get_batch(batch_id))

    def _get_batch(self, batch_id: str) -> dict[str, Any]:
        return self._json(_core.Request("GET", f"/v1/batches/{batch_id}"))

    def _cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return self._json(_core.Request("POST", f"/v1/batches/{batch_id}/cancel"))
