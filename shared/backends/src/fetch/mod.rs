//! Reading (and writing) storage references: `gs://`, `s3://`,
//! `http(s)://` and `file://`.
//!
//! Jobs may name their input by reference instead of carrying the bytes, and
//! workers write results next to inputs. A reference comes from a client, so
//! every use goes through policy first:
//!
//! * [`StorageUri::parse`] checks syntax only (length, scheme, bucket and key
//!   rules) and gives `invalid_uri`.
//! * [`Fetcher::check`] applies the configured policy without network I/O —
//!   bucket allow-list, `file://` confined to `--fetch-local-root`, no
//!   `http(s)://` to loopback/private/link-local literal addresses or
//!   `localhost` — and gives `uri_forbidden`. The API calls it to refuse bad
//!   references with a 4xx before enqueueing.
//! * [`Fetcher::get`] / [`Fetcher::put`] check again, then do the I/O within
//!   `--fetch-timeout-secs`; `get` stops as soon as the object passes
//!   `--fetch-max-bytes` and never buffers more than that.
//!
//! `gs://` and `s3://` use `object_store` ([`cloud`]), `file://` uses its
//! `LocalFileSystem` rooted at the local root ([`local`]); GCS emulators
//! get a small compatibility layer ([`gcs_compat`]). Plain
//! `http(s)://` URLs use `reqwest` directly, because the SSRF guard must
//! check the resolved addresses and then connect to exactly those, which
//! `object_store`'s `HttpStore` cannot do ([`http`], [`ssrf`]).

mod cloud;
mod config;
pub mod fence;
mod gcs_compat;
mod http;
mod local;
pub mod ssrf;
mod uri;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

pub use cloud::MAX_CACHED_STORES;
pub use config::{DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_SECS, FetchConfig};
pub use http::MAX_REDIRECTS;
pub use uri::{MAX_URI_LEN, StorageUri};

/// Where a job's result goes, given its output URI: `(json, image)`.
///
/// A URI ending in `/` is a prefix: `<prefix><id>.json` and `<prefix><id>.png`.
/// Any other URI names the JSON object itself; an image goes beside it with
/// a `.png` extension.
pub fn result_targets(output_uri: &str, id: &str) -> (String, String) {
    if output_uri.ends_with('/') {
        (
            format!("{output_uri}{id}.json"),
            format!("{output_uri}{id}.png"),
        )
    } else {
        let stem = output_uri.strip_suffix(".json").unwrap_or(output_uri);
        (output_uri.to_owned(), format!("{stem}.png"))
    }
}

use cloud::{CloudStores, Provider};
use http::HttpFetcher;
use inferq_core::ErrorCode;
use local::LocalRoot;
use ssrf::HostPolicy;

/// Why a storage reference could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Malformed reference or unsupported scheme.
    #[error("invalid storage reference: {0}")]
    InvalidUri(String),
    /// The policy forbids this reference.
    #[error("storage reference not allowed: {0}")]
    Forbidden(String),
    /// The object does not exist.
    #[error("object not found: {0}")]
    NotFound(String),
    /// The object is larger than the limit.
    #[error("object is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// Network, credentials, timeout, configuration or any other failure.
    #[error("storage access failed: {0}")]
    Failed(String),
}

impl FetchError {
    /// The stable error code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            FetchError::InvalidUri(_) => ErrorCode::InvalidUri,
            FetchError::Forbidden(_) => ErrorCode::UriForbidden,
            FetchError::NotFound(_) => ErrorCode::InputNotFound,
            FetchError::TooLarge { .. } => ErrorCode::InputTooLarge,
            FetchError::Failed(_) => ErrorCode::FetchFailed,
        }
    }
}

/// What identifies one version of a stored object without reading it: the
/// store's generation or ETag (a file's modification time), and its size.
/// A cache keyed by it (imported models) notices a replaced object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStamp {
    pub version: String,
    pub size: Option<u64>,
}

impl ObjectStamp {
    fn from_meta(meta: &object_store::ObjectMeta) -> Self {
        let version = meta
            .version
            .clone()
            .or_else(|| meta.e_tag.clone())
            .unwrap_or_else(|| meta.last_modified.to_rfc3339());
        ObjectStamp {
            version,
            size: Some(meta.size),
        }
    }
}

/// Reads and writes storage references under the configured policy.
///
/// Cheap to clone (one shared inner state); clients of cloud buckets are
/// cached inside and shared by all clones.
#[derive(Debug, Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    local: Option<LocalRoot>,
    http: HttpFetcher,
    cloud: CloudStores,
    buckets: Vec<String>,
    max_bytes: usize,
    timeout: Duration,
}

/// Allow-list entries accepted at most.
const MAX_BUCKETS: usize = 256;

