"""What the sync and async clients share: configuration, request building,
retry decisions and turning error answers into exceptions.

The two clients differ only in how they send a request and sleep; every
decision (which answers are retried, how long to wait, which exception to
raise, what body a submit sends) lives here once so they cannot drift apart.
"""

from __future__ import annotations

import email.utils
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

import httpx

from . import errors
from ._input import Payload

#: Answers worth retrying: the request was refused before anything was created.
RETRY_STATUSES = frozenset({429, 503})
#: The server caps long-polls (``--max-wait-secs``, 30 by default); we ask for less.
LONG_POLL_CHUNK = 25.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry connection errors, 429 and 503.

    The n-th retry waits ``Retry-After`` when the server sent one (capped at
    ``max_delay``), otherwise ``base_delay * 2**n`` with ±``jitter`` (also capped).
    """

    retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to sleep before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        d: float = self.base_delay * (2.0**attempt)
        d *= 1.0 + random.uniform(-self.jitter, self.jitter)
        return min(d, self.max_delay)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; ``None`` if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


@dataclass
class Settings:
    """Resolved client settings (arguments, else ``INFERQ_URL`` / ``INFERQ_API_KEY``)."""

    url: str
    api_key: str | None
    timeout: float
    retry: RetryPolicy
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        url: str | None,
        api_key: str | None,
        timeout: float,
        retries: int | RetryPolicy,
        user_agent: str,
    ) -> Settings:
        base = url or os.environ.get("INFERQ_URL") or "http://127.0.0.1:8080"
        key = api_key if api_key is not None else os.environ.get("INFERQ_API_KEY") or None
        policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries=retries)
        headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return cls(base.rstrip("/"), key, timeout, policy, headers)


@dataclass
class Request:
    """One API call, independent of how it is sent."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    json: Any = None
    #: Extra read time for long-polls, added to the client timeout.
    extra_timeout: float = 0.0

    def kwargs(self, timeout: float) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client.request`` / ``AsyncClient.request``."""
        kw: dict[str, Any] = {
            "params": {k: v for k, v in self.params.items() if v is not None},
            "headers": self.headers,
            "timeout": timeout + self.extra_timeout,
        }
        if self.content is not None:
            kw["content"] = self.content
        if self.json is not None:
            kw["json"] = self.json
        return kw


def submit_request(
    payload: Payload,
    *,
    model: str | None,
    version: int | None,
    top_k: int | None,
    webhook: str | Mapping[str, str] | None,
    output_uri: str | None,
    idempotency_key: str | None,
) -> Request:
    """``POST /v1/jobs``: raw bytes with query parameters, or JSON for a reference.

    Always carries an ``Idempotency-Key`` (a fresh uuid4 unless given), so a
    retry after a lost answer finds the job made the first time.
    """
    headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
    hook: dict[str, str] | None = None
    if webhook is not None:
        hook = {"url": webhook} if isinstance(webhook, str) else dict(webhook)
    if payload.uri is not None:
        body: dict[str, Any] = {"input": {"uri": payload.uri}}
        for k, v in (("model", model), ("version", version), ("top_k", top_k)):
            if v is not None:
                body[k] = v
        if hook:
            body["webhook"] = hook
        if output_uri:
            body["output"] = {"uri": output_uri}
        return Request("POST", "/v1/jobs", headers=headers, json=body)
    assert payload.data is not None
    headers["Content-Type"] = payload.content_type
    params: dict[str, Any] = {"model": model, "version": version, "top_k": top_k, "output_uri": output_uri}
    if hook:
        params["webhook_url"] = hook["url"]
        params["webhook_format"] = hook.get("format")
    return Request("POST", "/v1/jobs", params=params, headers=headers, content=payload.data)


def batch_request(body: Mapping[str, Any], idempotency_key: str | None) -> Request:
    """``POST /v1/batches`` with the documented body and an ``Idempotency-Key``."""
    headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
    return Request("POST", "/v1/batches", headers=headers, json=dict(body))


def should_retry(response: httpx.Response) -> bool:
    """429 and 503 mean "not accepted, nothing left behind": safe to send again."""
    return response.status_code in RETRY_STATUSES


def raise_for_status(response: httpx.Response) -> None:
    """Raise the typed :class:`~inferq.errors.APIError` for an error answer."""
    if response.status_code < 400:
        return
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    code = str(body.get("code", ""))
    cls = errors.error_class(response.status_code, code)
    raise cls(
        response.status_code,
        type=str(body.get("type", "about:blank")),
        title=str(body.get("title", response.reason_phrase)),
        detail=str(body.get("detail", response.text[:500] if not body else "")),
        code=code,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        body=body,
    )


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a successful answer."""
    raise_for_status(response)
    data = response.json()
    if not isinstance(data, dict):
        raise errors.InferQError(f"expected a JSON object, got {type(data).__name__}")
    return data


def batch_body(
    *,
    prefix: str | None,
    jsonl: str | None,
    file_list: str | None,
    output: str,
    model: str | None,
    version: int | None,
    top_k: int | None,
    mirror: bool | None,
    shard_size: int | None,
    webhook: str | Mapping[str, str] | None,
) -> dict[str, Any]:
    """The ``POST /v1/batches`` body (docs/batches.md): exactly one input kind."""
    given = {k: v for k, v in (("prefix", prefix), ("jsonl", jsonl), ("file_list", file_list)) if v}
    if len(given) != 1:
        raise ValueError("give exactly one of prefix=, jsonl= or file_list=")
    out: dict[str, Any] = {"prefix": output}
    if mirror is not None:
        out["mirror"] = mirror
    body: dict[str, Any] = {"input": given, "output": out}
    for k, v in (("model", model), ("version", version), ("top_k", top_k), ("shard_size", shard_size)):
        if v is not None:
            body[k] = v
    if webhook is not None:
        body["webhook"] = {"url": webhook} if isinstance(webhook, str) else dict(webhook)
    return body
