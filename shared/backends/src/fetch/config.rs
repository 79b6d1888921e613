//! The `fetch` option group: where storage references may point and how
//! much may be read from them.
//!
//! Written like the groups in [`inferq_runtime::config`] (one definition gives the
//! flag, the `INFERQ_*` variable, the file key and the `--help` text) so the
//! API and worker configs can flatten it in. The conventional variables of
//! the cloud SDKs (`STORAGE_EMULATOR_HOST`, `AWS_ENDPOINT_URL`, `AWS_REGION`,
//! credentials) are read by [`super::Fetcher::new`], not here, because clap
//! can only name one variable per option.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default size cap of one fetched object: 20 MiB, the same as the request body limit.
pub const DEFAULT_MAX_BYTES: usize = 20 * 1024 * 1024;
/// Default time limit of one fetch or write, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// Storage references (`gs://`, `s3://`, `http(s)://`, `file://`): what may be read and written.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct FetchConfig {
    /// `file://` references are allowed only below this directory (symlinks
    /// and `..` that leave it are refused). Unset: `file://` is disabled.
    #[arg(long, env = "INFERQ_FETCH_LOCAL_ROOT")]
    #[serde(default)]
    pub fetch_local_root: Option<PathBuf>,
    /// Hosts, IP addresses or CIDR blocks (comma-separated) that `http(s)://`
    /// references may reach although they are loopback, private or link-local.
    #[arg(long, env = "INFERQ_FETCH_ALLOW_HOSTS", value_delimiter = ',')]
    #[serde(default)]
    pub fetch_allow_hosts: Vec<String>,
    /// Buckets (comma-separated) that `gs://` and `s3://` references may use;
    /// empty allows every bucket the credentials can reach.
    #[arg(long, env = "INFERQ_FETCH_ALLOW_BUCKETS", value_delimiter = ',')]
    #[serde(default)]
    pub fetch_allow_buckets: Vec<String>,
    /// Largest object read from a storage reference, in bytes; a larger one
    /// fails with `input_too_large` as soon as the limit is passed.
    #[arg(long, env = "INFERQ_FETCH_MAX_BYTES", default_value_t = DEFAULT_MAX_BYTES)]
    pub fetch_max_bytes: usize,
    /// Seconds one read or write of a storage reference may take.
    #[arg(long, env = "INFERQ_FETCH_TIMEOUT_SECS", default_value_t = DEFAULT_TIMEOUT_SECS)]
    pub fetch_timeout_secs: u64,
    /// Google Cloud Storage endpoint, e.g. an emulator's `http://127.0.0.1:9023`.
    /// Falls back to STORAGE_EMULATOR_HOST, then to the real service.
    #[arg(long, env = "INFERQ_GCS_ENDPOINT")]
    #[serde(default)]
    pub gcs_endpoint: Option<String>,
    /// S3 endpoint, e.g. MinIO or an emulator's `http://127.0.0.1:5000`.
    /// Falls back to AWS_ENDPOINT_URL, then to AWS.
    #[arg(long, env = "INFERQ_S3_ENDPOINT")]
    #[serde(default)]
    pub s3_endpoint: Option<String>,
}

impl Default for FetchConfig {
    /// The same values as the command-line defaults.
    fn default() -> Self {
        FetchConfig {
            fetch_local_root: None,
            fetch_allow_hosts: Vec::new(),
            fetch_allow_buckets: Vec::new(),
            fetch_max_bytes: DEFAULT_MAX_BYTES,
            fetch_timeout_secs: DEFAULT_TIMEOUT_SECS,
            gcs_endpoint: None,
            s3_endpoint: None,
        }
    }
}

impl FetchConfig {
    /// The time limit as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.fetch_timeout_secs)
    }
}

/// The GCS endpoint: the option, else `STORAGE_EMULATOR_HOST` (which the
/// Google SDKs accept with or without a scheme).
pub(crate) fn gcs_endpoint(cfg: &FetchConfig) -> Option<String> {
    cfg.gcs_endpoint
        .clone()
        .or_else(|| non_empty_env("STORAGE_EMULATOR_HOST"))
        .map(|e| with_scheme(&e))
}

/// The S3 endpoint: the option, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`.
pub(crate) fn s3_endpoint(cfg: &FetchConfig) -> Option<String> {
    cfg.s3_endpoint
        .clone()
        .or_else(|| non_empty_env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| non_empty_env("AWS_ENDPOINT_URL"))
        .map(|e| with_scheme(&e))
}

/// The S3 region: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
pub(crate) fn s3_region() -> String {
    non_empty_env("AWS_REGION")
        .or_else(|| non_empty_env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string())
}

pub(crate) fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn with_scheme(endpoint: &str) -> String {
    let e = endpoint.trim().trim_end_matches('/');
    if e.contains("://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_gets_a_scheme() {
        assert_eq!(with_scheme("localhost:9023"), "http://localhost:9023");
        assert_eq!(with_scheme("https://x.example/"), "https://x.example");
    }
}
