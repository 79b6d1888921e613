//! The API's HTTP/1.1 accept loop: hyper connections serving the axum
//! router, with graceful shutdown.
//!
//! `axum::serve` would do the same, but it does not let us bound hyper's
//! per-connection read buffer. That buffer grows to fit the largest request
//! read on a connection (up to ~400 KB by default) and keeps that capacity
//! while the client keeps the connection alive — with 64 clients sending
//! 240 KB images, about 16 MB of the API's heap sat in idle buffers.
//! [`READ_BUFFER_MAX`] caps it; hyper then reads a large body in several
//! chunks, which the body collector joins anyway.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

/// Largest read buffer of one connection (hyper's minimum is 8 KiB).
pub const READ_BUFFER_MAX: usize = 64 * 1024;

/// How long to wait after a failed `accept` (e.g. out of file descriptors)
/// before trying again, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections and serves `router` on each until `stop` resolves;
/// then stops accepting, asks every connection to finish its current
/// request and close, and returns once all have.
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: impl Future<Output = ()> + Send,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(READ_BUFFER_MAX)
        .timer(TokioTimer::new())
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
