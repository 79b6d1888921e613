//! Synchronous inference calls: a set of jobs submitted together and
//! awaited.
//!
//! TF Serving's `:predict` and KServe's `/infer` answer in the response, but
//! the API never runs a model: each instance becomes an ordinary job (same
//! validation, admission control with 429 when a model's backlog is full,
//! the same queue and workers) and the handler waits for all of them, up to
//! `--max-wait-secs`. The call fails as a whole if any instance does, like
//! the servers these protocols come from, and the jobs still queued for it
//! are canceled so a failed or abandoned call does not keep workers busy.

use std::time::Duration;

use inferq_core::job::{JobId, JobRecord, JobStatus};

use crate::http::error::ApiError;
use crate::intake::encodings::Submission;
use crate::state::AppState;

/// Enqueues every submission in order, waits for all of them and returns
/// their succeeded records in the same order.
///
/// Errors name the failing instance (`instance 3: …`): a refused
/// submission keeps its own status (400, 404, 429, …); a job that ends
/// `failed`, `expired` or `canceled` is [`ApiError::JobFailed`] carrying its
/// error code and message — 4xx when the input was at fault, 5xx when the
/// server was ([`crate::http::error::job_failure`]); not finishing within
/// the wait is a 504.
pub(crate) async fn run_all(
    state: &AppState,
    owner: Option<&str>,
    submissions: Vec<Submission>,
) -> Result<Vec<JobRecord>, ApiError> {
    let started = tokio::time::Instant::now();
    let deadline = started + state.settings.max_wait.max(Duration::from_secs(1));
    let mut ids: Vec<JobId> = Vec::with_capacity(submissions.len());
    for (i, sub) in submissions.into_iter().enumerate() {
        match crate::routes::submit::enqueue(state, sub, owner, None).await {
            Ok(done) => ids.push(done.record.id),
            Err(e) => {
                cancel_all(state, &ids).await;
                return Err(at_instance(i, e));
            }
        }
    }
    let mut records = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match state.store.wait(*id, left).await? {
            Some(r) if r.status == JobStatus::Succeeded => records.push(r),
            Some(r) if r.status.is_terminal() => {
                cancel_all(state, &ids).await;
                return Err(ApiError::JobFailed {
                    instance: i,
                    status: r.status,
                    error: r.error,
                });
            }
            _ => {
                cancel_all(state, &ids).await;
                return Err(ApiError::WaitTimeout {
                    secs: state.settings.max_wait.as_secs(),
                });
            }
        }
    }
    Ok(records)
}

/// Prefixes a client error with the instance it concerns.
pub(crate) fn at_instance(i: usize, e: ApiError) -> ApiError {
    match e {
        ApiError::InvalidArgument(m) => ApiError::InvalidArgument(format!("instance {i}: {m}")),
        other => other,
    }
}

/// Cancels the call's jobs that have not finished (best effort).
async fn cancel_all(state: &AppState, ids: &[JobId]) {
    let ttl = state.settings.retention.result_ttl;
    for id in ids {
        if let Ok(Some(mut r)) = state.store.get(*id).await
            && r.cancel(chrono::Utc::now()).is_ok()
        {
            let _ = state.store.save(&r, ttl).await;
        }
    }
}
