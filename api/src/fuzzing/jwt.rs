//! Fuzz harness body of target `jwt`: the OIDC push token check of the
//! event routes ([`OidcVerifier::verify`]), with a key set read from a
//! file as in production, no network.
//!
//! The input is a token. It is verified twice: as sent, which must fail
//! (the signing key is generated per process, so a token the fuzzer made
//! can only pass by a forged or skipped signature check), and with its
//! header and payload re-signed by that key, which takes it past the
//! signature to the header, key and claim checks; a token accepted then
//! must carry claims the policy allows, read here independently.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::routes::events::oidc::{OidcPolicy, OidcVerifier};

/// The instant tokens are checked at (Unix seconds).
const NOW: i64 = 1_800_000_000;
/// The policy's audience.
const AUDIENCE: &str = "https://inferq.example/v1/events/gcs";
/// The policy's first issuer (the second is the same without scheme).
const ISSUER: &str = "https://accounts.google.com";
/// The one service account the policy allows.
const EMAIL: &str = "push@proj.iam.gserviceaccount.com";

struct Harness {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    verifier: OidcVerifier,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("P-256 key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("P-256 key");
        let point = key.public_key().as_ref();
        // The EC key the tokens are re-signed with (kid `k1`), and an RSA
        // key (kid `r1`, a made-up modulus) so RS256 reaches ring too.
        let modulus: Vec<u8> = (0..256u32).map(|i| (i * 37 + 0x81) as u8 | 1).collect();
        let jwks = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "k1",
             "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])},
            {"kty": "RSA", "kid": "r1", "n": URL_SAFE_NO_PAD.encode(&modulus), "e": "AQAB"},
        ]});
        let path = std::env::temp_dir().join(format!("inferq-fuzz-jwks-{}.json", std::process::id()));
        std::fs::write(&path, jwks.to_string()).expect("write the fuzz JWKS");
        let policy = OidcPolicy {
            audience: AUDIENCE.into(),
            issuers: vec![ISSUER.into(), "accounts.google.com".into()],
            emails: vec![EMAIL.into()],
            jwks: path.display().to_string(),
            tenant: "fuzz".into(),
        };
        let fetcher = inferq_backends::fetch::Fetcher::new(&Default::default()).expect("fetcher");
        Harness {
            key,
            rng,
            verifier: OidcVerifier::new(policy, fetcher),
        }
    })
}

/// `header.payload` of `token` signed with the harness key, if the token
/// has at least two parts.
fn resign(token: &str) -> Option<String> {
    let mut parts = token.splitn(3, '.');
    let (h, p) = (parts.next()?, parts.next()?);
    let signed = format!("{h}.{p}");
    let h = harness();
    let sig = h.key.sign(&h.rng, signed.as_bytes()).expect("sign");
    Some(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
}

/// The claims of an accepted token, read without the verifier's code.
fn assert_allowed(token: &str) {
    let payload = token.split('.').nth(1).expect("three parts");
    let raw = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("an accepted payload is base64url");
    let c: Value = serde_json::from_slice(&raw).expect("an accepted payload is JSON");
    let iss = c["iss"].as_str().expect("iss");
    assert!(iss == ISSUER || iss == "accounts.google.com", "{c}");
    assert!(
        c["aud"] == AUDIENCE
            || c["aud"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == AUDIENCE)),
        "{c}"
    );
    let exp = c["exp"].as_i64().expect("exp");
    assert!(exp as i128 + 60 > NOW as i128, "{c}");
    for claim in ["iat", "nbf"] {
        if let Some(t) = c[claim].as_i64() {
            assert!(t as i128 <= NOW as i128 + 60, "{c}");
        }
    }
    assert_eq!(c["email"], EMAIL, "{c}");
    assert!(
        c["email_verified"] == true || c["email_verified"] == "true",
        "{c}"
    );
}

/// `jwt`: no token passes as sent; re-signed, a token passes only with
/// claims the policy allows. Returns whether the re-signed token passed.
pub fn jwt(data: &[u8]) -> bool {
    let Ok(token) = std::str::from_utf8(data) else {
        return false;
    };
    let h = harness();
    let as_sent = super::block_on(h.verifier.verify(token, NOW));
    assert!(
        as_sent.is_err(),
        "a token passed without our signature: {token}"
    );
    let Some(resigned) = resign(token) else {
        return false;
    };
    let passed = super::block_on(h.verifier.verify(&resigned, NOW)).is_ok();
    if passed {
        assert_allowed(&resigned);
    }
    passed
}
