//! `POST /v1/jobs` and `GET /v1/jobs/{id}`.
//!
//! Submitting is the hot path of the API and is kept cheap: read the body
//! under a size limit, identify the format and dimensions from the header
//! (no decoding), record the job, hand it to the broker and wait for the
//! broker's confirm. Only then does the client get `202 Accepted`, so a
//! job that was accepted cannot be lost by a crash of this process.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use inferq_shared::job::{InputInfo, JobId, JobRecord};
use inferq_shared::manifest::valid_model_name;
use inferq_shared::message::{ImageSource, JobMessage};
use inferq_shared::sniff;
use inferq_shared::store::Saved;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// Largest `top_k` a client may ask for.
const MAX_TOP_K: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitQuery {
    model: Option<String>,
    version: Option<u64>,
    top_k: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    /// Seconds to wait for the job to finish (long-poll).
    wait: Option<f64>,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::InvalidArgument(e.body_text()))
}

/// Only raw image bodies are accepted here; anything declared as something
/// else is refused before the body is read.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if ct.starts_with("image/") || ct == "application/octet-stream" {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "content type `{ct}` is not accepted; send the raw image as image/jpeg, image/png, \
             image/webp, image/gif, image/bmp or application/octet-stream"
        )))
    }
}

/// Bytes of an oversized body we still read (and discard) before answering
/// 413. Answering while the client is still sending makes the kernel reset
/// the connection, and most clients then report a broken pipe instead of the
/// 413; draining a bounded amount lets them read the answer.
const DRAIN_CAP: u64 = 32 * 1024 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

async fn read_body(headers: &HeaderMap, mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::PayloadTooLarge { limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared {
        if n > limit as u64 + DRAIN_CAP {
            return Err(too_large());
        }
        if n > limit as u64 {
            drain(body).await;
            return Err(too_large());
        }
    }
    let mut buf = bytes::BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::InvalidArgument(format!("the request body could not be read: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain(body).await;
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and discards what is left of a body, within [`DRAIN_CAP`] and
/// [`DRAIN_TIMEOUT`].
async fn drain(mut body: Body) {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > DRAIN_CAP {
                    break;
                }
            }
        }
    })
    .await;
}

/// `POST /v1/jobs?model=&version=&top_k=` with the image as the body.
pub async fn submit(
    State(state): State<AppState>,
    q: Result<Query<SubmitQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    check_content_type(&headers)?;
    let image = read_body(&headers, body, state.settings.limits.max_body_bytes).await?;
    let timeout = state.settings.request_timeout;
    tokio::time::timeout(timeout, enqueue(&state, q, image))
        .await
        .map_err(|_| ApiError::Unavailable("timed out while enqueueing the job".into()))?
}

async fn enqueue(state: &AppState, q: SubmitQuery, image: Bytes) -> Result<Response, ApiError> {
    if image.is_empty() {
        return Err(ApiError::EmptyBody);
    }
    if let Some(k) = q.top_k
        && !(1..=MAX_TOP_K).contains(&k)
    {
        return Err(ApiError::InvalidArgument(format!(
            "top_k must be between 1 and {MAX_TOP_K}"
        )));
    }
    let name = q
        .model
        .unwrap_or_else(|| state.settings.default_model.clone());
    let not_found = || ApiError::ModelNotFound {
        name: name.clone(),
        version: q.version,
    };
    if !valid_model_name(&name) {
        return Err(not_found());
    }
    let entry = state
        .models
        .get(&name, q.version)
        .ok_or_else(not_found)?
        .clone();
    let header =
        sniff::inspect(&image, state.settings.limits.max_pixels).map_err(ApiError::BadImage)?;

    let id = JobId::new();
    let record = JobRecord::queued(
        id,
        &entry.name,
        entry.version,
        InputInfo {
            format: header.format.as_str().to_owned(),
            bytes: image.len() as u64,
            width: header.width,
            height: header.height,
        },
    );
    let store = &state.store;
    let retention = &state.settings.retention;
    if store.save(&record, retention.result_ttl).await? != Saved::Written {
        return Err(ApiError::Internal(format!("job id {id} collided")));
    }
    let source = if image.len() > state.settings.limits.inline_max_bytes {
        let key = store.blob_key(id);
        if let Err(e) = store.put_blob(&key, &image, retention.blob_ttl).await {
            let _ = store.delete(id).await;
            return Err(e.into());
        }
        ImageSource::Blob(key)
    } else {
        ImageSource::Inline(image)
    };
    let blob = match &source {
        ImageSource::Blob(k) => Some(k.clone()),
        ImageSource::Inline(_) => None,
    };
    let message = JobMessage {
        id,
        model: entry.name.clone(),
        version: entry.version,
        top_k: q.top_k,
        created_at: record.created_at,
        image: source,
    };
    if let Err(e) = state.queue.publish(id, message.encode()).await {
        // Not accepted: forget the job so nobody polls a ghost.
        let _ = store.delete(id).await;
        if let Some(k) = blob {
            let _ = store.delete_blob(&k).await;
        }
        return Err(e.into());
    }
    tracing::info!(job_id = %id, model = %entry.name, version = entry.version,
        bytes = record.input.bytes, "job accepted");
    let mut resp = (StatusCode::ACCEPTED, Json(&record)).into_response();
    let location = HeaderValue::from_str(&format!("/v1/jobs/{id}")).expect("ascii location");
    resp.headers_mut().insert(header::LOCATION, location);
    Ok(resp)
}

/// `GET /v1/jobs/{id}?wait=SECONDS`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
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
    let record = if wait.is_zero() {
        state.store.get(job_id).await?
    } else {
        state.store.wait(job_id, wait).await?
    };
    record.map(Json).ok_or(ApiError::JobNotFound(id))
}
