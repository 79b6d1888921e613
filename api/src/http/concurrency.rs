//! Bounds on the work the API itself takes on.
//!
//! The queue bounds jobs; this bounds requests. A fixed number may be in
//! progress at once (long-polls included, since each holds a connection
//! and a waiter); one more is answered `503` with `Retry-After` at once, so
//! an overloaded API sheds load in microseconds instead of queueing
//! requests until every client times out. The probes are outside the limit.
//!
//! [`Draining`] tells handlers that a shutdown began, so long-polls return
//! the job's current state instead of holding the shutdown up.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::http::error::ApiError;

/// The in-flight request budget.
#[derive(Clone)]
pub struct InFlight(Arc<Semaphore>);

impl InFlight {
    pub fn new(max: usize) -> Self {
        InFlight(Arc::new(Semaphore::new(max.max(1))))
    }
}

/// Middleware: run the request if a slot is free, else 503.
pub async fn in_flight(State(slots): State<InFlight>, req: Request, next: Next) -> Response {
    match slots.0.clone().try_acquire_owned() {
        Ok(permit) => {
            let resp = next.run(req).await;
            drop(permit);
            resp
        }
        Err(_) => ApiError::Busy.into_response(),
    }
}

/// Turns true when the server starts shutting down (an axum extension set
/// by [`crate::serve`]; absent in router-only tests).
#[derive(Clone)]
pub struct Draining(pub tokio::sync::watch::Receiver<bool>);

impl Draining {
    /// Resolves once the shutdown began.
    pub async fn started(mut self) {
        let _ = self.0.wait_for(|d| *d).await;
    }
}
