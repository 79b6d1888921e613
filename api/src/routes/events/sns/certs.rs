//! Where SNS signing certificates may come from, and a bounded cache of
//! the ones fetched.
//!
//! The signature of an SNS message does not cover its `SigningCertURL`, so
//! anyone could point it at a certificate of their own: the URL's host must
//! be on an allow-list ([`HostPolicy`], by default `sns.<region>.amazonaws.com`
//! and its China twin, one DNS label for the region) and its scheme
//! `https`, plain `http` only when explicitly allowed (tests). The same
//! policy guards the `SubscribeURL` a subscription confirmation asks us to
//! GET. The fetch follows no redirect, uses no proxy, times out and reads at
//! most [`MAX_CERT_BYTES`]; fetched certificates are kept for [`CERT_TTL`],
//! at most [`MAX_CACHED`] of them, and a failed fetch is not retried for
//! [`FAILURE_BACKOFF`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::Mutex;
use url::Url;

/// Largest certificate read (SNS's are about 2 KB of PEM).
pub const MAX_CERT_BYTES: usize = 16 * 1024;
/// How long a fetched certificate is trusted without fetching it again.
pub const CERT_TTL: Duration = Duration::from_secs(3600);
/// Certificates kept at once (SNS uses one per region at a time).
pub const MAX_CACHED: usize = 32;
/// How long a URL whose fetch failed is refused without trying again.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(30);
/// Deadline of a certificate fetch and of a confirmation GET.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A URL SNS handed us is not one we may call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("`{0}` is not a URL")]
    NotAUrl(String),
    #[error("`{0}` is not https (plain http is allowed only with --event-sns-allow-http)")]
    Scheme(String),
    #[error("host of `{0}` is not an allowed SNS host (--event-sns-hosts)")]
    Host(String),
}

/// Fetching a certificate failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    Refused(#[from] UrlRefused),
    #[error("fetching the signing certificate failed: {0}")]
    Fetch(String),
    #[error("the signing certificate is not a PEM certificate: {0}")]
    Parse(String),
}

/// The hosts SNS URLs may name.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// Patterns: a host name, `*` standing for exactly one DNS label
    /// (`sns.*.amazonaws.com`), optionally `:port`.
    hosts: Vec<String>,
    allow_http: bool,
}

impl HostPolicy {
    pub fn new(hosts: &[String], allow_http: bool) -> Self {
        HostPolicy {
            hosts: hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            allow_http,
        }
    }

    /// The URL, if its scheme and host are allowed.
    pub fn check(&self, raw: &str) -> Result<Url, UrlRefused> {
        let url = Url::parse(raw).map_err(|_| UrlRefused::NotAUrl(raw.to_owned()))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(UrlRefused::Scheme(raw.to_owned())),
        }
        // Credentials in the URL are never something SNS sends.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRefused::Host(raw.to_owned()));
        }
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let with_port = url.port().map(|p| format!("{host}:{p}"));
        let allowed = self
            .hosts
            .iter()
            .any(|pattern| match pattern.contains(':') {
                true => with_port
                    .as_deref()
                    .is_some_and(|h| host_matches(pattern, h)),
                false => host_matches(pattern, &host),
            });
        if !allowed {
            return Err(UrlRefused::Host(raw.to_owned()));
        }
        Ok(url)
    }
}

/// `pattern` against `host`, label by label; `*` matches one non-empty
/// label of letters, digits and `-`.
fn host_matches(pattern: &str, host: &str) -> bool {
    let (p, h): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), host.split('.').collect());
    p.len() == h.len()
        && p.iter().zip(&h).all(|(p, h)| match *p {
            "*" => !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            p => p == *h,
        })
}

enum Entry {
    Cert(Arc<CertificateDer<'static>>),
    Failed(String),
}

struct Cached {
    entry: Entry,
    at: Instant,
}

/// Fetches signing certificates through the policy and caches them.
pub struct CertCache {
    policy: HostPolicy,
    client: reqwest::Client,
    cache: Mutex<HashMap<String, Cached>>,
}

impl CertCache {
    pub fn new(policy: HostPolicy) -> Result<Self, CertError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .user_agent(concat!("inferq/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CertError::Fetch(format!("HTTP client: {e}")))?;
        Ok(CertCache {
            policy,
            client,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn policy(&self) -> &HostPolicy {
        &self.policy
    }

    /// The HTTP client (no redirects, no proxy, with timeouts) also used to
    /// confirm subscriptions.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The certificate at `raw_url`, from the cache or fetched.
    pub async fn get(&self, raw_url: &str) -> Result<Arc<CertificateDer<'static>>, CertError> {
        let url = self.policy.check(raw_url)?;
        let key = url.as_str().to_owned();
        let now = Instant::now();
        if let Some(hit) = self.cache.lock().await.get(&key) {
            match &hit.entry {
                Entry::Cert(c) if now.duration_since(hit.at) < CERT_TTL => return Ok(c.clone()),
                Entry::Failed(e) if now.duration_since(hit.at) < FAILURE_BACKOFF => {
                    return Err(CertError::Fetch(format!("{e} (not retried yet)")));
                }
                _ => {}
            }
        }
        let fetched = self.fetch(url).await;
        let entry = match &fetched {
            Ok(cert) => Entry::Cert(cert.clone()),
            Err(e) => Entry::Failed(e.to_string()),
        };
        let mut cache = self.cache.lock().await;
        cache.retain(|_, c| match c.entry {
            Entry::Cert(_) => now.duration_since(c.at) < CERT_TTL,
            Entry::Failed(_) => now.duration_since(c.at) < FAILURE_BACKOFF,
        });
        if cache.len() >= MAX_CACHED
            && !cache.contains_key(&key)
            && let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, c)| c.at)
                .map(|(k, _)| k.clone())
        {
            cache.remove(&oldest);
        }
        cache.insert(key, Cached { entry, at: now });
        fetched
    }

    /// Entries held (certificates and remembered failures).
    pub async fn entries(&self) -> usize {
        self.cache.lock().await.len()
    }

    async fn fetch(&self, url: Url) -> Result<Arc<CertificateDer<'static>>, CertError> {
        let fail = |e: String| CertError::Fetch(e);
        let mut resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("status {}", resp.status())));
        }
        let mut pem = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
            if pem.len() + chunk.len() > MAX_CERT_BYTES {
                return Err(fail(format!("larger than {MAX_CERT_BYTES} bytes")));
            }
            pem.extend_from_slice(&chunk);
        }
        let cert =
            CertificateDer::from_pem_slice(&pem).map_err(|e| CertError::Parse(e.to_string()))?;
        webpki::EndEntityCert::try_from(&cert).map_err(|e| CertError::Parse(format!("{e:?}")))?;
        Ok(Arc::new(cert))
    }
}
