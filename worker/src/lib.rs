//! The InferQ worker: consumes jobs and runs ONNX Runtime.
//!
//! - [`engine`]: pinned inference threads, each owning its sessions;
//! - [`consumer`]: the consume → infer → store → ack loop;
//! - [`inference`]: the trait the loop runs jobs through (the engine, or a
//!   stand-in in tests);
//! - [`triage`]: the pure per-delivery decision (run, expire, dead-letter…);
//! - [`video`]: video jobs (FFmpeg subprocesses, a frame loop on the engine);
//! - [`dead_letters`]: parks dead-lettered jobs for an operator's replay;
//! - [`supervisor`]: `--processes`, one supervised worker process per core;
//! - [`run`]: the production worker on RabbitMQ and Redis.
//!
//! The worker never links the HTTP API: the two meet only through the
//! broker and the store. The embedded server (crate `inferq-embedded`)
//! composes both from the pieces made public here ([`start_engine`],
//! [`processor`], [`consume_all`]).
//!
//! `run` takes a shutdown future so tests (and `main`) decide when the
//! process drains and stops.

pub mod config;
pub mod consumer;
pub mod dead_letters;
pub mod engine;
pub mod inference;
pub mod memory;
pub mod models;
pub mod pinning;
pub mod scrape;
pub mod storage;
pub mod supervisor;
pub mod triage;
pub mod video;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use inferq_backends::broker::amqp::AmqpQueue;
use inferq_backends::fetch::Fetcher;
use inferq_backends::repository::{LiveRepository, ModelRepository};
use inferq_backends::store::redis::RedisStore;
use inferq_runtime::signals::{poll_interval, stopped};

pub use config::WorkerConfig;
use consumer::Processor;
use engine::{Engine, EngineError};
use models::ModelSet;

