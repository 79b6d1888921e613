//! `GET /v1/jobs/{id}`, `GET /v1/jobs/{id}/output` and
//! `POST /v1/jobs/{id}/cancel`: reading and steering accepted jobs (the
//! submit path is [`crate::routes::submit`]; a video job's per-frame
//! results are [`crate::routes::frames`]).

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use inferq_backends::store::Saved;
use inferq_core::job::{JobId, JobRecord};
use inferq_core::prediction::Prediction;
use serde::Deserialize;

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    /// Seconds to wait for the job to finish (long-poll).
    wait: Option<f64>,
}

pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::InvalidArgument(e.body_text()))
}

/// `GET /v1/jobs/{id}?wait=SECONDS`.
#[utoipa::path(
    get,
    operation_id = "get_job",
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id (UUID)"), ("wait" = Option<u64>, Query, description = "Long-poll: answer once the job is final or after this many seconds")),
    responses((status = 200, description = "The job", body = inferq_core::job::JobRecord), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    draining: Option<axum::Extension<crate::http::concurrency::Draining>>,
    q: Result<Query<GetQuery>, QueryRejection>,
) -> Result<Json<JobRecord>, ApiError> {
    let q = query(q)?;
    let job_id: JobId = id.parse().map_err(|_| ApiError::JobNotFound(id.clone()))?;
    let wait = match q.wait {
        None => Duration::ZERO,
        Some(w) if w.is_finite() && w >= 0.0 => {
            Duration::from_secs_f64(w.min(state.settings.max_wait.as_secs_f64()))
        }
        Some(_) => {
            return Err(ApiError::InvalidArgument(
                "wait must be a non-negative number of seconds".into(),
            ));
        }
    };
    // Waiting on another tenant's job and then answering 404 would reveal
    // by the delay that it exists: check before waiting.
    if !wait.is_zero() && !principal.sees_every_job() {
        visible(&principal, state.store.get(job_id).await?, &id)?;
    }
    let record = if wait.is_zero() {
        state.store.get(job_id).await?
    } else if let Some(axum::Extension(draining)) = draining {
        // A shutdown cuts the wait short: the client gets the current state
        // and polls again (on another instance).
        tokio::select! {
            r = state.store.wait(job_id, wait) => r?,
            _ = draining.started() => state.store.get(job_id).await?,
        }
    } else {
        state.store.wait(job_id, wait).await?
    };
    visible(&principal, record, &id).map(Json)
}

/// The record if the caller may see it. Another tenant's job is reported
/// exactly like a job that does not exist, so ids cannot be probed.
fn visible(
    principal: &Principal,
    record: Option<JobRecord>,
    id: &str,
) -> Result<JobRecord, ApiError> {
    record
        .filter(|r| principal.can_see(r.owner.as_deref()))
        .ok_or_else(|| ApiError::JobNotFound(id.to_owned()))
}

/// `?view=` of `GET /v1/jobs/{id}/output`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutputQuery {
    /// Another rendering of the output, one of the result's `views`
    /// (`colormap`, `overlay` for a heatmap); absent = the output itself.
    view: Option<String>,
}

/// `GET /v1/jobs/{id}/output`: the binary output of an image model (PNG),
/// or with `?view=` one of its other renderings.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/output",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id (UUID)"), OutputQuery),
    responses((status = 200, description = "The output image (PNG), or for a video job of an image model the output video (MP4)", content((crate::http::media::Binary = "image/png"), (crate::http::media::Binary = "video/mp4"))), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict with the current state", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn output(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    q: Result<Query<OutputQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query(q)?;
    let job_id: JobId = id.parse().map_err(|_| ApiError::JobNotFound(id.clone()))?;
    let record = visible(&principal, state.store.get(job_id).await?, &id)?;
    let (content_type, views) = match &record.result {
        Some(Prediction::Image {
            content_type,
            views,
            ..
        }) => (content_type, &views[..]),
        // A video job of an image model: the transformed video.
        Some(Prediction::Video {
            output: Some(out), ..
        }) => (&out.content_type, &[][..]),
        _ => {
            return Err(ApiError::OutputNotFound(format!(
                "job {id} has no output image (status {}; only finished image models have one)",
                record.status
            )));
        }
    };
    let key = match &query.view {
        None => state.store.output_key(job_id),
        Some(v) if views.contains(v) => state.store.output_view_key(job_id, v),
        Some(v) => {
            return Err(ApiError::OutputNotFound(format!(
                "job {id} has no output view `{v}` (it has: {})",
                if views.is_empty() {
                    "none".to_string()
                } else {
                    views.join(", ")
                }
            )));
        }
    };
    let bytes =
        state.store.get_blob(&key).await?.ok_or_else(|| {
            ApiError::OutputNotFound(format!("the output of job {id} has expired"))
        })?;
    let mut resp = bytes.into_response();
    let ct = HeaderValue::from_str(content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    Ok(resp)
}

/// `POST /v1/jobs/{id}/cancel`: a queued job will be skipped when a worker
/// dequeues it; a running one has its result discarded. The store refuses
/// to overwrite a finished record, so a cancel racing the job's completion
/// either wins (the result is dropped) or loses with 409, never both.
#[utoipa::path(
    post,
    operation_id = "cancel_job",
    path = "/v1/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id (UUID)")),
    responses((status = 200, description = "The job", body = inferq_core::job::JobRecord), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict with the current state", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    let job_id: JobId = id.parse().map_err(|_| ApiError::JobNotFound(id.clone()))?;
    let mut record = visible(&principal, state.store.get(job_id).await?, &id)?;
    let finished = |r: &JobRecord| ApiError::JobFinished {
        id: id.clone(),
        status: r.status.to_string(),
    };
    record
        .cancel(chrono::Utc::now())
        .map_err(|_| finished(&record))?;
    match state
        .store
        .save(&record, state.settings.retention.result_ttl)
        .await?
    {
        Saved::Written => {
            tracing::info!(job_id = %job_id, "job canceled");
            Ok(Json(record))
        }
        Saved::AlreadyFinished => {
            let now = state.store.get(job_id).await?.unwrap_or(record);
            Err(finished(&now))
        }
    }
}
