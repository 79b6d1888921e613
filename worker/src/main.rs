//! `inferq-worker`: a production worker on RabbitMQ and Redis; with
//! `--processes`, the supervisor of one such worker process per core.

use anyhow::Context;
use inferq_worker::{WorkerConfig, pinning, supervisor};
use tracing::Instrument;

/// With the `mimalloc` feature the binary allocates through mimalloc, not
/// the system allocator (docs/performance.md, "Allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config: WorkerConfig = inferq_runtime::config::load_or_exit();
    inferq_runtime::logging::init(&config.log.log_format);
    let shutdown = inferq_runtime::signals::shutdown_signal();
    if let Some(role) = config.processes.supervised_child.take() {
        supervisor::follow_supervisor();
        let span = tracing::info_span!("process", index = role.index, core = role.core);
        return inferq_worker::run(config.for_child(&role), shutdown)
            .instrument(span)
            .await
            .context("inferq-worker process failed");
    }
    match supervisor::plan(&config, &pinning::allowed_cores(), pinning::quota_cores()) {
        Some(cores) => supervisor::supervise(config, cores, shutdown)
            .await
            .context("inferq-worker supervisor failed"),
        None => inferq_worker::run(config, shutdown)
            .await
            .context("inferq-worker failed"),
    }
}
