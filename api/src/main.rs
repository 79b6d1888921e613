//! `inferq-api`: the HTTP front of a production deployment.

use anyhow::Context;
use inferq_api::ApiConfig;

/// With the `mimalloc` feature the binary allocates through mimalloc, not
/// the system allocator (docs/performance.md, "Allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: ApiConfig = inferq_runtime::config::load_or_exit();
    inferq_runtime::logging::init(&config.log.log_format);
    inferq_api::run(config, inferq_runtime::signals::shutdown_signal())
        .await
        .context("inferq-api failed")
}
