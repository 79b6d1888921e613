//! `http(s)://` references, behind the SSRF guard of [`super::ssrf`].
//!
//! This uses `reqwest` directly rather than `object_store`'s `HttpStore`:
//! the guard has to sit between name resolution and the connection, and
//! `HttpStore` offers no hook there. The guard works in three places:
//!
//! * **Resolution.** The client's DNS resolver is [`GuardedResolver`]: it
//!   resolves the name once, refuses the whole host if *any* address is
//!   forbidden (unless allow-listed) and hands exactly those checked
//!   addresses to the connector. There is no second lookup, so a DNS answer
//!   that changes between check and connect (rebinding) cannot slip through.
//! * **IP literals.** `http://10.0.0.1/` never reaches a resolver, so the
//!   address is checked before the request ([`HttpFetcher::check`]) and on
//!   every redirect hop.
//! * **Redirects.** At most [`MAX_REDIRECTS`] hops, `http`/`https` only; each
//!   hop's host is checked like the first (literal) or resolved through the
//!   guarded resolver (name).
//!
//! Proxies are disabled (a proxy would resolve the name itself), and
//! responses are not decompressed, so the size cap counts the bytes on the
//! wire and a compressed bomb cannot expand past it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use url::{Host, Url};

use super::ssrf::HostPolicy;
use super::{Capped, FetchError};

/// Redirect hops followed at most.
pub const MAX_REDIRECTS: usize = 3;
/// Longest DNS resolution.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Addresses of one host handed to the connector at most (all are checked).
const MAX_ADDRS: usize = 16;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A refusal by the SSRF guard, carried through reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Blocked(String);

/// Resolves a name and lets through only addresses the policy allows.
#[derive(Debug)]
struct GuardedResolver {
    policy: Arc<HostPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found =
                tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host.as_str(), 0)))
                    .await
                    .map_err(|_| format!("resolving {host} timed out"))??;
            let addrs: Vec<SocketAddr> = found.collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no addresses").into());
            }
            for addr in &addrs {
                policy
                    .check_ip(&host, addr.ip())
                    .map_err(|e| Blocked(e.to_string()))?;
            }
            let checked: Addrs = Box::new(addrs.into_iter().take(MAX_ADDRS));
            Ok::<Addrs, BoxError>(checked)
        })
    }
}

/// The guarded HTTP client; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct HttpFetcher {
    client: reqwest::Client,
    /// For webhooks: the same guard, but redirects are not followed (a
    /// redirected POST would turn into a GET or re-send the body elsewhere).
    poster: reqwest::Client,
    policy: Arc<HostPolicy>,
}

impl HttpFetcher {
    pub(crate) fn new(policy: HostPolicy, timeout: Duration) -> Result<Self, FetchError> {
        let policy = Arc::new(policy);
        let hop_policy = policy.clone();
        let redirects = redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match check_url(&hop_policy, attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(Blocked(format!("redirect refused: {e}"))),
            }
        });
        let builder = |redirects: redirect::Policy| {
            reqwest::Client::builder()
                .dns_resolver(GuardedResolver {
                    policy: policy.clone(),
                })
                .redirect(redirects)
                .no_proxy()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .user_agent(concat!("inferq/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| FetchError::Failed(format!("HTTP client: {e}")))
        };
        let client = builder(redirects)?;
        let poster = builder(redirect::Policy::none())?;
        Ok(HttpFetcher {
            client,
            poster,
            policy,
        })
    }

    /// POSTs a JSON body with extra headers and returns the answer's status
    /// (any status: the caller decides what counts as delivered). The
    /// answer's body is not read beyond what the connection needs.
    pub(crate) async fn post(
        &self,
        url: &Url,
        headers: Vec<(String, String)>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<u16, FetchError> {
        self.check(url)?;
        let mut req = self
            .poster
            .post(url.clone())
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| request_error(url, &e))?;
        Ok(resp.status().as_u16())
    }

    /// The policy check without I/O: scheme, `localhost` names, literal addresses.
    pub(crate) fn check(&self, url: &Url) -> Result<(), FetchError> {
        check_url(&self.policy, url)
    }

    /// Downloads `url`, at most `max` bytes.
    pub(crate) async fn get(&self, url: &Url, max: usize) -> Result<Bytes, FetchError> {
        self.check(url)?;
        let mut resp = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| request_error(url, &e))?;
        status_error(url, resp.status())?;
        let mut buf = Capped::new(resp.content_length(), max)?;
        while let Some(chunk) = resp.chunk().await.map_err(|e| request_error(url, &e))? {
            buf.push(&chunk)?;
        }
        Ok(buf.finish())
    }

    /// The resource's version stamp from a `HEAD` (its `ETag`, else
    /// `Last-Modified`); `None` when the server sends neither.
    pub(crate) async fn head(&self, url: &Url) -> Result<Option<super::ObjectStamp>, FetchError> {
        self.check(url)?;
        let resp = self
            .client
            .head(url.clone())
            .send()
            .await
            .map_err(|e| request_error(url, &e))?;
        status_error(url, resp.status())?;
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let version =
            header(reqwest::header::ETAG).or_else(|| header(reqwest::header::LAST_MODIFIED));
        Ok(version.map(|version| super::ObjectStamp {
            version,
            size: resp.content_length(),
        }))
    }

    /// Uploads with `PUT` (e.g. to a pre-signed URL).
    pub(crate) async fn put(
        &self,
        url: &Url,
        data: Bytes,
        content_type: &str,
    ) -> Result<(), FetchError> {
        self.check(url)?;
        let resp = self
            .client
            .put(url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(data)
            .send()
            .await
            .map_err(|e| request_error(url, &e))?;
        status_error(url, resp.status())
    }
}