impl Fetcher {
    /// Builds a fetcher. Fails (with [`FetchError::Failed`]) on an unusable
    /// configuration: missing local root, malformed allow-list entry or endpoint.
    pub fn new(cfg: &FetchConfig) -> Result<Self, FetchError> {
        if cfg.fetch_max_bytes == 0 {
            return Err(FetchError::Failed(
                "--fetch-max-bytes must be positive".into(),
            ));
        }
        if cfg.fetch_timeout_secs == 0 {
            return Err(FetchError::Failed(
                "--fetch-timeout-secs must be positive".into(),
            ));
        }
        let buckets: Vec<String> = cfg
            .fetch_allow_buckets
            .iter()
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
            .collect();
        if buckets.len() > MAX_BUCKETS {
            return Err(FetchError::Failed(format!(
                "--fetch-allow-buckets has {} entries, more than {MAX_BUCKETS}",
                buckets.len()
            )));
        }
        let local = cfg
            .fetch_local_root
            .as_deref()
            .map(LocalRoot::new)
            .transpose()?;
        Ok(Fetcher {
            inner: Arc::new(Inner {
                local,
                http: HttpFetcher::new(HostPolicy::new(&cfg.fetch_allow_hosts)?, cfg.timeout())?,
                cloud: CloudStores::new(cfg)?,
                buckets,
                max_bytes: cfg.fetch_max_bytes,
                timeout: cfg.timeout(),
            }),
        })
    }

    /// The size cap of [`Fetcher::get`].
    pub fn max_bytes(&self) -> usize {
        self.inner.max_bytes
    }

    /// Cheap policy check without network I/O: scheme allowed, bucket on the
    /// allow-list, file path below the local root, no literal private address
    /// or `localhost` for `http(s)`. Names are resolved (and checked again)
    /// only by [`Fetcher::get`] / [`Fetcher::put`].
    pub fn check(&self, uri: &StorageUri) -> Result<(), FetchError> {
        match uri {
            StorageUri::Gcs { bucket, .. } | StorageUri::S3 { bucket, .. } => {
                if self.inner.buckets.is_empty() || self.inner.buckets.iter().any(|b| b == bucket) {
                    Ok(())
                } else {
                    Err(FetchError::Forbidden(format!(
                        "bucket {bucket} is not in --fetch-allow-buckets"
                    )))
                }
            }
            StorageUri::Http(url) => self.inner.http.check(url),
            StorageUri::File(path) => self.local()?.check(path),
        }
    }

    /// Reads the object, failing with [`FetchError::TooLarge`] as soon as it
    /// passes the size cap, and with [`FetchError::Failed`] after the timeout.
    pub async fn get(&self, uri: &StorageUri) -> Result<Bytes, FetchError> {
        self.get_capped(uri, self.inner.max_bytes).await
    }

    /// The object's version stamp without reading it (`HEAD`); `None` for a
    /// web resource that sends neither `ETag` nor `Last-Modified`.
    pub async fn stat(&self, uri: &StorageUri) -> Result<Option<ObjectStamp>, FetchError> {
        self.check(uri)?;
        let name = uri.to_string();
        self.timed(async {
            match uri {
                StorageUri::Gcs { bucket, key } => {
                    let cloud = &self.inner.cloud;
                    cloud
                        .head(Provider::Gcs, bucket, key, &name)
                        .await
                        .map(Some)
                }
                StorageUri::S3 { bucket, key } => {
                    let cloud = &self.inner.cloud;
                    cloud.head(Provider::S3, bucket, key, &name).await.map(Some)
                }
                StorageUri::Http(url) => self.inner.http.head(url).await,
                StorageUri::File(path) => self.local()?.head(path).await.map(Some),
            }
        })
        .await
    }

    /// Writes an object (e.g. a job's result next to its input). `file://`
    /// writes are atomic and create missing directories below the root; the
    /// content type is recorded by object stores and sent to web servers.
    pub async fn put(
        &self,
        uri: &StorageUri,
        data: Bytes,
        content_type: &str,
    ) -> Result<(), FetchError> {
        self.check(uri)?;
        let name = uri.to_string();
        self.timed(async {
            match uri {
                StorageUri::Gcs { bucket, key } => {
                    let cloud = &self.inner.cloud;
                    cloud
                        .put(Provider::Gcs, bucket, key, data, content_type, &name)
                        .await
                }
                StorageUri::S3 { bucket, key } => {
                    let cloud = &self.inner.cloud;
                    cloud
                        .put(Provider::S3, bucket, key, data, content_type, &name)
                        .await
                }
                StorageUri::Http(url) => self.inner.http.put(url, data, content_type).await,
                StorageUri::File(path) => self.local()?.put(path, data).await,
            }
        })
        .await
    }

