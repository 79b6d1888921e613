//! `POST /v1/jobs`: the submit path, the hot path of the API.
//!
//! It is kept cheap: read the body under a size limit (in any encoding, see
//! [`crate::intake::encodings`]), identify the image format and dimensions from the
//! header (no decoding), bind the `Idempotency-Key` if one was sent (see
//! [`crate::intake::idempotency`]), count the job into its model's backlog
//! (admission control: a full backlog is a 429 with a `Retry-After` from the
//! workers' recent pace), record the job, hand it to the broker and wait for
//! the broker's confirm. Only then does the client get `202 Accepted`, so a
//! job that was accepted cannot be lost by a crash of this process — and
//! every earlier failure undoes what was done (record, image, backlog place,
//! idempotency binding), so a refused job leaves nothing behind. The
//! accepting runs on a task of its own ([`enqueue`]), bounded by
//! `--request-timeout-secs` from the inside: a client that hangs up cannot
//! cut it between the record and the publish (see [`crate::routes::accept`]).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use inferq_backends::fetch::fence::Access;
use inferq_backends::repository::valid_model_name;
use inferq_backends::store::Claim;
use inferq_core::job::{InputInfo, JobId, JobRecord, JobStatus};
use inferq_core::manifest::{DType, Layout, ModelManifest};
use inferq_core::sniff;
use inferq_core::trace::TraceContext;

use crate::http::auth::Principal;
use crate::http::auth::principal::{FenceFor, check_fence};
use crate::http::error::ApiError;
use crate::intake::encodings::{self, JobOptions, Payload, Submission};
use crate::intake::idempotency::{self, IdempotencyKey};
use crate::routes::accept::{Prepared, accept, republish};
use crate::routes::jobs::query;
use crate::state::AppState;
use tokio::time::Instant;

/// Largest `top_k` a client may ask for.
pub(crate) const MAX_TOP_K: usize = 1000;

/// `POST /v1/jobs?model=&version=&top_k=&timeout=&deadline=` with the input
/// in any accepted encoding (see [`crate::intake::encodings`]).
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    params(("model" = Option<String>, Query, description = "Model name (default: the server's default model)"), ("model_uri" = Option<String>, Query, description = "The model by storage reference (a folder with model.onnx + model.toml), installed once; needs --model-uri-allow"), ("version" = Option<u64>, Query, description = "Model version (default: the model's default version, the newest not marked `default = false`)"), ("top_k" = Option<usize>, Query, description = "Classes listed by a classifier (1..=1000)"), ("timeout" = Option<f64>, Query, description = "Seconds the job may wait to start"), ("deadline" = Option<String>, Query, description = "RFC 3339 instant by which the job must start"), ("output_uri" = Option<String>, Query, description = "Storage prefix to also write the result to"), ("fps" = Option<f64>, Query, description = "Video inputs: frames sampled per second of video (default: every frame)"), ("max_frames" = Option<u64>, Query, description = "Video inputs: most frames run (default: the worker's video_default_max_frames)"), ("webhook_url" = Option<String>, Query, description = "Where to POST a signed notification when the job is final"), ("Idempotency-Key" = Option<String>, Header, description = "Makes retries of this submission return the same job")),
    request_body(description = "The image or video (MP4, MOV, WebM, animated GIF): raw bytes, a multipart form (`file` part and option fields) or JSON", content((crate::http::media::Binary = "image/*"), (crate::http::media::Binary = "video/*"), (crate::http::media::Binary = "application/octet-stream"), (crate::intake::encodings::FormJob = "multipart/form-data"), (crate::intake::encodings::JsonJob = "application/json"))),
    responses((status = 202, description = "Accepted; Location names the job", body = inferq_core::job::JobRecord), (status = 200, description = "Idempotent replay of an earlier submission", body = inferq_core::job::JobRecord), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 415, description = "Unsupported media type or image format", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Backlog full; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Broker or store unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn submit(
    State(state): State<AppState>,
    principal: Principal,
    q: Result<Query<JobOptions>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let options = query(q)?;
    let owner = principal.tenant();
    let key = IdempotencyKey::from_headers(req.headers(), owner)?;
    let submission = encodings::parse(req, options, &state.settings.limits).await?;
    let done = enqueue(&state, submission, owner, key).await?;
    Ok(accepted_response(&done.record, done.replayed))
}

/// How long past its deadline a first request's key binding without a
/// record is given before a retry takes the key over (store calls each
/// have their own few-second timeout).
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(15);

/// A job the API has accepted: new, or the one an idempotency key is bound to.
pub(crate) struct Enqueued {
    pub record: JobRecord,
    /// True when the key was already bound and this is that earlier job.
    pub replayed: bool,
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

/// Longest relative `timeout` a job may ask for (a year).
const MAX_TIMEOUT_SECS: f64 = 365.0 * 86_400.0;

/// The job's deadline from `deadline` (RFC 3339) or `timeout` (seconds).
fn deadline(
    q: &crate::intake::encodings::JobOptions,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    match (&q.deadline, q.timeout) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ApiError::InvalidArgument(
            "give either `deadline` or `timeout`, not both".into(),
        )),
        (Some(text), None) => {
            let at = chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| {
                    ApiError::InvalidArgument(format!(
                        "`deadline` must be an RFC 3339 timestamp such as 2030-01-31T12:00:00Z: {e}"
                    ))
                })?
                .with_timezone(&chrono::Utc);
            if at <= now {
                return Err(ApiError::InvalidArgument(format!(
                    "`deadline` {text} has already passed"
                )));
            }
            Ok(Some(at))
        }
        (None, Some(secs)) => {
            if !(secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
                return Err(ApiError::InvalidArgument(format!(
                    "`timeout` must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECS}"
                )));
            }
            let span = chrono::Duration::milliseconds((secs * 1000.0).round() as i64);
            Ok(Some(now + span))
        }
    }
}

