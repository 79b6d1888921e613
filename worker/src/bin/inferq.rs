//! `inferq`: the embedded single-process server (API + inference, in memory).

use anyhow::Context;
use inferq_worker::EmbeddedConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: EmbeddedConfig = inferq_shared::config::load_or_exit();
    inferq_shared::telemetry::init(&config.log.log_format);
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    inferq_worker::embedded::run(
        config,
        listener,
        inferq_shared::telemetry::shutdown_signal(),
    )
    .await
    .context("inferq failed")
}
