//! One process: the HTTP API, the inference threads, an in-memory queue and
//! an in-memory result store.
//!
//! Only the two backend implementations differ from production; the API
//! handlers, the consume loop and the engine are the same code. That keeps
//! the first try (`make run`) honest: what works here works distributed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use inferq_api::{AppState, Settings, SettingsSources};
use inferq_backends::broker::memory::MemoryQueue;
use inferq_backends::fetch::Fetcher;
use inferq_backends::store::memory::MemoryStore;
use tokio::sync::watch;

use inferq_runtime::signals::{poll_interval, stopped};
use inferq_worker::{consume_all, prefetch_for, processor, start_engine};

pub mod catalog;
pub mod config;

pub use config::EmbeddedConfig;

use crate::catalog::EmbeddedCatalog;

/// Failures that stop the embedded server from starting.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Api(#[from] inferq_api::RunError),
    #[error(transparent)]
    Worker(#[from] inferq_worker::RunError),
}

/// Serves on `listener` until `shutdown` resolves: the API stops accepting,
/// queued and in-flight jobs are worked off (bounded by the drain timeout),
/// then the engine stops.
pub async fn run(
    config: EmbeddedConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let auth = inferq_api::http::auth::Authenticator::from_config(&config.auth)
        .map_err(inferq_api::RunError::from)?;
    let (engine, models) = start_engine(&config.models, &config.inference, &config.limits).await?;
    let queue = Arc::new(MemoryQueue::new(
        config.queue_capacity,
        config.delivery.delivery_limit,
    ));
    let store = Arc::new(MemoryStore::new(config.store_capacity));
    let fetcher = Arc::new(Fetcher::new(&config.fetch).map_err(inferq_api::RunError::from)?);
    let tenants = Arc::new(auth.tenants().clone());
    let processor = processor(
        engine.clone(),
        store.clone(),
        models.clone(),
        fetcher.clone(),
        tenants.clone(),
        &config.retention,
        &config.delivery,
        inferq_worker::video::VideoSettings::new(&config.video, &config.limits),
    );
    let state = AppState {
        queue: queue.clone(),
        store: store.clone(),
        models: Arc::new(EmbeddedCatalog(models.clone())),
        fetcher: fetcher.clone(),
        settings: Arc::new(Settings::build(
            SettingsSources {
                http: &config.http,
                models: &config.models,
                limits: &config.limits,
                retention: &config.retention,
                admission: &config.admission,
                events: &config.events,
                webhooks: &config.webhooks,
                batches: &config.batches,
            },
            &fetcher,
        )?),
        auth: Arc::new(auth),
    };

    // One signal fans out to the HTTP server and the consumer.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let prefetch = prefetch_for(config.consume.prefetch, engine.threads(), &models.current());
    let drain = Duration::from_secs_f64(config.consume.drain_timeout_secs.max(0.0));
    let watcher = tokio::spawn(models.watch(
        poll_interval(config.models.model_poll_secs),
        stopped(stop_rx.clone()),
    ));
    let consumer = tokio::spawn(consume_all(
        queue,
        processor,
        prefetch,
        drain,
        stop_rx.clone(),
    ));
    let dispatcher = inferq_backends::webhook::spawn_dispatcher(
        &config.webhooks,
        &tenants.webhook_secrets(),
        Duration::from_secs(config.retention.result_ttl_secs.max(1)),
        store,
        (*fetcher).clone(),
        stopped(stop_rx.clone()),
    )
    .map_err(inferq_api::RunError::from)?;
    let coordinator = tokio::spawn(inferq_api::routes::batch_prediction::coordinator::run(
        state.clone(),
        stopped(stop_rx.clone()),
    ));
    inferq_runtime::metrics::set_build_info("embedded");
    let metrics = inferq_runtime::metrics::listener::spawn(
        &config.metrics.metrics_listen,
        stopped(stop_rx.clone()),
    )
    .await;
    let gauges = tokio::spawn(inferq_api::metrics::refresh_gauges(
        state.store.clone(),
        state.queue.clone(),
        state.models.clone(),
        stopped(stop_rx.clone()),
    ));
    tracing::info!(addr = ?listener.local_addr().ok(), threads = engine.threads(), "inferq (embedded) listening");
    warn_if_exposed(
        listener.local_addr().ok(),
        &config.metrics.metrics_listen,
        state.auth.enabled(),
    );
    let served = inferq_api::serve(listener, state, stopped(stop_rx)).await;
    let _ = coordinator.await;
    let _ = gauges.await;
    if let Some(m) = metrics {
        let _ = m.await;
    }
    let _ = consumer.await;
    let _ = watcher.await;
    if let Some(d) = dispatcher {
        let _ = d.await;
    }
    tokio::task::spawn_blocking(move || engine.shutdown())
        .await
        .ok();
    served.map_err(|e| RunError::Api(inferq_api::RunError::Serve(e)))
}

/// Whether a listen address reaches beyond this machine.
pub fn is_exposed(addr: &std::net::SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

/// Logs loudly when the API (without keys) or the metrics listener (never
/// authenticated) listens on a non-loopback address: without keys every
/// caller that can reach the port is an admin.
fn warn_if_exposed(api: Option<std::net::SocketAddr>, metrics: &str, auth: bool) {
    if let Some(addr) = api.filter(is_exposed)
        && !auth
    {
        tracing::warn!(%addr,
            "!!! inferq listens on a non-loopback address WITHOUT API keys: anyone who can \
             reach this port can submit jobs, upload models and replay dead letters. \
             Set --auth true --api-keys …, or --listen 127.0.0.1:8080 !!!");
    }
    let metrics_exposed = metrics
        .parse::<std::net::SocketAddr>()
        .map(|a| is_exposed(&a))
        .unwrap_or(!metrics.is_empty() && !metrics.starts_with("localhost:"));
    if metrics_exposed {
        tracing::warn!(
            addr = metrics,
            "the unauthenticated /metrics listener is on a non-loopback address"
        );
    }
}
