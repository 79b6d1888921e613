//! Verifying the OIDC token a Pub/Sub push (or Eventarc) carries.
//!
//! A push subscription with authentication sends `Authorization: Bearer
//! <JWT>`, signed by Google for the subscription's service account. When
//! `--event-oidc-audience` is set, the event routes accept such a token
//! *instead of* an API key (Pub/Sub cannot send one) and refuse anything
//! else with 401. A token passes when:
//!
//! - its signature verifies under a key of the configured JWKS (`RS256`, as
//!   Google signs, or `ES256`), chosen by the header's `kid`;
//! - `iss` is one of the configured issuers, `aud` is the configured
//!   audience, `exp` is in the future and `iat`/`nbf` not in it (60 s of
//!   clock skew allowed);
//! - when service accounts are configured, `email` is one of them and
//!   `email_verified` is true.
//!
//! The JWKS is read from a URL (through the fetcher, so the SSRF policy
//! applies) or a file, cached, and read again after an hour or when a token
//! names a key id it does not know (at most every 30 s, so a flood of bogus
//! `kid`s cannot hammer the key server).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use tokio::sync::Mutex;

use inferq_backends::fetch::{Fetcher, StorageUri};

/// Clock skew tolerated on `exp`, `iat` and `nbf`.
const LEEWAY_SECS: i64 = 60;
/// How long a fetched key set is trusted.
const JWKS_TTL: Duration = Duration::from_secs(3600);
/// Least time between two fetches triggered by unknown key ids.
const REFETCH_MIN: Duration = Duration::from_secs(30);

/// What a token must satisfy (from the `--event-oidc-*` options).
#[derive(Debug, Clone)]
pub struct OidcPolicy {
    pub audience: String,
    pub issuers: Vec<String>,
    /// Allowed `email` claims; never empty when built from the options
    /// (the API refuses to start without one).
    pub emails: Vec<String>,
    /// Where the signing keys are: an `https://` URL or a file path.
    pub jwks: String,
    /// The tenant jobs made by verified pushes belong to.
    pub tenant: String,
}

/// OIDC verification switched on without naming who may push.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "--event-oidc-audience is set but --event-oidc-emails (INFERQ_EVENT_OIDC_EMAILS) is empty: \
     any Google service account could push events; list the push subscription's service account"
)]
pub struct NoAllowedEmails;

/// Why a token was refused (the message goes into the 401).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the token is not a JWT")]
    Malformed,
    #[error("the token is signed with `{0}`; only RS256 and ES256 are accepted")]
    Algorithm(String),
    #[error("no key with id `{0}` in the configured key set")]
    UnknownKey(String),
    #[error("the signature does not verify")]
    Signature,
    #[error("claim `{0}` is missing or wrong")]
    Claim(&'static str),
    #[error("the token has expired")]
    Expired,
    #[error("the signing keys could not be read: {0}")]
    Keys(String),
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<serde_json::Value>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    email: Option<String>,
    email_verified: Option<serde_json::Value>,
}

/// One key of a JWKS.
#[derive(Debug, Clone, Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: String,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

struct Cache {
    keys: HashMap<String, Jwk>,
    fetched: Option<Instant>,
}

/// Verifies push tokens against a policy, caching the key set.
pub struct OidcVerifier {
    policy: OidcPolicy,
    fetcher: Fetcher,
    cache: Mutex<Cache>,
}

fn b64(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed)
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("policy", &self.policy)
            .finish()
    }
}

impl OidcVerifier {
    pub fn new(policy: OidcPolicy, fetcher: Fetcher) -> Self {
        OidcVerifier {
            policy,
            fetcher,
            cache: Mutex::new(Cache {
                keys: HashMap::new(),
                fetched: None,
            }),
        }
    }

    pub fn policy(&self) -> &OidcPolicy {
        &self.policy
    }

