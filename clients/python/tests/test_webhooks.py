"""verify_webhook against the Standard Webhooks reference library, both ways."""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError as RefError

from inferq import WebhookVerificationError, sign_webhook, verify_webhook

BODY = json.dumps({"type": "job.succeeded", "timestamp": "2026-11-29T10:00:00Z", "data": {"id": "x"}}).encode()


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def ref_headers(secret: str, ts: int, msg_id: str = "job_1", body: bytes = BODY) -> dict[str, str]:
    sig = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=timezone.utc), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}


def test_reference_vector() -> None:
    # The Standard Webhooks specification's published example.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sig = sign_webhook(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_reference_signed_is_accepted_by_us() -> None:
    secret, ts = new_secret(), int(time.time())
    assert verify_webhook(ref_headers(secret, ts), BODY, secret) == json.loads(BODY)


def test_our_signature_is_accepted_by_the_reference() -> None:
    secret, ts = new_secret(), int(time.time())
    headers = {"webhook-id": "job_2", "webhook-timestamp": str(ts),
               "webhook-signature": sign_webhook(secret, "job_2", ts, BODY)}
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_headers_are_case_insensitive_and_body_may_be_str() -> None:
    secret, ts = new_secret(), int(time.time())
    h = {k.title(): v for k, v in ref_headers(secret, ts).items()}
    assert verify_webhook(h, BODY.decode(), secret)["data"]["id"] == "x"


def test_several_signatures_one_match_is_enough() -> None:
    old, new, ts = new_secret(), new_secret(), int(time.time())
    h = ref_headers(new, ts)
    h["webhook-signature"] = "v2,abc " + ref_headers(old, ts)["webhook-signature"] + " " + h["webhook-signature"]
    assert verify_webhook(h, BODY, new)
    assert verify_webhook(h, BODY, old)
    # A receiver mid-rotation may hold several secrets.
    assert verify_webhook(ref_headers(old, ts), BODY, [new_secret(), old])
    assert Webhook(new).verify(BODY, h)


@pytest.mark.parametrize("case", ["wrong_secret", "tampered_body", "other_id", "stale", "future", "missing"])
def test_forgeries_are_refused_like_the_reference(case: str) -> None:
    secret, now = new_secret(), int(time.time())
    ts = now - 301 if case == "stale" else now + 301 if case == "future" else now
    h = ref_headers(secret, ts)
    body, key = BODY, secret
    if case == "wrong_secret":
        key = new_secret()
    elif case == "tampered_body":
        body = BODY.replace(b'"x"', b'"y"')
    elif case == "other_id":
        h["webhook-id"] = "job_other"
    elif case == "missing":
        del h["webhook-signature"]
    with pytest.raises(WebhookVerificationError):
        verify_webhook(h, body, key)
    with pytest.raises(RefError):
        Webhook(key).verify(body, h)


def test_tolerance_is_configurable() -> None:
    secret = new_secret()
    ts = int(time.time()) - 1000
    h = ref_headers(secret, ts)
    assert verify_webhook(h, BODY, secret, tolerance=1200)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(h, BODY, secret)
    assert verify_webhook(h, BODY, secret, now=ts + 10)


def test_unpadded_and_raw_secrets() -> None:
    raw = os.urandom(32)  # 32 bytes: base64 ends in '='; drop the padding
    unpadded = "whsec_" + base64.b64encode(raw).decode().rstrip("=")
    ts = int(time.time())
    h = ref_headers(unpadded, ts)
    assert verify_webhook(h, BODY, unpadded)
    assert verify_webhook(h, BODY, raw)
    with pytest.raises(ValueError):
        verify_webhook(h, BODY, "whsec_***not base64***")
