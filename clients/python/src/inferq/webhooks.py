"""Verifying InferQ's completion webhooks (Standard Webhooks, docs/webhooks.md).

InferQ signs each notification with ``webhook-signature: v1,<base64
HMAC-SHA256>`` over ``{webhook-id}.{webhook-timestamp}.{body}``, keyed by
the bytes of the secret (the part after ``whsec_``, base64-decoded). With
several secrets configured (rotation) the header holds several
space-separated signatures; one match is enough. A timestamp more than
``tolerance`` seconds away from now is refused so a captured request cannot
be replayed later. Implemented with :mod:`hmac` only, so receivers need no
extra dependency; the tests check it against the ``standardwebhooks``
reference library.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any, Mapping, Sequence

from .errors import WebhookVerificationError

__all__ = ["verify_webhook", "sign_webhook", "DEFAULT_TOLERANCE"]

#: Seconds a webhook's timestamp may be away from now (the usual 5 minutes).
DEFAULT_TOLERANCE = 300

_PREFIX = "whsec_"


def _key(secret: str | bytes) -> bytes:
    """The HMAC key: raw bytes as given, or a (``whsec_``-prefixed) base64 string decoded."""
    if isinstance(secret, bytes):
        key = secret
    else:
        s = secret[len(_PREFIX) :] if secret.startswith(_PREFIX) else secret
        try:
            key = base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError("webhook secret is not valid base64") from e
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign_webhook(secret: str | bytes, msg_id: str, timestamp: int | str, body: bytes | str) -> str:
    """The ``v1,<base64>`` signature InferQ would send (handy for tests of a receiver)."""
    payload = body.encode() if isinstance(body, str) else body
    to_sign = f"{msg_id}.{timestamp}.".encode() + payload
    mac = hmac.new(_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _header(headers: Mapping[str, str], name: str) -> str:
    for k, v in headers.items():
        if k.lower() == name:
            return v
    raise WebhookVerificationError(f"missing header {name}")


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str | bytes | Sequence[str | bytes],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> Any:
    """Check a webhook's signature and timestamp; return the parsed JSON body.

    ``headers`` is any mapping (names compared case-insensitively), ``body`` the
    raw request body exactly as received (re-serialised JSON would not match),
    ``secret`` one secret or a list (a receiver in the middle of a rotation).
    Raises :class:`~inferq.WebhookVerificationError` when a header is missing,
    the timestamp is outside ``tolerance`` or no ``v1`` signature matches.
    """
    msg_id = _header(headers, "webhook-id")
    ts_text = _header(headers, "webhook-timestamp").strip()
    sig_header = _header(headers, "webhook-signature")
    try:
        ts = int(ts_text)
    except ValueError as e:
        raise WebhookVerificationError("invalid webhook-timestamp") from e
    current = time.time() if now is None else now
    if ts < current - tolerance:
        raise WebhookVerificationError("message timestamp too old")
    if ts > current + tolerance:
        raise WebhookVerificationError("message timestamp too new")

    payload = body.encode() if isinstance(body, str) else body
    secrets = [secret] if isinstance(secret, (str, bytes)) else list(secret)
    expected = []
    for s in secrets:
        _, b64 = sign_webhook(s, msg_id, ts_text, payload).split(",", 1)
        expected.append(base64.b64decode(b64))
    for entry in sig_header.split():
        version, _, sig = entry.partition(",")
        if version != "v1" or not sig:
            continue
        try:
            given = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            continue
        if any(hmac.compare_digest(given, e) for e in expected):
            return json.loads(payload)
    raise WebhookVerificationError("no matching signature found")
