//! `inferq-api`: the HTTP front of a production deployment.

use anyhow::Context;
use inferq_api::ApiConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: ApiConfig =
        inferq_shared::config::load(std::env::args_os()).unwrap_or_else(|e| match e {
            inferq_shared::config::ConfigError::Cli(e) => e.exit(),
            other => {
                eprintln!("inferq-api: {other}");
                std::process::exit(2)
            }
        });
    inferq_shared::telemetry::init(&config.log.log_format);
    inferq_api::run(config, inferq_shared::telemetry::shutdown_signal())
        .await
        .context("inferq-api failed")
}
