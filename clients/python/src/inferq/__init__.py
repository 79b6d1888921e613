"""InferQ client for Python: submit images, wait for results, run batches, verify webhooks.

>>> from inferq import Client
>>> with Client("http://127.0.0.1:8080") as c:
...     top = c.submit("cat.jpg", top_k=3).result(timeout=30)["top_k"][0]

:class:`Client` blocks, :class:`AsyncClient` is the asyncio twin. Errors are
typed (:mod:`inferq.errors`); webhooks are checked by :func:`verify_webhook`.
"""

from ._core import RetryPolicy
from ._input import sniff_content_type
from .aio import AsyncClient
from .client import Client
from .errors import (
    APIError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InferQError,
    JobFailed,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    Unprocessable,
    UnsupportedMedia,
    WaitTimeout,
    WebhookVerificationError,
)
from .jobs import AsyncBatch, AsyncJob, Batch, BatchCounts, Job, JobError
from .webhooks import sign_webhook, verify_webhook

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AsyncBatch",
    "AsyncClient",
    "AsyncJob",
    "BadRequest",
    "Batch",
    "BatchCounts",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "InferQError",
    "Job",
    "JobError",
    "JobFailed",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "RetryPolicy",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "UnsupportedMedia",
    "WaitTimeout",
    "WebhookVerificationError",
    "sign_webhook",
    "sniff_content_type",
    "verify_webhook",
]
