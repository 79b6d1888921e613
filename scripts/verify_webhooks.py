#!/usr/bin/env python3
"""Verifies recorded InferQ webhook deliveries with independent implementations.

Used by tests/tests/webhooks.rs: the test records every request its receiver got
(headers and body) into a JSON file, and this script checks each one with the
Standard Webhooks reference library (`standardwebhooks` from PyPI, by the spec's
authors) and, for CloudEvents deliveries, parses it with the CloudEvents SDK
(`cloudevents` from PyPI). It prints one JSON object per delivery:

    {"verified": true, "type": "job.succeeded", "ce": null | {"id", "type", "source", ...}}

and exits non-zero if any signature fails to verify.

Usage: verify_webhooks.py --secret whsec_... deliveries.json
"""

import argparse
import json
import sys

from cloudevents.core.bindings.http import HTTPMessage, from_binary_event
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--secret", required=True)
    ap.add_argument("deliveries")
    args = ap.parse_args()
    hook = Webhook(args.secret)
    with open(args.deliveries, encoding="utf-8") as f:
        deliveries = json.load(f)
    failed = False
    for d in deliveries:
        headers = {k.lower(): v for k, v in d["headers"].items()}
        body = d["body"]
        out = {"verified": False, "type": None, "ce": None}
        try:
            payload = hook.verify(body, headers)
            out["verified"] = True
        except WebhookVerificationError as e:
            out["error"] = str(e)
            failed = True
            payload = None
        if "ce-specversion" in headers:
            event = from_binary_event(HTTPMessage(headers=headers, body=body.encode()))
            data = event.get_data()
            if isinstance(data, (bytes, str)):
                data = json.loads(data)
            out["ce"] = {
                "id": event.get_id(),
                "type": event.get_type(),
                "source": event.get_source(),
                "subject": event.get_subject(),
                "specversion": event.get_specversion(),
                "data_status": (data or {}).get("status"),
            }
        elif isinstance(payload, dict):
            out["type"] = payload.get("type")
        print(json.dumps(out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
