//! Who a request comes from: the [`Principal`] handlers receive, and the
//! [`Authenticator`] that establishes it from an API key in constant time.
//!
//! Kept apart from the middleware (the parent module) so the application
//! state can hold an authenticator without the two files importing each
//! other.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use inferq_backends::fetch::fence::{Access, StorageFence};
use inferq_backends::tenant::{TenantAttributes, TenantDirectory};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::http::auth::keys::{ApiKey, AuthConfig, AuthConfigError, Scope, Scopes, digest};
use crate::http::error::ApiError;

/// The caller of a request, as established by [`super::authenticate`].
#[derive(Debug, Clone)]
pub struct Principal {
    tenant: Option<Arc<str>>,
    scopes: Scopes,
}

impl Principal {
    /// The caller when authentication is off: no tenant, every scope.
    pub fn anonymous() -> Self {
        Principal {
            tenant: None,
            scopes: Scopes::ALL,
        }
    }

    /// A caller authenticated by other means than an API key (a verified
    /// push token), acting as `tenant` with `scopes`.
    pub fn service(tenant: &str, scopes: Scopes) -> Self {
        Principal {
            tenant: Some(Arc::from(tenant)),
            scopes,
        }
    }

    /// The tenant of the caller's key; `None` when authentication is off.
    /// Per-tenant state (job ownership, idempotency keys) is keyed on this.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Whether the caller may do what `scope` guards.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.allows(scope)
    }

    /// Whether the caller may see a job owned by `owner`. Admin keys (and
    /// the anonymous principal) see every job; any other key sees only its
    /// own tenant's jobs — not jobs submitted while authentication was off.
    pub fn can_see(&self, owner: Option<&str>) -> bool {
        self.sees_every_job() || (self.tenant.is_some() && owner == self.tenant())
    }

    /// Whether [`Principal::can_see`] is true for every job.
    pub fn sees_every_job(&self) -> bool {
        self.allows(Scope::Admin)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    /// The principal [`super::authenticate`] stored. Its absence means a route was
    /// registered outside the authenticated router — refused, not waved
    /// through.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("route is not behind authentication".into()))
    }
}

/// The configured keys, or authentication switched off.
pub struct Authenticator {
    /// `None`: authentication is off.
    keys: Option<Vec<ApiKey>>,
    /// Per tenant, the union of its keys' grants (several keys of one
    /// tenant, e.g. while rotating, act as one); the worker builds the same
    /// directory from the same entries.
    tenants: TenantDirectory,
}

/// The storage policy for one owner's jobs: `None` means no per-tenant fence
/// (authentication off, or a tenant that has no key, i.e. jobs made by
/// operator-defined event rules); the global fetch policy applies either way.
pub type FenceFor = Option<Arc<StorageFence>>;

/// Refuses a reference outside the owner's storage prefixes (403
/// `uri_forbidden`, naming the reference and the fence). No fence: the
/// global policy alone decides (authentication off).
pub fn check_fence(fence: &FenceFor, access: Access, uri: &str) -> Result<(), ApiError> {
    match fence {
        Some(f) => f.check(access, uri).map_err(ApiError::from),
        None => Ok(()),
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenants: Option<Vec<&str>> = self
            .keys
            .as_ref()
            .map(|k| k.iter().map(|k| k.tenant.as_str()).collect());
        f.debug_struct("Authenticator")
            .field("tenants", &tenants)
            .finish()
    }
}

impl Authenticator {
    /// No authentication: every request is [`Principal::anonymous`].
    pub fn disabled() -> Self {
        Authenticator {
            keys: None,
            tenants: TenantDirectory::off(),
        }
    }

    /// Authentication with these keys (none means nobody gets in).
    pub fn with_keys(keys: Vec<ApiKey>) -> Self {
        let grants = keys.iter().map(|key| {
            let attrs = TenantAttributes {
                inputs: key.fence.prefixes(Access::Read).to_vec(),
                outputs: key.fence.prefixes(Access::Write).to_vec(),
                webhook_secrets: key.webhook_secrets.clone(),
            };
            (key.tenant.clone(), attrs)
        });
        // The prefixes were normalised (and so checked) when the keys were
        // parsed; were one refused now, its tenant's fence stays closed.
        let tenants = TenantDirectory::new(grants).unwrap_or_else(|e| {
            tracing::error!(error = %e, "storage prefixes refused; every fence closed");
            let closed = keys
                .iter()
                .map(|k| (k.tenant.clone(), TenantAttributes::default()));
            TenantDirectory::new(closed).unwrap_or_default()
        });
        Authenticator {
            keys: Some(keys),
            tenants,
        }
    }

    /// The storage fence for jobs and batches of `owner` (see [`FenceFor`]).
    /// With authentication on, a job without an owner gets a closed fence.
    pub fn fence_for(&self, owner: Option<&str>) -> FenceFor {
        self.tenants.fence_for(owner)
    }

    /// Whether jobs of `owner` may ask for webhooks: with authentication on,
    /// only when the tenant's key entries carry a `webhook-secret=` (its
    /// notifications are signed with that, never with the global secret);
    /// with it off, when the global `--webhook-secrets` are set.
    pub fn webhooks_allowed(&self, owner: Option<&str>, global: bool) -> bool {
        self.tenants.webhooks_allowed(owner, global)
    }