/// The video sampling options: `fps` above 0 and at most
/// [`inferq_core::video::MAX_FPS`], `max_frames` at least 1. (A worker
/// holds `max_frames` to its own limit; a still image ignores both.)
fn check_video_options(q: &JobOptions, max_frames: u64) -> Result<(), ApiError> {
    use inferq_core::video::MAX_FPS;
    if let Some(fps) = q.fps
        && !(fps > 0.0 && fps <= MAX_FPS)
    {
        return Err(ApiError::InvalidArgument(format!(
            "`fps` must be above 0 and at most {MAX_FPS}"
        )));
    }
    if let Some(n) = q.max_frames
        && !(1..=max_frames).contains(&n)
    {
        // The worker would fail it after queueing; say so now.
        return Err(ApiError::InvalidArgument(format!(
            "`max_frames` must be between 1 and {max_frames} (--video-max-frames)"
        )));
    }
    Ok(())
}

/// Refuses an output reference the worker could never write, before the job
/// is accepted: bad syntax gives `invalid_uri`, a bucket off the allow-list,
/// a path outside the local root or a private address gives `uri_forbidden`.
/// The object actually written is checked (for a prefix, `<prefix><id>.json`),
/// so `file:///root/` is judged by what lands below it, not by the root itself.
fn check_output(state: &AppState, fence: &FenceFor, output_uri: &str) -> Result<(), ApiError> {
    let (json_target, _) = inferq_backends::fetch::result_targets(output_uri, "job");
    let target = encodings::check_uri(&json_target)?;
    check_fence(fence, Access::Write, &json_target)?;
    state.fetcher.check(&target)?;
    Ok(())
}

