#!/usr/bin/env python3
"""Writes a JWKS and RS256 push tokens for the OIDC test (tests/tests/events.rs).

The test cannot call Google, so it plays Google's part with an independent
implementation: a fresh RSA-2048 key from `cryptography` (PyPI), a JWKS with its
public half (as https://www.googleapis.com/oauth2/v3/certs serves it) and tokens
shaped like the ones a Pub/Sub push subscription sends, signed RS256. Besides a
valid token it writes one wrong in each way InferQ must refuse.

Usage: make_push_tokens.py --out DIR --audience AUD --email SA_EMAIL
Writes DIR/jwks.json and DIR/tokens.json ({"valid": ..., "wrong_audience": ..., ...}).
"""

import argparse
import base64
import json
import os
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def sign(key, kid: str, claims: dict) -> str:
    header = {"alg": "RS256", "kid": kid, "typ": "JWT"}
    signed = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    sig = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signed}.{b64url(sig)}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--audience", required=True)
    ap.add_argument("--email", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = "test-key-1"
    pub = key.public_key().public_numbers()
    jwks = {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
                      "n": uint(pub.n), "e": uint(pub.e)}]}
    now = int(time.time())
    good = {"iss": "https://accounts.google.com", "aud": args.audience, "azp": "1234",
            "email": args.email, "email_verified": True, "iat": now, "exp": now + 3600,
            "sub": "1234"}
    tokens = {
        "valid": sign(key, kid, good),
        "wrong_audience": sign(key, kid, {**good, "aud": "https://elsewhere.example/"}),
        "expired": sign(key, kid, {**good, "iat": now - 7200, "exp": now - 3600}),
        "wrong_email": sign(key, kid, {**good, "email": "intruder@evil.example"}),
        "forged": sign(stranger, kid, good),
    }
    with open(os.path.join(args.out, "jwks.json"), "w", encoding="utf-8") as f:
        json.dump(jwks, f)
    with open(os.path.join(args.out, "tokens.json"), "w", encoding="utf-8") as f:
        json.dump(tokens, f)


if __name__ == "__main__":
    main()