    /// The tenants' fences and webhook secrets (for the embedded server's
    /// worker side and webhook dispatcher).
    pub fn tenants(&self) -> &TenantDirectory {
        &self.tenants
    }

    /// From the `auth` option group; fails on bad entries and on
    /// authentication without keys.
    pub fn from_config(config: &AuthConfig) -> Result<Self, AuthConfigError> {
        if !config.auth {
            return Ok(Self::disabled());
        }
        let keys = config.keys()?;
        let tenants: Vec<&str> = keys.iter().map(|k| k.tenant.as_str()).collect();
        tracing::info!(keys = keys.len(), ?tenants, "API key authentication on");
        Ok(Self::with_keys(keys))
    }

    /// Whether requests need a key.
    pub fn enabled(&self) -> bool {
        self.keys.is_some()
    }

    /// The principal for a request's headers.
    pub fn principal(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let Some(keys) = &self.keys else {
            return Ok(Principal::anonymous());
        };
        let token = bearer_token(headers)?;
        let key = find_key(keys, token.as_bytes())
            .ok_or_else(|| ApiError::Unauthorized("the API key is not valid".into()))?;
        Ok(Principal {
            tenant: Some(Arc::from(key.tenant.as_str())),
            scopes: key.scopes,
        })
    }
}

/// The key of the one `Authorization: Bearer <key>` header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let unauthorized = |m: &str| Err(ApiError::Unauthorized(m.into()));
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return unauthorized(
            "this API needs a key: send `Authorization: Bearer <key>` (exactly one such header)",
        );
    };
    let Ok(value) = value.to_str() else {
        return unauthorized("the Authorization header is not valid ASCII");
    };
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return unauthorized("the Authorization header must be `Bearer <key>`");
    }
    Ok(token)
}

/// The configured key whose digest equals the presented key's digest.
///
/// Every configured digest is compared, in constant time, whatever matched
/// earlier: the time taken depends only on the number of keys.
fn find_key<'a>(keys: &'a [ApiKey], presented: &[u8]) -> Option<&'a ApiKey> {
    let presented = digest(presented);
    let mut found = subtle::Choice::from(0);
    let mut index = 0u32;
    for (i, key) in keys.iter().enumerate() {
        let equal = presented[..].ct_eq(&key.digest[..]);
        index.conditional_assign(&(i as u32), equal);
        found |= equal;
    }
    bool::from(found).then(|| &keys[index as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn keys() -> Vec<ApiKey> {
        [
            "a:read:aaaaaaaaaaaaaaaaaaaa",
            "b:submit:bbbbbbbbbbbbbbbbbbbb",
            "c:admin:cccccccccccccccccccc",
        ]
        .iter()
        .map(|e| ApiKey::parse(e).unwrap())
        .collect()
    }

    #[test]
    fn finds_each_key_and_no_other() {
        let keys = keys();
        for (secret, tenant) in [
            ("aaaaaaaaaaaaaaaaaaaa", "a"),
            ("bbbbbbbbbbbbbbbbbbbb", "b"),
            ("cccccccccccccccccccc", "c"),
        ] {
            assert_eq!(find_key(&keys, secret.as_bytes()).unwrap().tenant, tenant);
        }
        assert!(find_key(&keys, b"aaaaaaaaaaaaaaaaaaab").is_none());
        assert!(find_key(&keys, b"").is_none());
        assert!(find_key(&[], b"aaaaaaaaaaaaaaaaaaaa").is_none());
    }

    #[test]
    fn bearer_header_forms() {
        let auth = Authenticator::with_keys(keys());
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            auth.principal(&h)
        };
        assert_eq!(
            with("Bearer aaaaaaaaaaaaaaaaaaaa").unwrap().tenant(),
            Some("a")
        );
        assert_eq!(
            with("bearer   cccccccccccccccccccc ").unwrap().tenant(),
            Some("c")
        );
        assert!(with("Basic aaaaaaaaaaaaaaaaaaaa").is_err());
        assert!(with("Bearer").is_err());
        assert!(with("aaaaaaaaaaaaaaaaaaaa").is_err());
        assert!(auth.principal(&HeaderMap::new()).is_err());
        let mut two = HeaderMap::new();
        two.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer aaaaaaaaaaaaaaaaaaaa"),
        );
        two.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer cccccccccccccccccccc"),
        );
        assert!(auth.principal(&two).is_err());
    }

    #[test]
    fn visibility_rules() {
        let auth = Authenticator::with_keys(keys());
        let p = |s: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {s}")).unwrap(),
            );
            auth.principal(&h).unwrap()
        };
        let a = p("aaaaaaaaaaaaaaaaaaaa");
        assert!(a.can_see(Some("a")));
        assert!(!a.can_see(Some("b")));
        assert!(!a.can_see(None));
        let admin = p("cccccccccccccccccccc");
        assert!(admin.can_see(Some("a")) && admin.can_see(None));
        let anon = Principal::anonymous();
        assert!(anon.can_see(Some("a")) && anon.can_see(None));
        assert_eq!(anon.tenant(), None);
        assert!(Scope::Admin.as_str() == "admin" && anon.allows(Scope::Admin));
    }

    #[test]
    fn debug_names_tenants_only() {
        let shown = format!("{:?}", Authenticator::with_keys(keys()));
        assert!(
            shown.contains("\"a\"") && !shown.contains("aaaa"),
            "{shown}"
        );
    }
}
