//! Standard Webhooks signatures (<https://www.standardwebhooks.com>).
//!
//! A delivery carries three headers: `webhook-id` (stable across retries,
//! so a receiver can drop duplicates), `webhook-timestamp` (Unix seconds of
//! *this* attempt, so a receiver can refuse replays older than its
//! tolerance) and `webhook-signature`: `v1,<base64 HMAC-SHA256>` of
//! `{id}.{timestamp}.{body}` under each configured secret, space separated.
//! Several secrets let an operator rotate keys: receivers accept a message
//! if any signature verifies. Retries are signed afresh with a new
//! timestamp, so a slow retry schedule never trips the receiver's window.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;

/// Prefix of secrets in the Standard Webhooks format.
pub const SECRET_PREFIX: &str = "whsec_";
/// Fewest bytes of key a secret may have: a shorter HMAC key could be
/// guessed, and then anyone could forge notifications.
pub const MIN_SECRET_BYTES: usize = 24;

/// A secret that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("webhook secret #{index}{}: {reason}", tenant.as_ref().map(|t| format!(" of tenant {t}")).unwrap_or_default())]
pub struct SecretError {
    pub index: usize,
    pub reason: String,
    /// The tenant whose key entry holds the secret; `None` for `--webhook-secrets`.
    pub tenant: Option<String>,
}

/// Which secrets sign a notification: each tenant's own (from its API key
/// entries) for its jobs and batches, the global `--webhook-secrets` only for
/// those without an owner (submitted with authentication off). A tenant's
/// notification is never signed with the global secret, and one tenant's
/// secret never signs another's, so no tenant can forge another's.
#[derive(Clone, Debug, Default)]
pub struct Signers {
    global: Option<Signer>,
    tenants: HashMap<String, Signer>,
}

impl Signers {
    /// From the global secrets and each tenant's.
    pub fn new(
        global: &[String],
        tenants: &HashMap<String, Vec<String>>,
    ) -> Result<Self, SecretError> {
        let mut out = Signers {
            global: Signer::new(global)?,
            tenants: HashMap::new(),
        };
        for (tenant, secrets) in tenants {
            let signer = Signer::new(secrets).map_err(|e| SecretError {
                tenant: Some(tenant.clone()),
                ..e
            })?;
            if let Some(s) = signer {
                out.tenants.insert(tenant.clone(), s);
            }
        }
        Ok(out)
    }

    /// Whether no secret at all is configured (webhooks off).
    pub fn is_empty(&self) -> bool {
        self.global.is_none() && self.tenants.is_empty()
    }

    /// The signer for a notification about something `owner` submitted.
    pub fn for_owner(&self, owner: Option<&str>) -> Option<&Signer> {
        match owner {
            Some(tenant) => self.tenants.get(tenant),
            None => self.global.as_ref(),
        }
    }
}

/// Signs webhook deliveries with one or more secrets.
#[derive(Clone)]
pub struct Signer {
    keys: Vec<hmac::Key>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} key(s))", self.keys.len())
    }
}

/// The headers of one signed delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedHeaders {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
}

impl Signer {
    /// Parses `whsec_<base64>` secrets (the prefix is optional); at least
    /// [`MIN_SECRET_BYTES`] bytes of key each. An empty list gives `None`:
    /// webhooks are off.
    pub fn new(secrets: &[String]) -> Result<Option<Self>, SecretError> {
        let mut keys = Vec::new();
        for (index, secret) in secrets.iter().enumerate() {
            let s = secret.trim();
            if s.is_empty() {
                continue;
            }
            let raw = s.strip_prefix(SECRET_PREFIX).unwrap_or(s);
            let bytes = STANDARD.decode(raw).map_err(|e| SecretError {
                index,
                reason: format!("not base64 after `{SECRET_PREFIX}`: {e}"),
                tenant: None,
            })?;
            if bytes.len() < MIN_SECRET_BYTES {
                return Err(SecretError {
                    index,
                    reason: format!(
                        "{} bytes of key; use at least {MIN_SECRET_BYTES} random bytes \
                         (whsec_$(head -c 32 /dev/urandom | base64))",
                        bytes.len()
                    ),
                    tenant: None,
                });
            }
            keys.push(hmac::Key::new(hmac::HMAC_SHA256, &bytes));
        }
        Ok((!keys.is_empty()).then_some(Signer { keys }))
    }

