//! `POST /v1/jobs`, `GET /v1/jobs/{id}` and `GET /v1/jobs/{id}/output`.
//!
//! Submitting is the hot path of the API and is kept cheap: read the body
//! under a size limit (in any encoding, see [`crate::input`]), identify the
//! image format and dimensions from the header (no decoding), record the job, hand it to the broker and wait for the
//! broker's confirm. Only then does the client get `202 Accepted`, so a
//! job that was accepted cannot be lost by a crash of this process.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use inferq_shared::job::{InputInfo, JobId, JobRecord};
use inferq_shared::manifest::{DType, Layout, ModelManifest};
use inferq_shared::message::{ImageSource, JobMessage};
use inferq_shared::postprocess::Prediction;
use inferq_shared::repository::valid_model_name;
use inferq_shared::sniff;
use inferq_shared::store::Saved;
use serde::Deserialize;

use crate::error::ApiError;
use crate::input::{self, JobOptions, Payload, Submission};
use crate::state::AppState;

/// Largest `top_k` a client may ask for.
const MAX_TOP_K: usize = 1000;

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

/// `POST /v1/jobs?model=&version=&top_k=` with the input in any accepted
/// encoding (see [`crate::input`]).
pub async fn submit(
    State(state): State<AppState>,
    q: Result<Query<JobOptions>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let options = query(q)?;
    let submission = input::parse(req, options, &state.settings.limits).await?;
    let timeout = state.settings.request_timeout;
    tokio::time::timeout(timeout, enqueue(&state, submission))
        .await
        .map_err(|_| ApiError::Unavailable("timed out while enqueueing the job".into()))?
}

/// Checks a tensor against the model's input and returns its normalised
/// shape (`[1, …]`).
fn check_tensor(
    shape: &[usize],
    values: &[f32],
    m: &ModelManifest,
) -> Result<Vec<usize>, ApiError> {
    let (w, h) = (m.input.width as usize, m.input.height as usize);
    let expected = match m.input.layout {
        Layout::Nchw => vec![1, 3, h, w],
        Layout::Nhwc => vec![1, h, w, 3],
    };
    let full: Vec<usize> = if shape.len() == 3 {
        std::iter::once(1).chain(shape.iter().copied()).collect()
    } else {
        shape.to_vec()
    };
    if full != expected {
        return Err(ApiError::InvalidArgument(format!(
            "`tensor` has shape {shape:?}; this model takes {expected:?} ({:?}, batch dimension optional)",
            m.input.layout
        )));
    }
    let integral = |v: &f32| v.fract() == 0.0;
    match m.input.dtype {
        DType::Float32 => {}
        DType::Int32 if values.iter().all(integral) => {}
        DType::Uint8
            if values
                .iter()
                .all(|v| integral(v) && (0.0..=255.0).contains(v)) => {}
        dtype => {
            return Err(ApiError::InvalidArgument(format!(
                "`tensor` values must be {dtype:?} for this model"
            )));
        }
    }
    Ok(full)
}

async fn enqueue(state: &AppState, sub: Submission) -> Result<Response, ApiError> {
    let q = sub.options;
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
        .find(&name, q.version)
        .await
        .ok_or_else(not_found)?;

    // What goes into the message, and what the record says about the input.
    let (bytes, tensor, info) = match sub.payload {
        Payload::Image { bytes, encoding } => {
            if bytes.is_empty() {
                return Err(ApiError::EmptyBody);
            }
            let header = sniff::inspect(&bytes, state.settings.limits.max_pixels)
                .map_err(ApiError::BadImage)?;
            let info = InputInfo {
                encoding: encoding.into(),
                format: Some(header.format.as_str().into()),
                bytes: Some(bytes.len() as u64),
                width: Some(header.width),
                height: Some(header.height),
                ..InputInfo::default()
            };
            (Some(bytes), None, info)
        }
        Payload::Uri(uri) => {
            state.fetcher.check(&input::check_uri(&uri)?)?;
            let info = InputInfo {
                encoding: "uri".into(),
                uri: Some(uri.clone()),
                ..InputInfo::default()
            };
            (None, Some(Err(uri)), info)
        }
        Payload::Tensor { shape, values } => {
            let full = check_tensor(&shape, &values, &entry.manifest)?;
            let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let info = InputInfo {
                encoding: "tensor".into(),
                bytes: Some(data.len() as u64),
                shape: Some(full.clone()),
                ..InputInfo::default()
            };
            (Some(Bytes::from(data)), Some(Ok(full)), info)
        }
    };

    let id = JobId::new();
    let record = JobRecord::queued(id, &entry.name, entry.version, info);
    let store = &state.store;
    let retention = &state.settings.retention;
    if store.save(&record, retention.result_ttl).await? != Saved::Written {
        return Err(ApiError::Internal(format!("job id {id} collided")));
    }
    let (source, tensor_shape) = match (bytes, tensor) {
        (_, Some(Err(uri))) => (ImageSource::Uri(uri), None),
        (Some(b), shape) => {
            let shape = shape.and_then(Result::ok);
            if b.len() > state.settings.limits.inline_max_bytes {
                let key = store.blob_key(id);
                if let Err(e) = store.put_blob(&key, &b, retention.blob_ttl).await {
                    let _ = store.delete(id).await;
                    return Err(e.into());
                }
                (ImageSource::Blob(key), shape)
            } else {
                (ImageSource::Inline(b), shape)
            }
        }
        (None, _) => return Err(ApiError::Internal("submission without input".into())),
    };
    let blob = match &source {
        ImageSource::Blob(k) => Some(k.clone()),
        _ => None,
    };
    let message = JobMessage {
        id,
        model: entry.name.clone(),
        version: entry.version,
        top_k: q.top_k,
        created_at: record.created_at,
        image: source,
        tensor: tensor_shape,
        output_uri: q.output_uri,
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
        encoding = %record.input.encoding, "job accepted");
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

/// `GET /v1/jobs/{id}/output`: the binary output of an image model (PNG).
pub async fn output(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job_id: JobId = id.parse().map_err(|_| ApiError::JobNotFound(id.clone()))?;
    let record = state
        .store
        .get(job_id)
        .await?
        .ok_or_else(|| ApiError::JobNotFound(id.clone()))?;
    let Some(Prediction::Image { content_type, .. }) = &record.result else {
        return Err(ApiError::OutputNotFound(format!(
            "job {id} has no output image (status {}; only finished image models have one)",
            record.status
        )));
    };
    let bytes = state
        .store
        .get_blob(&state.store.output_key(job_id))
        .await?
        .ok_or_else(|| ApiError::OutputNotFound(format!("the output of job {id} has expired")))?;
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
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    let job_id: JobId = id.parse().map_err(|_| ApiError::JobNotFound(id.clone()))?;
    let mut record = state
        .store
        .get(job_id)
        .await?
        .ok_or_else(|| ApiError::JobNotFound(id.clone()))?;
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