    /// Checks `token` as of `now` (Unix seconds).
    pub async fn verify(&self, token: &str, now: i64) -> Result<(), TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| TokenError::Malformed)?;
        if header.alg != "RS256" && header.alg != "ES256" {
            return Err(TokenError::Algorithm(header.alg));
        }
        let kid = header.kid.unwrap_or_default();
        let key = self.key(&kid).await?;
        let signed = &token[..h.len() + 1 + p.len()];
        check_signature(&header.alg, &key, signed.as_bytes(), &b64(s)?)?;
        let claims: Claims = serde_json::from_slice(&b64(p)?).map_err(|_| TokenError::Malformed)?;
        self.check_claims(&claims, now)
    }

    fn check_claims(&self, c: &Claims, now: i64) -> Result<(), TokenError> {
        let p = &self.policy;
        if !c.iss.as_ref().is_some_and(|i| p.issuers.contains(i)) {
            return Err(TokenError::Claim("iss"));
        }
        let aud_ok = match &c.aud {
            Some(serde_json::Value::String(a)) => *a == p.audience,
            Some(serde_json::Value::Array(list)) => list.iter().any(|a| *a == *p.audience),
            _ => false,
        };
        if !aud_ok {
            return Err(TokenError::Claim("aud"));
        }
        match c.exp {
            // Saturating: `exp` is the token's, up to i64::MAX.
            Some(exp) if exp.saturating_add(LEEWAY_SECS) > now => {}
            Some(_) => return Err(TokenError::Expired),
            None => return Err(TokenError::Claim("exp")),
        }
        if c.iat.is_some_and(|t| t > now + LEEWAY_SECS) {
            return Err(TokenError::Claim("iat"));
        }
        if c.nbf.is_some_and(|t| t > now + LEEWAY_SECS) {
            return Err(TokenError::Claim("nbf"));
        }
        if !p.emails.is_empty() {
            if !c.email.as_ref().is_some_and(|e| p.emails.contains(e)) {
                return Err(TokenError::Claim("email"));
            }
            let verified = matches!(&c.email_verified, Some(serde_json::Value::Bool(true)))
                || matches!(&c.email_verified, Some(serde_json::Value::String(s)) if s == "true");
            if !verified {
                return Err(TokenError::Claim("email_verified"));
            }
        }
        Ok(())
    }

    /// The key named `kid`, reading the key set when it is stale or the
    /// id is unknown.
    async fn key(&self, kid: &str) -> Result<Jwk, TokenError> {
        let mut cache = self.cache.lock().await;
        let stale = cache.fetched.is_none_or(|t| t.elapsed() > JWKS_TTL);
        let unknown = !cache.keys.contains_key(kid);
        let may_refetch = cache.fetched.is_none_or(|t| t.elapsed() > REFETCH_MIN);
        if stale || (unknown && may_refetch) {
            match self.fetch_keys().await {
                Ok(keys) => {
                    cache.keys = keys;
                    cache.fetched = Some(Instant::now());
                }
                // A failed refresh keeps the keys there are.
                Err(e) if !cache.keys.is_empty() => {
                    tracing::warn!(error = %e, "JWKS refresh failed; using cached keys");
                }
                Err(e) => return Err(e),
            }
        }
        cache
            .keys
            .get(kid)
            .or_else(|| {
                (kid.is_empty() && cache.keys.len() == 1)
                    .then(|| cache.keys.values().next())
                    .flatten()
            })
            .cloned()
            .ok_or_else(|| TokenError::UnknownKey(kid.to_owned()))
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, Jwk>, TokenError> {
        let src = &self.policy.jwks;
        let bytes = if src.starts_with("http://") || src.starts_with("https://") {
            let uri = StorageUri::parse(src).map_err(|e| TokenError::Keys(e.to_string()))?;
            self.fetcher
                .get(&uri)
                .await
                .map_err(|e| TokenError::Keys(e.to_string()))?
                .to_vec()
        } else {
            tokio::fs::read(src)
                .await
                .map_err(|e| TokenError::Keys(format!("{src}: {e}")))?
        };
        let set: JwkSet =
            serde_json::from_slice(&bytes).map_err(|e| TokenError::Keys(format!("{src}: {e}")))?;
        Ok(set
            .keys
            .into_iter()
            .map(|k| (k.kid.clone().unwrap_or_default(), k))
            .collect())
    }
}

fn check_signature(alg: &str, key: &Jwk, signed: &[u8], sig: &[u8]) -> Result<(), TokenError> {
    let field = |v: &Option<String>| {
        v.as_deref()
            .map(b64)
            .transpose()?
            .ok_or(TokenError::Signature)
    };
    let ok = match (alg, key.kty.as_str()) {
        ("RS256", "RSA") => RsaPublicKeyComponents {
            n: field(&key.n)?,
            e: field(&key.e)?,
        }
        .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, sig)
        .is_ok(),
        ("ES256", "EC") if key.crv.as_deref() == Some("P-256") => {
            let mut point = vec![4u8];
            point.extend(field(&key.x)?);
            point.extend(field(&key.y)?);
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, sig)
                .is_ok()
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(TokenError::Signature)
    }
}

#[cfg(test)]
#[path = "oidc_tests.rs"]
mod tests;
