//! `inferq-worker`: a production worker on RabbitMQ and Redis.

use anyhow::Context;
use inferq_worker::WorkerConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: WorkerConfig = inferq_runtime::config::load_or_exit();
    inferq_runtime::logging::init(&config.log.log_format);
    inferq_worker::run(config, inferq_runtime::signals::shutdown_signal())
        .await
        .context("inferq-worker failed")
}
