//! `inferq`: the embedded single-process server (API + inference, in
//! memory) — or, when the first argument is `submit`, `get` or `batch`, the
//! command-line client of any InferQ API (see `inferq_client`).

use anyhow::Context;
use inferq_embedded::EmbeddedConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let first = std::env::args().nth(1);
    if inferq_client::is_client_command(first.as_deref()) {
        std::process::exit(inferq_client::run(std::env::args_os()).await);
    }
    let config: EmbeddedConfig = inferq_runtime::config::load_or_exit();
    inferq_runtime::logging::init(&config.log.log_format);
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    inferq_embedded::run(config, listener, inferq_runtime::signals::shutdown_signal())
        .await
        .context("inferq failed")
}
