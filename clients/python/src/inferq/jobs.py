"""Jobs and batches as returned by the API, with the calls that follow them.

``JobFields`` / ``BatchFields`` hold the record (typed fields for what most
callers read, ``raw`` for everything else). ``Job`` and ``Batch`` add
blocking methods bound to a :class:`~inferq.Client`; ``AsyncJob`` and
``AsyncBatch`` the same as coroutines bound to an
:class:`~inferq.AsyncClient`. Methods refresh the fields in place and
return ``self``, so ``job.wait().status`` reads naturally.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .errors import JobFailed, WaitTimeout

if TYPE_CHECKING:  # pragma: no cover
    from .aio import AsyncClient
    from .client import Client

#: Job states after which nothing changes any more.
FINAL_JOB_STATES = frozenset({"succeeded", "failed", "canceled", "expired", "dead_lettered"})
#: Batch states after which nothing changes any more.
FINAL_BATCH_STATES = frozenset({"succeeded", "failed", "canceled"})


@dataclass(frozen=True)
class JobError:
    """Why a job failed: a stable ``code`` (``decode_failed``, …) and a message."""

    code: str
    message: str


@dataclass
class JobFields:
    """The fields of a job record (``GET /v1/jobs/{id}``)."""

    id: str
    status: str
    model: str | None = None
    version: int | None = None
    #: The record's ``result`` (``None`` until it succeeded). Named ``prediction``
    #: because ``result()`` is the method that waits for it and raises on failure.
    prediction: dict[str, Any] | None = None
    error: JobError | None = None
    timings: dict[str, float] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        """True once the job is in a final state."""
        return self.status in FINAL_JOB_STATES

    def _update(self, record: Mapping[str, Any]) -> None:
        err = record.get("error")
        self.id = str(record["id"])
        self.status = str(record["status"])
        self.model = record.get("model")
        self.version = record.get("version")
        self.prediction = record.get("result")
        self.error = JobError(str(err.get("code", "")), str(err.get("message", ""))) if err else None
        self.timings = record.get("timings")
        self.raw = dict(record)

    def _result_or_raise(self) -> dict[str, Any]:
        if self.status != "succeeded":
            raise JobFailed(self)
        return self.prediction or {}


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _chunk(deadline: float | None, chunk: float) -> float:
    """Seconds of the next long-poll: a chunk, or what is left before the deadline."""
    left = _remaining(deadline)
    return chunk if left is None else max(0.0, min(chunk, left))


@dataclass
class Job(JobFields):
    """A job bound to a blocking :class:`~inferq.Client`."""

    _client: Client | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_record(cls, client: Client, record: Mapping[str, Any]) -> Job:
        job = cls(id="", status="", _client=client)
        job._update(record)
        return job

    def _c(self) -> Client:
        assert self._client is not None, "job is not bound to a client"
        return self._client

    def refresh(self, wait: float | None = None) -> Job:
        """Fetch the record again (long-polling up to ``wait`` seconds)."""
        self._update(self._c()._get_job(self.id, wait))
        return self

    def wait(self, timeout: float | None = None) -> Job:
        """Block until the job is final (long-polls, no busy polling).

        Raises :class:`~inferq.WaitTimeout` if it is not final after ``timeout``
        seconds (``None``: wait as long as it takes).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            step = _chunk(deadline, self._c()._long_poll_chunk)
            if deadline is not None and step <= 0:
                raise WaitTimeout(f"job {self.id} still {self.status} after {timeout} s")
            self.refresh(wait=step)
        return self

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait, then return the ``result``; raise :class:`~inferq.JobFailed` if it did not succeed."""
        return self.wait(timeout)._result_or_raise()

    def cancel(self) -> Job:
        """Cancel the job (``409 job_finished`` as :class:`~inferq.Conflict` if already final)."""
        self._update(self._c()._cancel_job(self.id))
        return self

    def output(self, view: str | None = None) -> bytes:
        """The output image (PNG) of an image model, or one of its ``view``s (``colormap``, ``overlay``)."""
        return self._c()._job_output(self.id, view)


@dataclass
class AsyncJob(JobFields):
    """A job bound to an :class:`~inferq.AsyncClient`; the methods are coroutines."""

    _client: AsyncClient | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_record(cls, client: AsyncClient, record: Mapping[str, Any]) -> AsyncJob:
        job = cls(id="", status="", _client=client)
        job._update(record)
        return job

    def _c(self) -> AsyncClient:
        assert self._client is not None, "job is not bound to a client"
        return self._client

    async def refresh(self, wait: float | None = None) -> AsyncJob:
        """Fetch the record again (long-polling up to ``wait`` seconds)."""
        self._update(await self._c()._get_job(self.id, wait))
        return self

    async def wait(self, timeout: float | None = None) -> AsyncJob:
        """Await the final state; :class:`~inferq.WaitTimeout` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            step = _chunk(deadline, self._c()._long_poll_chunk)
            if deadline is not None and step <= 0:
                raise WaitTimeout(f"job {self.id} still {self.status} after {timeout} s")
            await self.refresh(wait=step)
        return self

    async def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Await the ``result``; raise :class:`~inferq.JobFailed` if the job did not succeed."""
        return (await self.wait(timeout))._result_or_raise()

    async def cancel(self) -> AsyncJob:
        """Cancel the job."""
        self._update(await self._c()._cancel_job(self.id))
        return self

    async def output(self, view: str | None = None) -> bytes:
        """The output image (PNG) of an image model, or one of its ``view``s."""
        return await self._c()._job_output(self.id, view)


@dataclass(frozen=True)
class BatchCounts:
    """Live instance counts of a batch (``total`` is ``None`` until the input is listed)."""

    total: int | None
    succeeded: int
    failed: int

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed


#: ``progress`` callbacks of ``Batch.wait`` get the counts and the state.
ProgressCallback = Callable[[BatchCounts, str], None]


@dataclass
class BatchFields:
    """The fields of a batch record (``GET /v1/batches/{id}``)."""

    id: str
    state: str
    model: str | None = None
    counts: BatchCounts = field(default_factory=lambda: BatchCounts(None, 0, 0))
    files: list[str] = field(default_factory=list)
    error: Any = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        return self.state in FINAL_BATCH_STATES

    def _update(self, record: Mapping[str, Any]) -> None:
        c = record.get("counts") or {}
        self.id = str(record["id"])
        self.state = str(record["state"])
        self.model = record.get("model")
        self.counts = BatchCounts(c.get("total"), int(c.get("succeeded", 0)), int(c.get("failed", 0)))
        self.files = list(record.get("files") or [])
        self.error = record.get("error")
        self.raw = dict(record)


@dataclass
class Batch(BatchFields):
    """A batch bound to a blocking :class:`~inferq.Client`."""

    _client: Client | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_record(cls, client: Client, record: Mapping[str, Any]) -> Batch:
        b = cls(id="", state="", _client=client)
        b._update(record)
        return b

    def _c(self) -> Client:
        assert self._client is not None, "batch is not bound to a client"
        return self._client

    def refresh(self) -> Batch:
        self._update(self._c()._get_batch(self.id))
        return self

    def wait(
        self,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        poll_interval: float = 0.5,
    ) -> Batch:
        """Poll until the batch is final, calling ``progress(counts, state)`` whenever they change.

        A batch that ends ``failed`` is returned, not raised: look at ``state`` and ``error``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple[BatchCounts, str] | None = None
        while True:
            if progress and (self.counts, self.state) != last:
                last = (self.counts, self.state)
                progress(self.counts, self.state)
            if self.done:
                return self
            left = _remaining(deadline)
            if left is not None and left <= 0:
                raise WaitTimeout(f"batch {self.id} still {self.state} after {timeout} s")
            time.sleep(poll_interval if left is None else min(poll_interval, left))
            self.refresh()

    def cancel(self) -> Batch:
        """Cancel the batch (``409 batch_finished`` as :class:`~inferq.Conflict` if already final)."""
        self._update(self._c()._cancel_batch(self.id))
        return self


