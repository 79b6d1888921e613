//! `gs://` and `s3://` references through `object_store`.
//!
//! One client per bucket is built on first use and cached (at most
//! [`MAX_CACHED_STORES`]; when full, an arbitrary entry is dropped). The
//! endpoints are the operator's (`--gcs-endpoint`, `--s3-endpoint` or the
//! SDK variables), never the client's, so these requests need no SSRF guard:
//! a reference only chooses bucket and key, both syntax-checked.
//!
//! Credentials follow each SDK's conventions, read by `object_store`'s
//! `from_env` builders: `GOOGLE_APPLICATION_CREDENTIALS`,
//! `GOOGLE_SERVICE_ACCOUNT(_KEY)`, gcloud's application-default file or the
//! metadata server for GCS; `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/
//! `AWS_SESSION_TOKEN`, web identity, container or instance credentials for
//! S3. When a custom endpoint is set (an emulator, MinIO) and no credentials
//! are configured, requests are sent unsigned (anonymous): emulators need
//! no credentials, and asking a metadata server for them would only stall.
//! GCS emulators (a plain-`http://` endpoint) also get the compatibility
//! layer of [`super::gcs_compat`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ClientOptions, ObjectStore, ObjectStoreExt, PutOptions, RetryConfig,
    StaticCredentialProvider,
};

use super::config::{FetchConfig, gcs_endpoint, non_empty_env, s3_endpoint, s3_region};
use super::{Capped, FetchError, map_store_error};

/// Bucket clients kept at most.
pub const MAX_CACHED_STORES: usize = 64;

/// Which object store a bucket lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Provider {
    Gcs,
    S3,
}

/// The cached bucket clients and how to build new ones.
#[derive(Debug)]
pub(crate) struct CloudStores {
    gcs_endpoint: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: String,
    timeout: Duration,
    stores: Mutex<HashMap<(Provider, String), Arc<dyn ObjectStore>>>,
}

