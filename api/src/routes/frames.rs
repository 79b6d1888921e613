//! `GET /v1/jobs/{id}/frames`: the per-frame results of a video job as
//! JSON Lines, one [`FrameResult`] per sampled frame, in frame order.
//!
//! The worker stores the document beside the job's other outputs (the
//! output view `frames`, with the result TTL) before it writes the final
//! record, so a record that names `frames_href` finds it. A redelivered job
//! runs again from its first frame and overwrites the document, so it never
//! holds a frame twice.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use inferq_core::job::JobId;
use inferq_core::prediction::Prediction;
use inferq_core::video::{FRAMES_CONTENT_TYPE, FRAMES_VIEW, FrameResult};

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::state::AppState;

/// `GET /v1/jobs/{id}/frames`: one JSON object per line, each a
/// `FrameResult` (frame index, time in seconds, the model's result).
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/frames",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id (UUID)")),
    responses((status = 200, description = "Per-frame results, one FrameResult JSON object per line (JSON Lines)", body = FrameResult, content_type = "application/x-ndjson"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (not a finished video job, or expired)", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn frames(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job_id: JobId = id.parse().map_err(|_| ApiError::JobNotFound(id.clone()))?;
    let record = state
        .store
        .get(job_id)
        .await?
        .filter(|r| principal.can_see(r.owner.as_deref()))
        .ok_or_else(|| ApiError::JobNotFound(id.clone()))?;
    if !matches!(record.result, Some(Prediction::Video { .. })) {
        return Err(ApiError::OutputNotFound(format!(
            "job {id} has no frames (status {}; only finished video jobs have them)",
            record.status
        )));
    }
    let key = state.store.output_view_key(job_id, FRAMES_VIEW);
    let bytes =
        state.store.get_blob(&key).await?.ok_or_else(|| {
            ApiError::OutputNotFound(format!("the frames of job {id} have expired"))
        })?;
    let mut resp = bytes.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(FRAMES_CONTENT_TYPE),
    );
    Ok(resp)
}