@dataclass
class AsyncBatch(BatchFields):
    """A batch bound to an :class:`~inferq.AsyncClient`; the methods are coroutines."""

    _client: AsyncClient | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_record(cls, client: AsyncClient, record: Mapping[str, Any]) -> AsyncBatch:
        b = cls(id="", state="", _client=client)
        b._update(record)
        return b

    def _c(self) -> AsyncClient:
        assert self._client is not None, "batch is not bound to a client"
        return self._client

    async def refresh(self) -> AsyncBatch:
        self._update(await self._c()._get_batch(self.id))
        return self

    async def wait(
        self,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        poll_interval: float = 0.5,
    ) -> AsyncBatch:
        """Poll until final, calling ``progress(counts, state)`` on every change."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple[BatchCounts, str] | None = None
        while True:
            if progress and (self.counts, self.state) != last:
                last = (self.counts, self.state)
                progress(self.counts, self.state)
            if self.done:
                return self
            left = _remaining(deadline)
            if left is not None and left <= 0:
                raise WaitTimeout(f"batch {self.id} still {self.state} after {timeout} s")
            await asyncio.sleep(poll_interval if left is None else min(poll_interval, left))
            await self.refresh()

    async def cancel(self) -> AsyncBatch:
        """Cancel the batch."""
        self._update(await self._c()._cancel_batch(self.id))
        return self