impl CloudStores {
    pub(crate) fn new(cfg: &FetchConfig) -> Result<Self, FetchError> {
        let gcs = gcs_endpoint(cfg);
        let s3 = s3_endpoint(cfg);
        for e in gcs.iter().chain(s3.iter()) {
            let url = url::Url::parse(e)
                .map_err(|err| FetchError::Failed(format!("storage endpoint {e}: {err}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(FetchError::Failed(format!(
                    "storage endpoint {e}: must be http or https"
                )));
            }
        }
        Ok(CloudStores {
            gcs_endpoint: gcs,
            s3_endpoint: s3,
            s3_region: s3_region(),
            timeout: cfg.timeout(),
            stores: Mutex::new(HashMap::new()),
        })
    }

    /// Reads an object, at most `max` bytes.
    pub(crate) async fn get(
        &self,
        provider: Provider,
        bucket: &str,
        key: &str,
        max: usize,
        uri: &str,
    ) -> Result<Bytes, FetchError> {
        let store = self.store(provider, bucket)?;
        let location = object_path(key, uri)?;
        let result = store
            .get(&location)
            .await
            .map_err(|e| map_store_error(uri, e))?;
        let mut buf = Capped::new(Some(result.meta.size), max)?;
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            buf.push(&chunk.map_err(|e| map_store_error(uri, e))?)?;
        }
        Ok(buf.finish())
    }

    /// The object's version stamp, without reading it.
    pub(crate) async fn head(
        &self,
        provider: Provider,
        bucket: &str,
        key: &str,
        uri: &str,
    ) -> Result<super::ObjectStamp, FetchError> {
        let store = self.store(provider, bucket)?;
        let location = object_path(key, uri)?;
        let meta = store
            .head(&location)
            .await
            .map_err(|e| map_store_error(uri, e))?;
        Ok(super::ObjectStamp::from_meta(&meta))
    }

    /// Writes an object with a content type.
    pub(crate) async fn put(
        &self,
        provider: Provider,
        bucket: &str,
        key: &str,
        data: Bytes,
        content_type: &str,
        uri: &str,
    ) -> Result<(), FetchError> {
        let store = self.store(provider, bucket)?;
        let location = object_path(key, uri)?;
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, content_type.to_string().into());
        let opts = PutOptions {
            attributes,
            ..Default::default()
        };
        store
            .put_opts(&location, data.into(), opts)
            .await
            .map_err(|e| map_store_error(uri, e))?;
        Ok(())
    }

    /// The keys of every object under `prefix` (recursively), at most `max`.
    pub(crate) async fn list(
        &self,
        provider: Provider,
        bucket: &str,
        prefix: &str,
        max: usize,
        uri: &str,
    ) -> Result<Vec<String>, FetchError> {
        let store = self.store(provider, bucket)?;
        let prefix = prefix.trim_end_matches('/');
        let location = if prefix.is_empty() {
            None
        } else {
            Some(object_path(prefix, uri)?)
        };
        let mut stream = store.list(location.as_ref());
        let mut keys = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| map_store_error(uri, e))?;
            if keys.len() >= max {
                return Err(FetchError::Failed(format!(
                    "{uri} holds more than {max} objects"
                )));
            }
            keys.push(meta.location.to_string());
        }
        Ok(keys)
    }

    /// The cached client of a bucket, built on first use.
    fn store(&self, provider: Provider, bucket: &str) -> Result<Arc<dyn ObjectStore>, FetchError> {
        let key = (provider, bucket.to_string());
        if let Some(s) = self.lock().get(&key) {
            return Ok(s.clone());
        }
        let built = match provider {
            Provider::Gcs => self.build_gcs(bucket)?,
            Provider::S3 => self.build_s3(bucket)?,
        };
        let mut stores = self.lock();
        if stores.len() >= MAX_CACHED_STORES
            && !stores.contains_key(&key)
            && let Some(victim) = stores.keys().next().cloned()
        {
            stores.remove(&victim);
        }
        Ok(stores.entry(key).or_insert(built).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Provider, String), Arc<dyn ObjectStore>>> {
        // The map stays consistent even if a holder panicked: every update is one call.
        self.stores.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client_options(&self, endpoint: Option<&str>) -> ClientOptions {
        ClientOptions::new()
            .with_timeout(self.timeout)
            .with_connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            max_retries: 2,
            retry_timeout: self.timeout,
            ..Default::default()
        }
    }

    fn build_gcs(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, FetchError> {
        let endpoint = self.gcs_endpoint.as_deref();
        let mut b = GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(self.client_options(endpoint))
            .with_retry(self.retry());
        if let Some(e) = endpoint {
            b = b.with_base_url(e);
            if e.starts_with("http://") {
                b = b.with_http_connector(super::gcs_compat::EmulatorConnector);
            }
            let has_credentials = [
                "GOOGLE_APPLICATION_CREDENTIALS",
                "GOOGLE_SERVICE_ACCOUNT",
                "GOOGLE_SERVICE_ACCOUNT_PATH",
                "GOOGLE_SERVICE_ACCOUNT_KEY",
            ]
            .iter()
            .any(|v| non_empty_env(v).is_some());
            if !has_credentials {
                // Uploads fetch a bearer token even with skip_signature
                // (object_store 0.14), so give them an empty static one
                // rather than let them ask a metadata server.
                let anonymous = StaticCredentialProvider::new(GcpCredential {
                    bearer: String::new(),
                });
                b = b
                    .with_skip_signature(true)
                    .with_credentials(Arc::new(anonymous));
            }
        }
        let store = b
            .build()
            .map_err(|e| FetchError::Failed(format!("GCS client for {bucket}: {e}")))?;
        Ok(Arc::new(store))
    }

    fn build_s3(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, FetchError> {
        let endpoint = self.s3_endpoint.as_deref();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&self.s3_region)
            .with_client_options(self.client_options(endpoint))
            .with_retry(self.retry());
        if let Some(e) = endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
            let has_credentials = [
                "AWS_ACCESS_KEY_ID",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ]
            .iter()
            .any(|v| non_empty_env(v).is_some());
            if !has_credentials {
                b = b.with_skip_signature(true);
            }
        }
        let store = b
            .build()
            .map_err(|e| FetchError::Failed(format!("S3 client for {bucket}: {e}")))?;
        Ok(Arc::new(store))
    }
}

fn object_path(key: &str, uri: &str) -> Result<ObjectPath, FetchError> {
    ObjectPath::parse(key).map_err(|e| FetchError::InvalidUri(format!("{uri}: {e}")))
}
