//! What every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use inferq_shared::broker::JobQueue;
use inferq_shared::config::LimitConfig;
use inferq_shared::repository::ModelRepository;
use inferq_shared::store::ResultStore;

/// Shared, cheaply clonable handler state.
#[derive(Clone)]
pub struct AppState {
    pub queue: Arc<dyn JobQueue>,
    pub store: Arc<dyn ResultStore>,
    pub models: Arc<ModelRepository>,
    pub settings: Arc<Settings>,
}

/// Request-handling settings distilled from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_model: String,
    pub limits: LimitConfig,
    pub retention: Retention,
    /// Cap on `?wait=`.
    pub max_wait: Duration,
    /// Deadline for enqueueing a job.
    pub request_timeout: Duration,
}

/// Record and blob lifetimes.
#[derive(Debug, Clone)]
pub struct Retention {
    pub result_ttl: Duration,
    pub blob_ttl: Duration,
}

impl Settings {
    /// Settings from the shared config groups.
    pub fn from_config(
        http: &inferq_shared::config::HttpConfig,
        models: &inferq_shared::config::ModelConfig,
        limits: &LimitConfig,
        retention: &inferq_shared::config::RetentionConfig,
    ) -> Self {
        Settings {
            default_model: models.default_model.clone(),
            limits: limits.clone(),
            retention: Retention {
                result_ttl: Duration::from_secs(retention.result_ttl_secs.max(1)),
                blob_ttl: Duration::from_secs(retention.blob_ttl_secs.max(1)),
            },
            max_wait: Duration::from_secs_f64(http.max_wait_secs.clamp(0.0, 3600.0)),
            request_timeout: Duration::from_secs_f64(http.request_timeout_secs.clamp(0.1, 3600.0)),
        }
    }
}
