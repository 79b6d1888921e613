//! W3C `traceparent` on the way in: the request's trace, made available to
//! the jobs it submits.
//!
//! [`propagate`] wraps every request: it reads the caller's `traceparent`
//! (or starts a trace when there is none or it is malformed), opens the
//! request span with the trace id and this hop's own span id, and keeps the
//! context in a task-local for the duration of the request, so the submit
//! path ([`current`]) stamps it on the job record and message without every
//! handler having to pass it along. From there the worker continues the
//! same trace (see `inferq_core::trace`).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use inferq_core::trace::{TRACEPARENT, TraceContext};
use tracing::Instrument;

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// The trace of the request being served, if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|t| *t).ok()
}

/// Wraps `fut` so that, spawned on a task of its own, it keeps the trace
/// context and the span of the request that spawned it.
pub fn carry<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let span = tracing::Span::current();
    let ctx = current();
    async move {
        match ctx {
            Some(ctx) => CURRENT.scope(ctx, fut).await,
            None => fut.await,
        }
    }
    .instrument(span)
}

/// Middleware: the request's trace context and span.
pub async fn propagate(req: Request, next: Next) -> Response {
    let incoming = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    let ctx = match incoming {
        Some(parent) => parent.child(),
        None => TraceContext::new_root(),
    };
    let span = tracing::info_span!(
        "http",
        method = %req.method(),
        path = %req.uri().path(),
        trace_id = %ctx.trace_id(),
        span_id = %ctx.span_id(),
        parent_id = incoming.map(|p| p.span_id()).unwrap_or_default(),
    );
    CURRENT.scope(ctx, next.run(req).instrument(span)).await
}