    /// Every object under the prefix `uri` (`gs://b/dir/`, `s3://…/`,
    /// `file:///dir/`), as full URIs in name order; at most `max` of them.
    /// A prefix without a trailing `/` is taken as a directory all the same.
    pub async fn list(&self, uri: &StorageUri, max: usize) -> Result<Vec<String>, FetchError> {
        self.check(uri)?;
        let name = uri.to_string();
        let base = if name.ends_with('/') {
            name.clone()
        } else {
            format!("{name}/")
        };
        let mut found = match uri {
            StorageUri::Gcs { bucket, key } | StorageUri::S3 { bucket, key } => {
                let provider = if matches!(uri, StorageUri::Gcs { .. }) {
                    Provider::Gcs
                } else {
                    Provider::S3
                };
                let keys = self
                    .inner
                    .cloud
                    .list(provider, bucket, key, max, &name)
                    .await?;
                let scheme = if provider == Provider::Gcs {
                    "gs"
                } else {
                    "s3"
                };
                keys.into_iter()
                    .map(|k| format!("{scheme}://{bucket}/{k}"))
                    .collect::<Vec<_>>()
            }
            StorageUri::File(path) => self
                .local()?
                .list(path, max)
                .await?
                .into_iter()
                .map(|rel| format!("{base}{rel}"))
                .collect(),
            StorageUri::Http(_) => {
                return Err(FetchError::InvalidUri(format!(
                    "{name}: web URLs cannot be listed; use a JSONL or file-list input"
                )));
            }
        };
        found.sort();
        Ok(found)
    }

    /// Reads like [`Fetcher::get`] with a different size cap (batch inputs:
    /// a JSONL file may be far larger than one image).
    pub async fn get_capped(&self, uri: &StorageUri, max: usize) -> Result<Bytes, FetchError> {
        self.check(uri)?;
        let name = uri.to_string();
        self.timed(async {
            match uri {
                StorageUri::Gcs { bucket, key } => {
                    self.inner
                        .cloud
                        .get(Provider::Gcs, bucket, key, max, &name)
                        .await
                }
                StorageUri::S3 { bucket, key } => {
                    self.inner
                        .cloud
                        .get(Provider::S3, bucket, key, max, &name)
                        .await
                }
                StorageUri::Http(url) => self.inner.http.get(url, max).await,
                StorageUri::File(path) => self.local()?.get(path, max).await,
            }
        })
        .await
    }

    /// POSTs to a web URL under the same SSRF policy as [`Fetcher::get`]
    /// (webhooks); returns the HTTP status of the answer, whatever it is.
    pub async fn post(
        &self,
        url: &url::Url,
        headers: Vec<(String, String)>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<u16, FetchError> {
        self.inner.http.post(url, headers, body, timeout).await
    }

    fn local(&self) -> Result<&LocalRoot, FetchError> {
        self.inner.local.as_ref().ok_or_else(|| {
            FetchError::Forbidden("file:// references are disabled (no --fetch-local-root)".into())
        })
    }

    async fn timed<T>(
        &self,
        fut: impl Future<Output = Result<T, FetchError>>,
    ) -> Result<T, FetchError> {
        let limit = self.inner.timeout;
        tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
            Err(FetchError::Failed(format!(
                "timed out after {} s",
                limit.as_secs()
            )))
        })
    }
}

/// A buffer that refuses to grow past the size cap.
#[derive(Debug)]
struct Capped {
    buf: BytesMut,
    max: usize,
}

impl Capped {
    /// Fails at once if the announced size (`Content-Length`, object
    /// metadata) is already over the cap; otherwise reserves up to it.
    fn new(announced: Option<u64>, max: usize) -> Result<Self, FetchError> {
        let initial = match announced {
            Some(n) if n > max as u64 => return Err(FetchError::TooLarge { limit: max }),
            Some(n) => n as usize,
            None => 0,
        };
        Ok(Capped {
            buf: BytesMut::with_capacity(initial.min(max)),
            max,
        })
    }

    /// Appends a chunk, or fails without keeping it if the cap would be passed.
    fn push(&mut self, chunk: &[u8]) -> Result<(), FetchError> {
        if chunk.len() > self.max - self.buf.len() {
            return Err(FetchError::TooLarge { limit: self.max });
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

/// Maps an `object_store` error for the reference `uri`.
fn map_store_error(uri: &str, e: object_store::Error) -> FetchError {
    match e {
        object_store::Error::NotFound { .. } => FetchError::NotFound(uri.to_string()),
        object_store::Error::InvalidPath { .. } => {
            FetchError::InvalidUri(format!("{uri}: {}", uri::shorten(&e.to_string())))
        }
        other => {
            let msg = other.to_string();
            let msg = match msg.char_indices().nth(500) {
                Some((i, _)) => format!("{}…", &msg[..i]),
                None => msg,
            };
            FetchError::Failed(format!("{uri}: {msg}"))
        }
    }
}

#[cfg(test)]
mod tests;
