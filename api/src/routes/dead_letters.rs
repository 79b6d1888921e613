//! Operator endpoints for dead-lettered jobs.
//!
//! - `GET /v1/admin/dead-letters?limit=N` lists parked jobs, oldest first,
//!   with their attempt counts and last errors;
//! - `POST /v1/admin/dead-letters/{id}/replay` sends one back to the queue;
//! - `POST /v1/admin/dead-letters/replay?limit=N` replays the oldest N.
//!
//! A replay is an explicit decision that the cause is fixed (a new model
//! version, a repaired dependency), so it bypasses admission control but
//! counts in the backlog like any job. It resets the attempt count and
//! records the replay in the job's `replays`. Two concurrent replays of the
//! same job cannot both enqueue it: the store only revives a record that is
//! still dead-lettered, and the loser gets 409.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use inferq_core::job::{JobId, JobRecord, JobStatus};
use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;
use crate::state::AppState;

/// Most jobs one list or bulk replay handles.
const MAX_PAGE: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitQuery {
    limit: Option<usize>,
}

fn limit(q: Result<Query<LimitQuery>, QueryRejection>) -> Result<usize, ApiError> {
    let q = q
        .map(|Query(v)| v)
        .map_err(|e| ApiError::InvalidArgument(e.body_text()))?;
    match q.limit {
        None => Ok(100),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::InvalidArgument(format!(
            "limit must be between 1 and {MAX_PAGE}"
        ))),
    }
}

/// The dead-letter list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetters {
    pub count: usize,
    pub jobs: Vec<JobRecord>,
}

/// `GET /v1/admin/dead-letters`.
#[utoipa::path(
    get,
    operation_id = "list_dead_letters",
    path = "/v1/admin/dead-letters",
    tag = "admin",
    params(("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Most jobs listed (default 100)")),
    responses((status = 200, description = "Dead-lettered jobs, oldest first", body = DeadLetters), (status = 400, description = "`limit` outside 1..=1000", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<DeadLetters>, ApiError> {
    let limit = limit(q)?;
    let mut jobs = Vec::new();
    for id in state.store.dead_letters(limit).await? {
        match state.store.get(id).await? {
            Some(r) if r.status == JobStatus::DeadLettered => jobs.push(r),
            // Expired, or replayed by a process that died before tidying
            // the index: tidy it now.
            _ => state.store.forget_dead(id).await?,
        }
    }
    Ok(Json(DeadLetters {
        count: jobs.len(),
        jobs,
    }))
}

/// `POST /v1/admin/dead-letters/{id}/replay`.
#[utoipa::path(
    post,
    path = "/v1/admin/dead-letters/{id}/replay",
    tag = "admin",
    params(("id" = String, Path, description = "Job id (UUID)")),
    responses((status = 202, description = "Queued again: the job record", body = inferq_core::job::JobRecord), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict with the current state", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn replay_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobRecord>), ApiError> {
    let job_id: JobId = id.parse().map_err(|_| ApiError::JobNotFound(id.clone()))?;
    let record = replay(&state, job_id).await?;
    Ok((StatusCode::ACCEPTED, Json(record)))
}

/// Outcome of a bulk replay.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    pub replayed: Vec<JobId>,
    pub failed: Vec<ReplayFailure>,
}

/// A job the bulk replay could not queue again, and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayFailure {
    pub id: JobId,
    pub error: String,
}

/// `POST /v1/admin/dead-letters/replay?limit=N`.
#[utoipa::path(
    post,
    path = "/v1/admin/dead-letters/replay",
    tag = "admin",
    params(("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Most jobs replayed (default 100)")),
    responses((status = 200, description = "The replayed jobs", body = Replayed), (status = 400, description = "`limit` outside 1..=1000", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn replay_many(
    State(state): State<AppState>,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<Replayed>, ApiError> {
    let limit = limit(q)?;
    let mut out = Replayed {
        replayed: Vec::new(),
        failed: Vec::new(),
    };
    for id in state.store.dead_letters(limit).await? {
        match replay(&state, id).await {
            Ok(_) => out.replayed.push(id),
            // The broker or store is down: stop rather than fail the rest one by one.
            Err(e @ ApiError::Unavailable(_)) if out.replayed.is_empty() => return Err(e),
            Err(ApiError::Unavailable(e)) => {
                out.failed.push(ReplayFailure { id, error: e });
                break;
            }
            Err(e) => out.failed.push(ReplayFailure {
                id,
                error: e.to_string(),
            }),
        }
    }
    Ok(Json(out))
}

/// Revives one dead letter and publishes its parked message again.
async fn replay(state: &AppState, id: JobId) -> Result<JobRecord, ApiError> {
    let store = &state.store;
    let ttl = state.settings.retention.result_ttl;
    let parked = store
        .get(id)
        .await?
        .ok_or_else(|| ApiError::JobNotFound(id.to_string()))?;
    let not_dead = |r: &JobRecord| ApiError::NotDeadLettered {
        id: id.to_string(),
        status: r.status.to_string(),
    };
    let mut record = parked.clone();
    record.replay().map_err(|_| not_dead(&parked))?;
    let message = store.dead_message(id).await?.ok_or_else(|| {
        ApiError::OutputNotFound(format!(
            "the message of dead-lettered job {id} has expired; it cannot be replayed"
        ))
    })?;
    if !store.revive(&record, ttl).await? {
        let now = store.get(id).await?.unwrap_or(record);
        return Err(not_dead(&now));
    }
    if let Err(e) = state.queue.publish(id, message.clone()).await {
        // Park it again exactly as it was, so the replay can be retried.
        if let Err(e) = store
            .dead_letter(&parked, &message, state.settings.retention.dead_letter_ttl)
            .await
        {
            tracing::error!(job_id = %id, error = %e, "replay failed and the job could not be parked again");
        }
        return Err(e.into());
    }
    store.forget_dead(id).await?;
    tracing::info!(job_id = %id, replays = record.replays, "dead-lettered job replayed");
    Ok(record)
}
