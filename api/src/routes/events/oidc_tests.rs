//! Tokens signed in the test with a freshly generated P-256 key (ring),
//! checked against a JWKS file written in the test.

use super::*;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;

const NOW: i64 = 1_800_000_000;

struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl Signer {
    fn new(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Signer {
            key,
            kid: kid.into(),
            rng,
        }
    }

    fn jwk(&self) -> serde_json::Value {
        let point = self.key.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
               "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
               "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
    }

    fn token(&self, claims: serde_json::Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.key.sign(&self.rng, signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn good_claims() -> serde_json::Value {
    json!({"iss": "https://accounts.google.com", "aud": "https://inferq.example/v1/events/gcs",
           "exp": NOW + 3600, "iat": NOW - 10, "email": "push@proj.iam.gserviceaccount.com",
           "email_verified": true, "sub": "1234"})
}

fn verifier(keys: &[&Signer]) -> (OidcVerifier, std::path::PathBuf) {
    let jwks = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    let path = std::env::temp_dir().join(format!("inferq-jwks-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, jwks.to_string()).unwrap();
    let policy = OidcPolicy {
        audience: "https://inferq.example/v1/events/gcs".into(),
        issuers: vec![
            "https://accounts.google.com".into(),
            "accounts.google.com".into(),
        ],
        emails: vec!["push@proj.iam.gserviceaccount.com".into()],
        jwks: path.display().to_string(),
        tenant: "pubsub".into(),
    };
    let fetcher = Fetcher::new(&inferq_backends::fetch::FetchConfig::default()).unwrap();
    (OidcVerifier::new(policy, fetcher), path)
}

#[tokio::test]
async fn valid_tokens_pass_and_each_bad_claim_is_named() {
    let signer = Signer::new("k1");
    let (v, path) = verifier(&[&signer]);
    v.verify(&signer.token(good_claims()), NOW).await.unwrap();
    let mut array_aud = good_claims();
    array_aud["aud"] = json!(["other", "https://inferq.example/v1/events/gcs"]);
    v.verify(&signer.token(array_aud), NOW).await.unwrap();

    let cases = [
        ("aud", json!("https://elsewhere"), TokenError::Claim("aud")),
        (
            "iss",
            json!("https://evil.example"),
            TokenError::Claim("iss"),
        ),
        ("exp", json!(NOW - 120), TokenError::Expired),
        ("iat", json!(NOW + 3000), TokenError::Claim("iat")),
        (
            "email",
            json!("someone@else.example"),
            TokenError::Claim("email"),
        ),
        (
            "email_verified",
            json!(false),
            TokenError::Claim("email_verified"),
        ),
    ];
    for (claim, value, want) in cases {
        let mut c = good_claims();
        c[claim] = value;
        assert_eq!(v.verify(&signer.token(c), NOW).await, Err(want), "{claim}");
    }
    let mut no_exp = good_claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        v.verify(&signer.token(no_exp), NOW).await,
        Err(TokenError::Claim("exp"))
    );
    // The largest expiry a token can state is far in the future, not an
    // overflow (it panicked in debug builds; found with the `jwt` target).
    let mut forever = good_claims();
    forever["exp"] = json!(i64::MAX);
    v.verify(&signer.token(forever), NOW).await.unwrap();
    let mut ancient = good_claims();
    ancient["exp"] = json!(i64::MIN);
    assert_eq!(
        v.verify(&signer.token(ancient), NOW).await,
        Err(TokenError::Expired)
    );
    // Within the clock-skew allowance an expiry just passed still counts.
    let mut skew = good_claims();
    skew["exp"] = json!(NOW - 30);
    v.verify(&signer.token(skew), NOW).await.unwrap();
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn forged_tampered_and_foreign_tokens_fail() {
    let signer = Signer::new("k1");
    let stranger = Signer::new("k1");
    let (v, path) = verifier(&[&signer]);
    // Same kid, another key: the signature does not verify.
    assert_eq!(
        v.verify(&stranger.token(good_claims()), NOW).await,
        Err(TokenError::Signature)
    );
    // A payload swapped under a valid signature.
    let token = signer.token(good_claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut c = good_claims();
    c["email"] = json!("admin@proj.iam.gserviceaccount.com");
    parts[1] = URL_SAFE_NO_PAD.encode(c.to_string());
    assert_eq!(
        v.verify(&parts.join("."), NOW).await,
        Err(TokenError::Signature)
    );
    // Unsigned and symmetric tokens are refused by algorithm.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(good_claims().to_string())
    );
    assert_eq!(
        v.verify(&none, NOW).await,
        Err(TokenError::Algorithm("none".into()))
    );
    let other_kid = Signer::new("k2");
    assert_eq!(
        v.verify(&other_kid.token(good_claims()), NOW).await,
        Err(TokenError::UnknownKey("k2".into()))
    );
    assert_eq!(v.verify("a.b", NOW).await, Err(TokenError::Malformed));
    let _ = std::fs::remove_file(path);
}
