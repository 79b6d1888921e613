#!/usr/bin/env python3
"""Prints Eventarc-style storage CloudEvents made by the CloudEvents SDK.

tests/tests/events.rs posts them to /v1/events/cloudevents, so the bridge is
checked against an independent implementation of the HTTP binding rather than
against messages written by hand. One `google.cloud.storage.object.v1.finalized`
event for gs://BUCKET/NAME (generation GEN), in binary and in structured mode:

    {"binary": {"headers": {...}, "body": "..."}, "structured": {...}}

Usage: make_cloudevents.py BUCKET NAME GEN
"""

import json
import sys

from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent


def main() -> None:
    bucket, name, generation = sys.argv[1:4]
    data = {"bucket": bucket, "name": name, "generation": generation,
            "contentType": "image/png", "kind": "storage#object"}
    out = {}
    for mode, encode in (("binary", to_binary_event), ("structured", to_structured_event)):
        event = CloudEvent(
            attributes={
                "type": "google.cloud.storage.object.v1.finalized",
                "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
                "subject": f"objects/{name}",
                "id": f"sdk-{mode}-{generation}",
                "datacontenttype": "application/json",
            },
            data=data,
        )
        message = encode(event)
        out[mode] = {"headers": dict(message.headers), "body": message.body.decode()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