/// Failures that stop a worker from starting.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Models(#[from] inferq_core::manifest::ManifestError),
    #[error("no models found under {0}")]
    NoModels(String),
    #[error(transparent)]
    Store(#[from] inferq_backends::store::StoreError),
    #[error("webhook signing secrets: {0}")]
    Webhook(#[from] inferq_backends::webhook::sign::SecretError),
    #[error("API key entries (for tenants' webhook secrets): {0}")]
    TenantKeys(#[from] inferq_backends::tenant::TenantKeysError),
    #[error("storage configuration: {0}")]
    Fetch(#[from] inferq_backends::fetch::FetchError),
}

/// Scans the model repository; broken models are logged and skipped.
pub fn load_models(dir: &std::path::Path) -> Result<ModelRepository, RunError> {
    let scan = ModelRepository::scan(dir)?;
    for e in &scan.errors {
        tracing::error!(error = %e, "model skipped");
    }
    if scan.repository.is_empty() {
        return Err(RunError::NoModels(dir.display().to_string()));
    }
    Ok(scan.repository)
}

/// Scans the models and starts the engine on them (blocking work, kept off
/// the runtime); returns the engine and the live model set.
pub async fn start_engine(
    models: &inferq_runtime::config::ModelConfig,
    inference: &inferq_runtime::config::InferenceConfig,
    limits: &inferq_runtime::config::LimitConfig,
) -> Result<(Arc<Engine>, Arc<ModelSet>), RunError> {
    let repo = load_models(&models.model_dir)?;
    let engine_cfg = config::engine_config(inference, limits);
    let (engine, repo) =
        tokio::task::spawn_blocking(move || Engine::start(&engine_cfg, &repo).map(|e| (e, repo)))
            .await
            .expect("engine start task")?;
    let engine = Arc::new(engine);
    let live = LiveRepository::new(&models.model_dir, repo);
    Ok((engine.clone(), ModelSet::new(live, engine)))
}

/// Dead letters a worker holds at once (they are rare and cheap).
const DEAD_PREFETCH: u16 = 4;

/// How long a worker waits out a store outage before requeueing a job.
const STORE_PATIENCE: Duration = Duration::from_secs(30);

/// The processor both worker flavours run.
#[allow(clippy::too_many_arguments)]
pub fn processor(
    engine: Arc<Engine>,
    store: Arc<dyn inferq_backends::store::ResultStore>,
    models: Arc<ModelSet>,
    fetcher: Arc<Fetcher>,
    tenants: Arc<inferq_backends::tenant::TenantDirectory>,
    retention: &inferq_runtime::config::RetentionConfig,
    delivery: &inferq_runtime::config::DeliveryConfig,
    video: video::VideoSettings,
) -> Arc<Processor> {
    Arc::new(Processor {
        inference: Arc::new(inference::EngineInference { engine, models }),
        store,
        fetcher,
        tenants,
        result_ttl: Duration::from_secs(retention.result_ttl_secs.max(1)),
        delivery_limit: delivery.delivery_limit.max(1),
        store_patience: STORE_PATIENCE,
        dead_letter_ttl: Duration::from_secs(retention.dead_letter_ttl_secs.max(1)),
        video,
    })
}

/// Runs the job and dead-letter consume loops until `stop` turns true.
pub async fn consume_all(
    queue: Arc<dyn inferq_backends::broker::JobQueue>,
    processor: Arc<Processor>,
    prefetch: u16,
    drain: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    use consumer::Lane;
    let dead = tokio::spawn(consumer::consume(
        queue.clone(),
        processor.clone(),
        Lane::Dead,
        DEAD_PREFETCH,
        drain,
        stopped(stop.clone()),
    ));
    consumer::consume(queue, processor, Lane::Jobs, prefetch, drain, stopped(stop)).await;
    let _ = dead.await;
}

/// Prefetch: explicit, or per inference thread one more than the largest
/// batch a model may run (at least two: the job running and the next one),
/// so that a thread finishing a batch finds the next one already waiting.
pub fn prefetch_for(configured: u16, threads: usize, models: &ModelRepository) -> u16 {
    if configured > 0 {
        return configured;
    }
    let max_batch = models
        .entries()
        .map(|e| e.manifest.batching.max_batch)
        .max()
        .unwrap_or(1);
    (threads * (max_batch + 1).max(2)).clamp(1, u16::MAX as usize) as u16
}

/// Runs a production worker until `shutdown` resolves and in-flight jobs
/// are drained.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let started = std::time::Instant::now();
    let (engine, models) = start_engine(&config.models, &config.inference, &config.limits).await?;
    let queue = Arc::new(AmqpQueue::new(
        &config.broker.amqp_url,
        &config.broker.queue,
        "inferq-worker",
        config.delivery.delivery_limit,
    ));
    let store = Arc::new(RedisStore::new(
        &config.store.redis_url,
        &config.store.key_prefix,
    )?);
    let fetcher = Fetcher::new(&config.fetch)?;
    let tenants = Arc::new(config.tenant_keys.directory()?);
    if tenants.keys_on() {
        tracing::info!("tenant storage fences on (from the API key entries)");
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    inferq_runtime::metrics::set_build_info("worker");
    let metrics = inferq_runtime::metrics::listener::spawn(
        &config.metrics.metrics_listen,
        stopped(stop_rx.clone()),
    )
    .await;
    // Every worker also drains the webhook outbox (docs/webhooks.md).
    let dispatcher = inferq_backends::webhook::spawn_dispatcher(
        &config.webhooks,
        &tenants.webhook_secrets(),
        Duration::from_secs(config.retention.result_ttl_secs.max(1)),
        store.clone(),
        fetcher.clone(),
        stopped(stop_rx.clone()),
    )?;
    let processor = processor(
        engine.clone(),
        store,
        models.clone(),
        Arc::new(fetcher),
        tenants,
        &config.retention,
        &config.delivery,
        video::VideoSettings::new(&config.video, &config.limits),
    );
    let prefetch = prefetch_for(config.consume.prefetch, engine.threads(), &models.current());
    tracing::info!(
        threads = engine.threads(),
        prefetch,
        startup_ms = started.elapsed().as_secs_f64() * 1e3,
        "inferq-worker ready"
    );
    let watcher = tokio::spawn(models.clone().watch(
        poll_interval(config.models.model_poll_secs),
        stopped(stop_rx.clone()),
    ));
    let consumers = consume_all(
        queue.clone(),
        processor,
        prefetch,
        Duration::from_secs_f64(config.consume.drain_timeout_secs.max(0.0)),
        stop_rx,
    );
    tokio::pin!(consumers);
    tokio::select! {
        _ = shutdown => {
            let _ = stop_tx.send(true);
            consumers.await;
        }
        _ = &mut consumers => {}
    }
    let _ = stop_tx.send(true);
    let _ = watcher.await;
    if let Some(d) = dispatcher {
        let _ = d.await;
    }
    if let Some(m) = metrics {
        let _ = m.await;
    }
    queue.close().await;
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || engine.shutdown())
        .await
        .ok();
    tracing::info!("inferq-worker stopped");
    Ok(())
}
