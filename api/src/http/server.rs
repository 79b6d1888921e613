//! The API's accept loop: hyper connections serving the axum router over
//! HTTP/1.1 and HTTP/2 cleartext (h2c with prior knowledge, as gRPC-style
//! and `curl --http2-prior-knowledge` clients speak it) on the same
//! listener, with graceful shutdown. hyper-util's auto builder tells the
//! two apart by the connection's first bytes.
//!
//! `axum::serve` would do the same, but it does not let us bound hyper's
//! per-connection read buffer. That buffer grows to fit the largest request
//! read on a connection (up to ~400 KB by default) and keeps that capacity
//! while the client keeps the connection alive — with 64 clients sending
//! 240 KB images, about 16 MB of the API's heap sat in idle buffers.
//! [`READ_BUFFER_MAX`] caps it; hyper then reads a large body in several
//! chunks, which the body collector joins anyway.
//!
//! HTTP/2 has no such buffer but flow-control windows: a client may send
//! at most the connection window ([`H2_CONNECTION_WINDOW`]) of body bytes
//! the server has not read, and each stream its own window, so what one
//! h2 connection can make the server hold unread is bounded the same way.
//! Streams per connection are capped ([`H2_MAX_STREAMS`]); each is a
//! request like any other, under the in-flight limit and the body budget.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

/// Largest read buffer of one connection (hyper's minimum is 8 KiB).
pub const READ_BUFFER_MAX: usize = 64 * 1024;

/// Flow-control window of one HTTP/2 stream (its unread body bytes).
pub const H2_STREAM_WINDOW: u32 = 256 * 1024;
/// Flow-control window of one HTTP/2 connection (all its streams' unread
/// body bytes).
pub const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Streams one HTTP/2 connection may have open at once.
pub const H2_MAX_STREAMS: u32 = 128;
/// Largest header block of an HTTP/2 request.
pub const H2_MAX_HEADER_LIST: u32 = 64 * 1024;

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
    let mut http = Builder::new(TokioExecutor::new());
    http.http1()
        .max_buf_size(READ_BUFFER_MAX)
        .timer(TokioTimer::new())
        .keep_alive(true);
    http.http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_send_buf_size(READ_BUFFER_MAX);
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
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
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
