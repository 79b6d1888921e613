#!/usr/bin/env python3
"""Signs SNS HTTP(S) deliveries for the SNS tests (api/src/routes/events/sns, tests/tests/events.rs).

The tests cannot get messages signed by AWS, so this plays SNS's part with an
independent implementation (`cryptography` from PyPI): an RSA-2048 key, a self-signed
X.509 certificate for it (served by the test in place of SigningCertURL), and each
message signed over the canonical text AWS documents for its Type, SHA1withRSA for
SignatureVersion 1 and SHA256withRSA for 2.

Usage: make_sns_messages.py --out DIR --messages FILE
FILE holds a JSON list of unsigned envelopes (Type, MessageId, TopicArn, Message,
Timestamp, SignatureVersion, SigningCertURL, and Subject or SubscribeURL/Token).
Writes DIR/cert.pem, DIR/key.pem (reused when present) and DIR/signed.json (the list
with Signature filled in).
"""

import argparse
import base64
import datetime
import json
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

NOTIFICATION_FIELDS = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
CONFIRMATION_FIELDS = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]


def canonical(msg: dict) -> bytes:
    fields = NOTIFICATION_FIELDS if msg["Type"] == "Notification" else CONFIRMATION_FIELDS
    text = "".join(f"{name}\n{msg[name]}\n" for name in fields if name in msg)
    return text.encode()


def key_and_cert(out: str):
    key_path = os.path.join(out, "key.pem")
    if os.path.exists(key_path):
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test-signing.inferq")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    with open(os.path.join(out, "cert.pem"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--messages", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    key = key_and_cert(args.out)
    with open(args.messages) as f:
        messages = json.load(f)
    for msg in messages:
        digest = hashes.SHA1() if msg["SignatureVersion"] == "1" else hashes.SHA256()
        sig = key.sign(canonical(msg), padding.PKCS1v15(), digest)
        msg["Signature"] = base64.b64encode(sig).decode()
    with open(os.path.join(args.out, "signed.json"), "w") as f:
        json.dump(messages, f, indent=1)


if __name__ == "__main__":
    main()
