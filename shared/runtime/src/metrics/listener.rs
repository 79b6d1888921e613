//! The separate `/metrics` listener every process opens.
//!
//! `/metrics` is served on its own port (`--metrics-listen`), not on the
//! API's: scrapers and autoscalers reach it inside the cluster without an
//! API key, and it is never exposed with the public API. The API, the
//! workers and the embedded server all use this one listener.

use std::future::Future;

use super::render;

/// Serves `GET /metrics` on `listen` until `shutdown`; an empty address
/// turns it off. A port that cannot be bound is logged, not fatal: the
/// process still serves jobs (several workers on one host share a config).
pub async fn spawn(
    listen: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    spawn_with(listen, shutdown, || async { render() }).await
}

/// [`spawn`] with another body: `body()` makes each response's text (the
/// worker supervisor adds its children's metrics to its own).
pub async fn spawn_with<F, Fut>(
    listen: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
    body: F,
) -> Option<tokio::task::JoinHandle<()>>
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = String> + Send + 'static,
{
    if listen.trim().is_empty() {
        return None;
    }
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%listen, error = %e, "metrics listener not started");
            return None;
        }
    };
    tracing::info!(addr = ?listener.local_addr().ok(), "metrics on /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = body();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text.await,
                )
            }
        }),
    );
    Some(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics listener failed");
        }
    }))
}
