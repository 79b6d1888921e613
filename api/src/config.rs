//! Configuration of the `inferq-api` process.

use std::path::PathBuf;

use crate::http::auth::keys::AuthConfig;
use clap::Parser;
use inferq_backends::fetch::FetchConfig;
use inferq_runtime::config::{
    AdmissionConfig, BatchConfig, BrokerConfig, DeliveryConfig, EventConfig, HttpConfig,
    LimitConfig, LogConfig, MetricsConfig, ModelConfig, RetentionConfig, StoreConfig,
    WebhookConfig,
};
use serde::{Deserialize, Serialize};

/// InferQ API: accepts image jobs over HTTP, validates them cheaply, enqueues
/// them on RabbitMQ and serves results from Redis. Every option can also be
/// set in the config file (key = option name with underscores) or in the
/// environment variable shown.
#[derive(Debug, Clone, Parser, Serialize, Deserialize)]
#[command(name = "inferq-api", version)]
pub struct ApiConfig {
    /// Config file (TOML or JSON) with any of the options below.
    #[arg(long, env = "INFERQ_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub broker: BrokerConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub delivery: DeliveryConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub admission: AdmissionConfig,
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
    pub limits: LimitConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub fetch: FetchConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub auth: AuthConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub events: EventConfig,
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
