//! Configuration of the embedded `inferq` server: the API's option groups
//! and the worker's, plus the sizes of the in-memory queue and store.

use std::path::PathBuf;

use clap::Parser;
use inferq_api::http::auth::keys::AuthConfig;
use inferq_backends::fetch::FetchConfig;
use inferq_runtime::config::{
    AdmissionConfig, BatchConfig, DeliveryConfig, EventConfig, HttpConfig, InferenceConfig,
    LimitConfig, LogConfig, MetricsConfig, ModelConfig, RetentionConfig, VideoConfig,
    WebhookConfig,
};
use inferq_worker::config::ConsumeConfig;
use serde::{Deserialize, Serialize};

/// The embedded server's API address unless `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The embedded server's metrics address unless `--metrics-listen` says otherwise.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9090";

/// InferQ embedded: the API and the inference threads in one process, with
/// an in-memory queue and result store — for a first try, a laptop, a demo.
/// Nothing survives a restart; use inferq-api + inferq-worker for that.
///
/// API keys are off by default here (unlike inferq-api): turn them on with
/// `--auth true` and `--api-keys` before exposing it beyond localhost. For
/// the same reason it listens on 127.0.0.1 unless `--listen` (and
/// `--metrics-listen`) name another address.
#[derive(Debug, Clone, Parser, Serialize, Deserialize)]
#[command(name = "inferq", version)]
// The shared `auth` group defaults to on, which suits the production API;
// a first try on a laptop should not need a key.
#[command(mut_arg("auth", |a| a.default_value("false")))]
// Keys off and every scope for the anonymous caller: listen on loopback
// unless told otherwise (containers set INFERQ_LISTEN=0.0.0.0:8080).
#[command(mut_arg("listen", |a| a.default_value(DEFAULT_LISTEN)))]
#[command(mut_arg("metrics_listen", |a| a.default_value(DEFAULT_METRICS_LISTEN)))]
pub struct EmbeddedConfig {
    /// Config file (TOML or JSON) with any of the options below.
    #[arg(long, env = "INFERQ_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub delivery: DeliveryConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub admission: AdmissionConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub retention: RetentionConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub models: ModelConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub inference: InferenceConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub limits: LimitConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub video: VideoConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub events: EventConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub consume: ConsumeConfig,
    /// Jobs the in-memory queue holds before submissions get 429.
    #[arg(long, env = "INFERQ_QUEUE_CAPACITY", default_value_t = 1024)]
    pub queue_capacity: usize,
    /// Job records the in-memory store holds (expired ones are evicted first).
    #[arg(long, env = "INFERQ_STORE_CAPACITY", default_value_t = 100_000)]
    pub store_capacity: usize,
    #[command(flatten)]
    #[serde(flatten)]
    pub fetch: FetchConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub auth: AuthConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub webhooks: WebhookConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub metrics: MetricsConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub batches: BatchConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub log: LogConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_server_has_api_keys_off_unless_asked() {
        let cfg: EmbeddedConfig = inferq_runtime::config::load(["inferq"]).unwrap();
        assert!(!cfg.auth.auth);
        assert!(cfg.auth.keys().unwrap().is_empty());
        let on: EmbeddedConfig = inferq_runtime::config::load([
            "inferq",
            "--auth",
            "true",
            "--api-keys",
            "me:read:0123456789abcdef0123",
        ])
        .unwrap();
        assert_eq!(on.auth.keys().unwrap()[0].tenant, "me");
        let no_keys: EmbeddedConfig =
            inferq_runtime::config::load(["inferq", "--auth", "true"]).unwrap();
        assert!(no_keys.auth.keys().is_err());
    }

    #[test]
    fn embedded_server_listens_on_loopback_unless_asked() {
        let cfg: EmbeddedConfig = inferq_runtime::config::load(["inferq"]).unwrap();
        assert_eq!(cfg.http.listen, "127.0.0.1:8080");
        assert_eq!(cfg.metrics.metrics_listen, "127.0.0.1:9090");
        let open: EmbeddedConfig = inferq_runtime::config::load([
            "inferq",
            "--listen",
            "0.0.0.0:8080",
            "--metrics-listen",
            "0.0.0.0:9090",
        ])
        .unwrap();
        assert_eq!(open.http.listen, "0.0.0.0:8080");
        assert_eq!(open.metrics.metrics_listen, "0.0.0.0:9090");
    }
}
