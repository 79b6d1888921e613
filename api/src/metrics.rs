//! Prometheus metrics of the API: request counting and the gauges the
//! autoscaler reads. The `/metrics` listener itself is shared with the
//! workers ([`inferq_runtime::metrics::listener`]).
//!
//! The backlog gauges come from the store's counters; the queue gauge from
//! the broker itself, so that a store that lost its data (a Redis restart
//! without persistence zeroes the counters) cannot tell the autoscaler the
//! queue is empty while RabbitMQ still holds jobs.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use inferq_backends::broker::JobQueue;
use inferq_backends::store::AdmissionControl;
use inferq_runtime::metrics::metrics;

use crate::state::ModelCatalog;

/// Middleware: counts every request by matched route template (never the
/// raw path, which would carry job ids), method and status.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    let m = metrics();
    m.http_requests
        .with_label_values(&[route.as_str(), method.as_str(), resp.status().as_str()])
        .inc();
    m.http_seconds
        .with_label_values(&[route.as_str(), method.as_str()])
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// How often the backlog gauges are read from the store.
const REFRESH: Duration = Duration::from_secs(2);

/// Keeps the backlog and oldest-waiting gauges of every served model
/// current, read from the shared store (so they are cluster-wide), and the
/// queue gauge, read from the broker.
pub async fn refresh_gauges(
    store: Arc<dyn AdmissionControl>,
    queue: Arc<dyn JobQueue>,
    models: Arc<dyn ModelCatalog>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        refresh_once(store.as_ref(), queue.as_ref(), models.as_ref()).await;
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(REFRESH) => {}
        }
    }
}

/// One refresh of the autoscaling gauges. A source that does not answer
/// leaves its gauge at the last value read (the autoscaler's own staleness
/// rules apply), never at zero.
pub async fn refresh_once(
    store: &dyn AdmissionControl,
    queue: &dyn JobQueue,
    models: &dyn ModelCatalog,
) {
    let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let m = metrics();
    let names: Vec<String> = models.current().names().map(str::to_owned).collect();
    for name in names {
        if let Ok(n) = store.backlog(&name).await {
            m.backlog.with_label_values(&[name.as_str()]).set(n as i64);
        }
        if let Ok(oldest) = store.oldest_waiting(&name).await {
            let age = oldest.map_or(0.0, |at| now.saturating_sub(at) as f64 / 1000.0);
            m.oldest_waiting
                .with_label_values(&[name.as_str()])
                .set(age);
        }
    }
    match queue.ready().await {
        Ok(n) => m.queue_ready.set(n.min(i64::MAX as u64) as i64),
        Err(e) => tracing::debug!(error = %e, "queue depth not read; gauge kept"),
    }
}
