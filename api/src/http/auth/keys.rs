//! API keys: who may call the API and what they may do.
//!
//! A key belongs to a *tenant* (the name logs and job records show) and
//! grants *scopes*. Keys are configured as text entries
//! `tenant:scopes:secret` (see [`config::AuthConfig`]); right after parsing,
//! the secret is replaced by its SHA-256 digest, so the running process
//! never keeps a plaintext key around and a key file may hold digests
//! (`sha256:<hex>`) instead of keys. The digest of a presented key is then
//! compared against every configured digest (the API does that, in
//! constant time).
//!
//! The types here never print a secret or a digest: [`ApiKey`] and the raw
//! entry type have hand-written `Debug` impls, and parse errors name the
//! entry by position (`api_keys entry 2`, `keys.txt line 7`), not by content.
//!
//! After the secret an entry may carry whitespace-separated attributes
//! (parsed by [`inferq_backends::tenant`]): `in=`/`out=` storage prefixes the
//! tenant may read and write, and `webhook-secret=` signing secrets.

pub mod config;

use std::fmt;
use std::str::FromStr;

use inferq_backends::fetch::fence::StorageFence;
use sha2::{Digest, Sha256};

pub use config::{AuthConfig, AuthConfigError};

/// Shortest plaintext key accepted: shorter ones are guessable.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest tenant name (it shows up in logs and job records).
pub const MAX_TENANT_LEN: usize = 64;

/// One permission a key can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Submit and cancel jobs.
    Submit,
    /// Read jobs, their outputs and the model catalog.
    Read,
    /// Everything: register models, and see and cancel every tenant's jobs.
    /// Implies [`Scope::Submit`] and [`Scope::Read`].
    Admin,
}

impl Scope {
    const ALL: [Scope; 3] = [Scope::Submit, Scope::Read, Scope::Admin];

    /// The name used in key entries and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Submit => 1,
            Scope::Read => 2,
            Scope::Admin => 4,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope `{s}` (expected submit, read or admin)"))
    }
}

/// The set of scopes a key carries.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope: what a caller gets when authentication is off.
    pub const ALL: Scopes = Scopes(1 | 2 | 4);

    /// Whether a holder of these scopes may do what `scope` guards. Admin
    /// implies every other scope, so an operator needs one key, not three.
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// Adds a scope.
    pub fn with(self, scope: Scope) -> Scopes {
        Scopes(self.0 | scope.bit())
    }

    /// Whether no scope is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        iter.into_iter().fold(Scopes::default(), Scopes::with)
    }
}

impl fmt::Display for Scopes {
    /// `submit+read` — the same spelling as in key entries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Scope::ALL
            .into_iter()
            .filter(|s| self.0 & s.bit() != 0)
            .map(Scope::as_str)
            .collect();
        f.write_str(&names.join("+"))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

/// A configured key: its tenant, its scopes and the SHA-256 digest of the
/// secret (the secret itself is not kept), and what the entry's attributes
/// grant the tenant: storage prefixes and webhook signing secrets.
#[derive(Clone)]
pub struct ApiKey {
    pub tenant: String,
    pub scopes: Scopes,
    pub digest: [u8; 32],
    /// The `in=`/`out=` prefixes; closed (no storage references) without any.
    pub fence: StorageFence,
    /// The `webhook-secret=` values, checked (at least 24 bytes each).
    pub webhook_secrets: Vec<String>,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("tenant", &self.tenant)
            .field("scopes", &self.scopes)
            .field("digest", &"<redacted>")
            .field("fence", &self.fence)
            .field("webhook_secrets", &self.webhook_secrets.len())
            .finish()
    }
}

/// The SHA-256 digest of a presented or configured key.
pub fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