    /// Signs `body` for message `id` at `timestamp` (Unix seconds).
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> SignedHeaders {
        let signature = self
            .keys
            .iter()
            .map(|key| {
                let mut ctx = hmac::Context::with_key(key);
                ctx.update(id.as_bytes());
                ctx.update(b".");
                ctx.update(timestamp.to_string().as_bytes());
                ctx.update(b".");
                ctx.update(body);
                format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
            })
            .collect::<Vec<_>>()
            .join(" ");
        SignedHeaders {
            id: id.to_owned(),
            timestamp,
            signature,
        }
    }

    /// Checks a signature header the way a receiver does (any `v1` entry
    /// verifying under any key); used by the tests and by `inferq` tooling.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let mut msg = Vec::with_capacity(body.len() + 64);
        msg.extend_from_slice(format!("{id}.{timestamp}.").as_bytes());
        msg.extend_from_slice(body);
        header.split(' ').any(|entry| {
            let Some(b64) = entry.strip_prefix("v1,") else {
                return false;
            };
            let Ok(tag) = STANDARD.decode(b64) else {
                return false;
            };
            self.keys
                .iter()
                .any(|key| hmac::verify(key, &msg, &tag).is_ok())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification's reference
    // libraries: this secret, id, timestamp and body sign to this value.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_reference_vector() {
        let signer = Signer::new(&[SECRET.into()]).unwrap().unwrap();
        let h = signer.sign(ID, TS, BODY);
        assert_eq!(h.signature, EXPECTED);
        assert!(signer.verify(ID, TS, BODY, &h.signature));
        assert!(!signer.verify(ID, TS + 1, BODY, &h.signature));
        assert!(!signer.verify(ID, TS, b"{}", &h.signature));
    }

    #[test]
    fn rotation_signs_with_every_key() {
        let other = format!("{SECRET_PREFIX}{}", STANDARD.encode([7u8; 32]));
        let both = Signer::new(&[other.clone(), SECRET.into()])
            .unwrap()
            .unwrap();
        let h = both.sign(ID, TS, BODY);
        let parts: Vec<&str> = h.signature.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], EXPECTED);
        let old_only = Signer::new(&[SECRET.into()]).unwrap().unwrap();
        assert!(old_only.verify(ID, TS, BODY, &h.signature));
    }

    #[test]
    fn each_owner_gets_its_own_signer_and_only_ownerless_jobs_the_global_one() {
        let a = format!("{SECRET_PREFIX}{}", STANDARD.encode([1u8; 32]));
        let b = format!("{SECRET_PREFIX}{}", STANDARD.encode([2u8; 32]));
        let tenants = HashMap::from([("a".to_owned(), vec![a.clone()])]);
        let signers = Signers::new(std::slice::from_ref(&b), &tenants).unwrap();
        let sig_a = signers.for_owner(Some("a")).unwrap().sign(ID, TS, BODY);
        let only_a = Signer::new(&[a]).unwrap().unwrap();
        let only_b = Signer::new(&[b]).unwrap().unwrap();
        assert!(only_a.verify(ID, TS, BODY, &sig_a.signature));
        assert!(!only_b.verify(ID, TS, BODY, &sig_a.signature));
        let sig_none = signers.for_owner(None).unwrap().sign(ID, TS, BODY);
        assert!(only_b.verify(ID, TS, BODY, &sig_none.signature));
        // A tenant without its own secret gets no signer, not the global one.
        assert!(signers.for_owner(Some("c")).is_none());
        let bad = HashMap::from([("t".to_owned(), vec!["whsec_c2hvcnQ=".to_owned()])]);
        let e = Signers::new(&[], &bad).unwrap_err();
        assert!(e.to_string().contains("of tenant t"), "{e}");
        assert!(Signers::new(&[], &HashMap::new()).unwrap().is_empty());
    }

    #[test]
    fn bad_secrets_are_refused_and_none_means_off() {
        assert!(Signer::new(&[]).unwrap().is_none());
        assert!(Signer::new(&["  ".into()]).unwrap().is_none());
        let e = Signer::new(&["whsec_!!!".into()]).unwrap_err();
        assert_eq!(e.index, 0);
        let e = Signer::new(&[SECRET.into(), "whsec_c2hvcnQ=".into()]).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(e.reason.contains("bytes of key"), "{e}");
        // 23 bytes are refused, 24 accepted.
        let e = Signer::new(&[format!("whsec_{}", STANDARD.encode([1u8; 23]))]).unwrap_err();
        assert!(e.reason.contains("at least 24"), "{e}");
        assert!(
            Signer::new(&[format!("whsec_{}", STANDARD.encode([1u8; 24]))])
                .unwrap()
                .is_some()
        );
    }
}
