"""Typed exceptions of the InferQ client.

Every error answer of the API is an RFC 9457 ``application/problem+json``
body with a stable ``code``; :class:`APIError` carries its ``type``,
``title``, ``detail`` and ``code`` plus the HTTP status, and a subclass per
status lets callers catch what they can handle (``except Overloaded``)
without comparing strings. A job that ends badly is not an HTTP error: its
``result()`` raises :class:`JobFailed` with the job's own error code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from .jobs import JobFields


class InferQError(Exception):
    """Base class of everything this package raises on purpose."""


class ConnectionFailed(InferQError):
    """The server could not be reached (after all retries): DNS, refused, reset, timeout."""


class APIError(InferQError):
    """The server answered with an error status and (usually) a problem+json body."""

    def __init__(
        self,
        status: int,
        *,
        type: str = "about:blank",
        title: str = "",
        detail: str = "",
        code: str = "",
        retry_after: float | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.code = code
        #: Seconds the server asked us to wait (``Retry-After``), if it said.
        self.retry_after = retry_after
        #: The whole problem document as received.
        self.body: Mapping[str, Any] = body or {}
        super().__init__(f"{status} {code or title}: {detail or title}".strip())


class BadRequest(APIError):
    """400: invalid argument, image, URI or body."""


class Unauthorized(APIError):
    """401: API keys are on and none (or an unknown one) was sent."""


class Forbidden(APIError):
    """403: the key lacks the route's scope, or the feature is off."""


class NotFound(APIError):
    """404: unknown (or another tenant's) job, batch, model or output."""


class Conflict(APIError):
    """409: the request conflicts with the current state (e.g. canceling a finished job)."""


class PayloadTooLarge(APIError):
    """413: the body is above the server's limits."""


class UnsupportedMedia(APIError):
    """415: not an image, or an image format the server does not decode."""


class Unprocessable(APIError):
    """422: too many pixels, or an ``Idempotency-Key`` reused with a different request."""


class Overloaded(APIError):
    """429 (backlog full) or 503 ``overloaded``: come back after :attr:`retry_after`."""


class Unavailable(APIError):
    """503: the broker or the store is unreachable; retry later."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMedia,
    422: Unprocessable,
    429: Overloaded,
}


def error_class(status: int, code: str) -> type[APIError]:
    """The exception class for an error answer (503 depends on the ``code``)."""
    if status == 503:
        return Overloaded if code == "overloaded" else Unavailable
    return _BY_STATUS.get(status, APIError)


class JobFailed(InferQError):
    """A job ended in a state other than ``succeeded`` (failed, canceled, expired, dead-lettered).

    :attr:`code` and :attr:`message` are the job's ``error`` (``decode_failed``,
    ``deadline_exceeded``, …); a canceled job without one gets code ``canceled``.
    """

    def __init__(self, job: JobFields) -> None:
        self.job = job
        self.status = job.status
        self.code = job.error.code if job.error else job.status
        self.message = job.error.message if job.error else f"job {job.status}"
        super().__init__(f"job {job.id} {job.status}: {self.code}: {self.message}")


class WaitTimeout(InferQError, TimeoutError):
    """The job or batch was not final when the caller's ``timeout`` ran out.

    The job itself keeps running; wait again or cancel it.
    """


class WebhookVerificationError(InferQError):
    """A webhook's headers are missing, its timestamp is stale, or no signature matches."""
