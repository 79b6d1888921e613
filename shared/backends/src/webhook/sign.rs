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

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;

/// Prefix of secrets in the Standard Webhooks format.
pub const SECRET_PREFIX: &str = "whsec_";

/// A secret that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("webhook secret #{index}: {reason}")]
pub struct SecretError {
    pub index: usize,
    pub reason: String,
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
    /// 16 bytes of key each. An empty list gives `None`: webhooks are off.
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
            })?;
            if bytes.len() < 16 {
                return Err(SecretError {
                    index,
                    reason: format!(
                        "{} bytes of key; use at least 16 (24 to 64 is usual)",
                        bytes.len()
                    ),
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
    fn bad_secrets_are_refused_and_none_means_off() {
        assert!(Signer::new(&[]).unwrap().is_none());
        assert!(Signer::new(&["  ".into()]).unwrap().is_none());
        let e = Signer::new(&["whsec_!!!".into()]).unwrap_err();
        assert_eq!(e.index, 0);
        let e = Signer::new(&[SECRET.into(), "whsec_c2hvcnQ=".into()]).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(e.reason.contains("bytes of key"), "{e}");
    }
}