impl ApiKey {
    /// Parses one `tenant:scopes:secret` entry. `scopes` is `+`-separated
    /// (`submit+read`); `secret` is the key itself (at least
    /// [`MIN_SECRET_LEN`] characters, no whitespace) or `sha256:<64 hex
    /// digits>`, the digest of the key.
    ///
    /// The error message never contains the secret, so callers can show it.
    pub fn parse(entry: &str) -> Result<ApiKey, String> {
        let (entry, attributes) = inferq_backends::tenant::split_entry(entry)?;
        let fence = attributes.fence().map_err(|e| e.to_string())?;
        inferq_backends::webhook::sign::Signer::new(&attributes.webhook_secrets)
            .map_err(|e| format!("webhook-secret #{}: {}", e.index + 1, e.reason))?;
        let mut parts = entry.splitn(3, ':');
        let (Some(tenant), Some(scopes), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("expected `tenant:scopes:secret`".into());
        };
        if tenant.is_empty()
            || tenant.len() > MAX_TENANT_LEN
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "tenant names use 1 to {MAX_TENANT_LEN} characters a-z, A-Z, 0-9, '-', '_', '.'"
            ));
        }
        let scopes = scopes
            .split('+')
            .map(str::parse)
            .collect::<Result<Scopes, _>>()?;
        let digest = match secret.strip_prefix("sha256:") {
            Some(hex) => {
                parse_hex_digest(hex).ok_or("a `sha256:` digest must be 64 hexadecimal digits")?
            }
            None if secret.chars().any(char::is_whitespace) => {
                return Err("the key contains whitespace".into());
            }
            None if secret.chars().count() < MIN_SECRET_LEN => {
                return Err(format!(
                    "the key is shorter than {MIN_SECRET_LEN} characters (generate one with `openssl rand -hex 32`)"
                ));
            }
            None => digest(secret.as_bytes()),
        };
        Ok(ApiKey {
            tenant: tenant.to_owned(),
            scopes,
            digest,
            fence,
            webhook_secrets: attributes.webhook_secrets,
        })
    }
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123";

    #[test]
    fn parses_plain_and_hashed_entries() {
        let k = ApiKey::parse(&format!("acme:submit+read:{SECRET}")).unwrap();
        assert_eq!(k.tenant, "acme");
        assert!(k.scopes.allows(Scope::Submit) && k.scopes.allows(Scope::Read));
        assert!(!k.scopes.allows(Scope::Admin));
        assert_eq!(k.digest, digest(SECRET.as_bytes()));

        let hex: String = digest(SECRET.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let h = ApiKey::parse(&format!("acme:read:sha256:{}", hex.to_uppercase())).unwrap();
        assert_eq!(h.digest, k.digest);
    }

    #[test]
    fn digest_is_sha256() {
        // FIPS 180-2 test vector.
        let d = digest(b"abc");
        assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(d[28..], [0xf2, 0x00, 0x15, 0xad]);
    }

    #[test]
    fn admin_implies_everything() {
        let admin: Scopes = [Scope::Admin].into_iter().collect();
        assert!(Scope::ALL.into_iter().all(|s| admin.allows(s)));
        let read: Scopes = [Scope::Read].into_iter().collect();
        assert!(!read.allows(Scope::Submit));
        assert_eq!(read.with(Scope::Submit).to_string(), "submit+read");
    }

    #[test]
    fn bad_entries_are_refused_without_echoing_the_secret() {
        for (entry, want) in [
            ("acme:read", "tenant:scopes:secret"),
            (":read:0123456789abcdef0123", "tenant names"),
            ("a b:read:0123456789abcdef0123", "tenant names"),
            ("acme:write:0123456789abcdef0123", "unknown scope `write`"),
            ("acme::0123456789abcdef0123", "unknown scope ``"),
            ("acme:read:short-secret", "shorter than 16"),
            ("acme:read:0123456789 abcdef0123", "whitespace"),
            ("acme:read:sha256:abcd", "64 hexadecimal"),
        ] {
            let err = ApiKey::parse(entry).unwrap_err();
            assert!(err.contains(want), "{entry}: {err}");
            let secret = entry.rsplit(':').next().unwrap();
            assert!(!err.contains(secret), "{entry}: {err}");
        }
    }

    #[test]
    fn attributes_give_a_fence_and_webhook_secrets() {
        let hook = format!("whsec_{}", "QUFB".repeat(8));
        let k = ApiKey::parse(&format!(
            "acme:submit:{SECRET} in=gs://photos/acme/ out=file:///srv/out/acme/ webhook-secret={hook}"
        ))
        .unwrap();
        assert!(!k.fence.is_closed());
        assert_eq!(k.webhook_secrets, std::slice::from_ref(&hook));
        assert!(!format!("{k:?}").contains(&hook));
        assert!(
            ApiKey::parse(&format!("acme:submit:{SECRET}"))
                .unwrap()
                .fence
                .is_closed()
        );
        let short = ApiKey::parse(&format!(
            "acme:submit:{SECRET} webhook-secret=whsec_c2hvcnQ="
        ))
        .unwrap_err();
        assert!(
            short.contains("webhook-secret #1") && short.contains("at least 24"),
            "{short}"
        );
        let bad = ApiKey::parse(&format!("acme:submit:{SECRET} in=photos/acme/")).unwrap_err();
        assert!(bad.contains("photos/acme/"), "{bad}");
    }

    #[test]
    fn debug_shows_no_digest() {
        let k = ApiKey::parse(&format!("acme:admin:{SECRET}")).unwrap();
        let shown = format!("{k:?}");
        assert!(shown.contains("acme") && shown.contains("admin"), "{shown}");
        assert!(!shown.contains(&format!("{:?}", k.digest)), "{shown}");
        assert!(!shown.contains(SECRET));
    }
}