fn check_url(policy: &HostPolicy, url: &Url) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Forbidden(format!(
            "scheme {} is not allowed for web references",
            url.scheme()
        )));
    }
    match url.host() {
        Some(Host::Ipv4(ip)) => policy.check_ip(&ip.to_string(), IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => policy.check_ip(&ip.to_string(), IpAddr::V6(ip)),
        Some(Host::Domain(name)) => policy.check_name(name),
        None => Err(FetchError::InvalidUri(format!("{url} has no host"))),
    }
}

fn status_error(url: &Url, status: reqwest::StatusCode) -> Result<(), FetchError> {
    if status.is_success() {
        Ok(())
    } else if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
        Err(FetchError::NotFound(redact(url)))
    } else {
        Err(FetchError::Failed(format!(
            "{} answered {status}",
            redact(url)
        )))
    }
}

/// Maps a reqwest error, recognising refusals by the guard anywhere in its chain.
fn request_error(url: &Url, err: &reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(blocked) = e.downcast_ref::<Blocked>() {
            return FetchError::Forbidden(blocked.0.clone());
        }
        source = e.source();
    }
    if err.is_timeout() {
        return FetchError::Failed(format!("{}: timed out", redact(url)));
    }
    // The chain's innermost message (e.g. "connection refused") is the useful one.
    let mut detail = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        detail = e.to_string();
        source = e.source();
    }
    FetchError::Failed(format!("{}: {detail}", redact(url)))
}

/// The URL without its query, which may carry a signature.
fn redact(url: &Url) -> String {
    let mut u = url.clone();
    if u.query().is_some() {
        u.set_query(Some("…"));
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetcher(allow: &[&str]) -> HttpFetcher {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        HttpFetcher::new(HostPolicy::new(&allow).unwrap(), Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn literal_addresses_are_checked_without_io() {
        let f = fetcher(&[]);
        for u in [
            "http://127.0.0.1/x",
            "http://127.1/x",
            "http://2130706433/x",
            "http://0x7f000001/x",
            "http://[::1]/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/x",
            "https://192.168.0.1/x",
            "http://0.0.0.0:8080/",
            "http://localhost:8080/",
            "http://api.localhost/",
        ] {
            let url = Url::parse(u).unwrap();
            assert!(
                matches!(f.check(&url), Err(FetchError::Forbidden(_))),
                "{u} should be refused"
            );
        }
        for u in ["https://example.com/cat.jpg", "http://8.8.8.8/x"] {
            f.check(&Url::parse(u).unwrap()).unwrap();
        }
        let allowed = fetcher(&["127.0.0.1", "localhost"]);
        allowed
            .check(&Url::parse("http://127.0.0.1:1/").unwrap())
            .unwrap();
        allowed
            .check(&Url::parse("http://localhost:1/").unwrap())
            .unwrap();
        assert!(
            allowed
                .check(&Url::parse("http://10.0.0.1/").unwrap())
                .is_err()
        );
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_at_resolution() {
        // Whatever the cheap name check said, the resolver itself refuses a
        // name whose addresses are loopback.
        let f = fetcher(&["example.invalid"]);
        let resolver = GuardedResolver {
            policy: f.policy.clone(),
        };
        let err = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost resolved through the guard"),
            Err(e) => e,
        };
        assert!(err.downcast_ref::<Blocked>().is_some(), "{err}");
    }

    #[test]
    fn redaction_hides_signatures() {
        let u = Url::parse("https://h.example/o?X-Amz-Signature=secret").unwrap();
        assert!(!redact(&u).contains("secret"));
    }
}
