//! `inferq-api`: the HTTP front of a production deployment.

use anyhow::Context;
use inferq_api::ApiConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: ApiConfig = inferq_shared::config::load_or_exit();
    inferq_shared::telemetry::init(&config.log.log_format);
    inferq_api::run(config, inferq_shared::telemetry::shutdown_signal())
        .await
        .context("inferq-api failed")
}
