//! Configuration of the `inferq-worker` and embedded `inferq` processes.

use std::path::PathBuf;

use clap::Parser;
use inferq_shared::auth::AuthConfig;
use inferq_shared::config::{
    AdmissionConfig, BatchConfig, BrokerConfig, DeliveryConfig, EventConfig, HttpConfig,
    InferenceConfig, LimitConfig, LogConfig, MetricsConfig, ModelConfig, RetentionConfig,
    StoreConfig, WebhookConfig,
};
use inferq_shared::fetch::FetchConfig;
use serde::{Deserialize, Serialize};

use crate::engine::EngineConfig;

/// Options of the consume loop shared by both processes.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct ConsumeConfig {
    /// Unacknowledged jobs this worker may hold; 0 means twice the inference
    /// threads (one running and one waiting per thread).
    #[arg(long, env = "INFERQ_PREFETCH", default_value_t = 0)]
    pub prefetch: u16,
    /// Seconds to finish in-flight jobs after a shutdown signal; jobs still
    /// running then are left unacked and the broker redelivers them.
    #[arg(long, env = "INFERQ_DRAIN_TIMEOUT_SECS", default_value_t = 30.0)]
    pub drain_timeout_secs: f64,
}

/// InferQ worker: consumes image jobs from RabbitMQ, runs ONNX Runtime on
/// pinned inference threads and stores results in Redis. Every option can
/// also be set in the config file (key = option name with underscores) or in
/// the environment variable shown.
#[derive(Debug, Clone, Parser, Serialize, Deserialize)]
#[command(name = "inferq-worker", version)]
#[command(mut_arg("metrics_listen", |a| a.default_value("0.0.0.0:9091")))]
pub struct WorkerConfig {
    /// Config file (TOML or JSON) with any of the options below.
    #[arg(long, env = "INFERQ_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    pub broker: BrokerConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub delivery: DeliveryConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub store: StoreConfig,
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
    pub consume: ConsumeConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub fetch: FetchConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub webhooks: WebhookConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub metrics: MetricsConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub log: LogConfig,
}

/// InferQ embedded: the API and the inference threads in one process, with
/// an in-memory queue and result store — for a first try, a laptop, a demo.
/// Nothing survives a restart; use inferq-api + inferq-worker for that.
///
/// API keys are off by default here (unlike inferq-api): turn them on with
/// `--auth true` and `--api-keys` before exposing it beyond localhost.
#[derive(Debug, Clone, Parser, Serialize, Deserialize)]
#[command(name = "inferq", version)]
// The shared `auth` group defaults to on, which suits the production API;
// a first try on a laptop should not need a key.
#[command(mut_arg("auth", |a| a.default_value("false")))]
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

/// The engine settings from the shared groups.
pub fn engine_config(inference: &InferenceConfig, limits: &LimitConfig) -> EngineConfig {
    EngineConfig {
        threads: inference.threads,
        cores: inference.cores.clone(),
        pin: inference.pin_threads,
        ort_library: inference.ort_library.clone(),
        max_pixels: limits.max_pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_server_has_api_keys_off_unless_asked() {
        let cfg: EmbeddedConfig = inferq_shared::config::load(["inferq"]).unwrap();
        assert!(!cfg.auth.auth);
        assert!(cfg.auth.keys().unwrap().is_empty());
        let on: EmbeddedConfig = inferq_shared::config::load([
            "inferq",
            "--auth",
            "true",
            "--api-keys",
            "me:read:0123456789abcdef0123",
        ])
        .unwrap();
        assert_eq!(on.auth.keys().unwrap()[0].tenant, "me");
        let no_keys: EmbeddedConfig =
            inferq_shared::config::load(["inferq", "--auth", "true"]).unwrap();
        assert!(no_keys.auth.keys().is_err());
    }
}
