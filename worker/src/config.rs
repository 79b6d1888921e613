//! Configuration of the `inferq-worker` process (the consume-loop group is
//! also used by the embedded server).

use std::path::PathBuf;

use clap::Parser;
use inferq_backends::fetch::FetchConfig;
use inferq_runtime::config::{
    BrokerConfig, DeliveryConfig, InferenceConfig, LimitConfig, LogConfig, MetricsConfig,
    ModelConfig, RetentionConfig, StoreConfig, WebhookConfig,
};
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
    /// Tenants' webhook secrets, from the API key entries.
    #[command(flatten)]
    #[serde(flatten)]
    pub tenant_keys: inferq_backends::tenant::TenantKeysConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub metrics: MetricsConfig,
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
        decode_budget_bytes: crate::memory::decode_budget_bytes(inference.decode_memory_mib),
        providers: inference.providers.clone(),
    }
}