/// The job's webhook, if it asked for one: refused when webhooks are off
/// (no signing secret), the format is unknown, or the URL is not an
/// `http(s)` URL the fetch policy allows (the same SSRF rules as inputs).
pub(crate) fn check_webhook(
    state: &AppState,
    owner: Option<&str>,
    q: &JobOptions,
) -> Result<Option<inferq_core::webhook::Webhook>, ApiError> {
    let Some(url) = &q.webhook_url else {
        if q.webhook_format.is_some() {
            return Err(ApiError::InvalidArgument(
                "`webhook_format` needs a `webhook_url`".into(),
            ));
        }
        return Ok(None);
    };
    if !state.auth.webhooks_allowed(owner, state.settings.webhooks) {
        return Err(ApiError::InvalidArgument(if state.auth.enabled() {
            "webhooks are not enabled for this API key (its entry has no webhook-secret=)".into()
        } else {
            "webhooks are not enabled on this server (no --webhook-secrets)".into()
        }));
    }
    let format = match &q.webhook_format {
        Some(f) => f.parse().map_err(ApiError::InvalidArgument)?,
        None => inferq_core::webhook::WebhookFormat::default(),
    };
    let target = encodings::check_uri(url)?;
    if !matches!(target, inferq_backends::fetch::StorageUri::Http(_)) {
        return Err(ApiError::InvalidArgument(format!(
            "webhook URL {url} must be http:// or https://"
        )));
    }
    state.fetcher.check(&target)?;
    Ok(Some(inferq_core::webhook::Webhook {
        url: url.clone(),
        format,
        delivery: None,
    }))
}

/// Checks everything that can be checked without side effects.
async fn prepare(
    state: &AppState,
    sub: Submission,
    owner: Option<&str>,
) -> Result<Prepared, ApiError> {
    let mut q = sub.options;
    let fence = state.auth.fence_for(owner);
    if let Some(uri) = q.model_uri.take() {
        if q.model.is_some() || q.version.is_some() {
            return Err(ApiError::InvalidArgument(
                "give `model` (and `version`) or `model_uri`, not both".into(),
            ));
        }
        // A model read by reference is an input like any other.
        check_fence(&fence, Access::Read, &uri)?;
        let (name, version) = crate::intake::model_uri::resolve(state, &uri).await?;
        q.model = Some(name);
        q.version = Some(version);
    }
    let job_deadline = deadline(&q, chrono::Utc::now())?;
    if let Some(k) = q.top_k
        && !(1..=MAX_TOP_K).contains(&k)
    {
        return Err(ApiError::InvalidArgument(format!(
            "top_k must be between 1 and {MAX_TOP_K}"
        )));
    }
    check_video_options(&q, state.settings.limits.video_max_frames)?;
    if let Some(out) = &q.output_uri {
        check_output(state, &fence, out)?;
    }
    let webhook = check_webhook(state, owner, &q)?;
    let name = q
        .model
        .clone()
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
            // A video is recognised by its container, never decoded here:
            // the worker probes and limits it (docs/video.md).
            let info = if let Some(format) = inferq_core::video::sniff(&bytes) {
                InputInfo {
                    encoding: encoding.into(),
                    format: Some(format.as_str().into()),
                    bytes: Some(bytes.len() as u64),
                    ..InputInfo::default()
                }
            } else {
                let header = sniff::inspect(&bytes, state.settings.limits.max_pixels)
                    .map_err(ApiError::BadImage)?;
                InputInfo {
                    encoding: encoding.into(),
                    format: Some(header.format.as_str().into()),
                    bytes: Some(bytes.len() as u64),
                    width: Some(header.width),
                    height: Some(header.height),
                    ..InputInfo::default()
                }
            };
            (Some(bytes), None, info)
        }
        Payload::Uri(uri) => {
            let parsed = encodings::check_uri(&uri)?;
            check_fence(&fence, Access::Read, &uri)?;
            state.fetcher.check(&parsed)?;
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

    let mut record = JobRecord::queued(JobId::new(), &entry.name, entry.version, info);
    record.deadline = job_deadline;
    record.webhook = webhook;
    record.trace = Some(crate::http::trace::current().unwrap_or_else(TraceContext::new_root));
    let (input, tensor_shape) = match (bytes, tensor) {
        (_, Some(Err(uri))) => (Err(uri), None),
        (Some(b), shape) => (Ok(b), shape.and_then(Result::ok)),
        (None, _) => return Err(ApiError::Internal("submission without input".into())),
    };
    Ok(Prepared {
        entry,
        record,
        options: q,
        input,
        tensor_shape,
    })
}

/// Validates, admits, records and enqueues a submission — or, when `key`
/// is already bound to a job, returns that job. Shared by `POST /v1/jobs`
/// and the storage-event bridge.
pub(crate) async fn enqueue(
    state: &AppState,
    sub: Submission,
    owner: Option<&str>,
    key: Option<IdempotencyKey>,
) -> Result<Enqueued, ApiError> {
    // On a task of its own, so that it runs to its end (or its undo) even
    // when the caller stops waiting: a client that hangs up, an HTTP or
    // batch timeout. `--request-timeout-secs` bounds it from the inside.
    let deadline = Instant::now() + state.settings.request_timeout;
    let task = tokio::spawn(crate::http::trace::carry({
        let state = state.clone();
        let owner = owner.map(str::to_owned);
        async move { enqueue_counted(&state, sub, owner.as_deref(), key, deadline).await }
    }));
    let result = task
        .await
        .unwrap_or_else(|e| Err(ApiError::Internal(format!("the submit task ended: {e}"))));
    if let Err(e) = &result {
        inferq_runtime::metrics::metrics()
            .jobs_rejected
            .with_label_values(&[e.code().as_str()])
            .inc();
    }
    result
}

async fn enqueue_counted(
    state: &AppState,
    sub: Submission,
    owner: Option<&str>,
    key: Option<IdempotencyKey>,
    deadline: Instant,
) -> Result<Enqueued, ApiError> {
    let fingerprint = key.as_ref().map(|_| idempotency::fingerprint(&sub));
    // Preparing has no side effects: it may be cut off (a model import by
    // reference can take long).
    let mut job = tokio::time::timeout_at(deadline, prepare(state, sub, owner))
        .await
        .map_err(|_| ApiError::Unavailable("timed out while preparing the job".into()))??;
    job.record.owner = owner.map(str::to_owned);
    let id = job.record.id;
    let store = &state.store;
    if let (Some(key), Some(fp)) = (&key, &fingerprint) {
        let ttl = state.settings.retention.idempotency_ttl;
        if let Claim::Taken {
            job: bound,
            fingerprint,
        } = store.claim_idempotency(key.scoped(), id, fp, ttl).await?
        {
            match idempotency::replay(state, bound, &fingerprint == fp).await {
                Ok(record) => {
                    if record.status == JobStatus::Queued && record.attempts == 0 {
                        republish(state, job, &record, deadline).await?;
                    }
                    return Ok(Enqueued {
                        record,
                        replayed: true,
                    });
                }
                // Bound, never recorded, and older than any live first
                // request could be (its accepting ends by its deadline):
                // that request died between the two steps. This one takes
                // the key over instead of answering "in use" until the key
                // expires.
                Err(ApiError::IdempotencyKeyInUse)
                    if store
                        .take_over_idempotency(
                            key.scoped(),
                            bound,
                            id,
                            fp,
                            ttl,
                            state.settings.request_timeout + ABANDONED_AFTER,
                        )
                        .await? =>
                {
                    tracing::warn!(job_id = %id, stale = %bound,
                        "the first request with this Idempotency-Key died before recording its job; taken over");
                }
                Err(e) => return Err(e),
            }
        }
    }
    match accept(state, job, deadline, key.is_some()).await {
        Ok(record) => Ok(Enqueued {
            record,
            replayed: false,
        }),
        Err(refused) => {
            // A job kept for its retry keeps its key; any other refusal
            // frees the key for a new attempt.
            if !refused.kept
                && let Some(key) = &key
                && let Err(e) = store.release_idempotency(key.scoped(), id).await
            {
                tracing::warn!(job_id = %id, error = %e, "idempotency key not released; it expires by itself");
            }
            Err(refused.error)
        }
    }
}

/// The `202` for an accepted job (or a replayed idempotent request).
pub(crate) fn accepted_response(record: &JobRecord, replayed: bool) -> Response {
    let mut resp = (StatusCode::ACCEPTED, Json(record)).into_response();
    let location =
        HeaderValue::from_str(&format!("/v1/jobs/{}", record.id)).expect("ascii location");
    resp.headers_mut().insert(header::LOCATION, location);
    if replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}
