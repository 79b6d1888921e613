//! Batch prediction: `POST /v1/batches`, `GET /v1/batches/{id}`,
//! `POST /v1/batches/{id}/cancel`.
//!
//! A batch names a model, an input (a storage prefix of images, a JSONL
//! file of instances, or a file list of URIs) and an output prefix. The
//! handler only validates and records it; a [`coordinator`] — any API
//! process, holding a renewable lease — lists the input, fans the
//! instances out as ordinary jobs through the same admission control and
//! queue, collects every outcome and writes `prediction.results-…` and
//! `prediction.errors_stats-…` files (Vertex's names; the error lines also
//! as `prediction.errors-…`, InferQ's earlier name) — see
//! [`inferq_core::batch_prediction`] for what is kept where, and why a
//! batch survives restarts. A JSONL line takes any `:predict` instance
//! shape ([`crate::intake::tf_instance`]); its extra members (`key`) are
//! repeated in its output line.

pub mod coordinator;
mod files;
pub mod instances;
mod run;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use inferq_backends::repository::valid_model_name;
use inferq_backends::store::batch_prediction as stored;
use inferq_backends::store::{BATCHES, Claim};
use inferq_core::batch_prediction::{
    self as batch, BatchCounts, BatchInput, BatchRecord, BatchState, InputKind,
};
use inferq_core::job::JobId;
use serde::Deserialize;

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::intake::encodings::{JobOptions, check_uri};
use crate::intake::idempotency::IdempotencyKey;
use crate::state::AppState;

/// Largest batch request body (it holds URIs and options, not images).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBatch {
    model: Option<String>,
    /// The model by storage reference, resolved once for the whole batch.
    model_uri: Option<String>,
    version: Option<u64>,
    top_k: Option<usize>,
    input: InputSpec,
    output: OutputSpec,
    shard_size: Option<u64>,
    webhook: Option<WebhookSpec>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct InputSpec {
    prefix: Option<String>,
    jsonl: Option<String>,
    file_list: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OutputSpec {
    prefix: String,
    /// Per-file outputs mirroring the input paths (default: on for prefix
    /// and file-list inputs).
    mirror: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WebhookSpec {
    url: String,
    format: Option<String>,
}

/// The store key an `Idempotency-Key` of a batch request is bound under.
fn idempotency_scope(key: &IdempotencyKey) -> String {
    format!("batch:{}", key.scoped())
}

/// `POST /v1/batches`.
#[utoipa::path(
    post,
    path = "/v1/batches",
    tag = "batches",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries return the same batch")),
    request_body(content = CreateBatch, description = "Model, input (exactly one of prefix, JSONL file or file list), output prefix, optional webhook (docs/batches.md)", content_type = "application/json"),
    responses((status = 202, description = "The batch", body = BatchRecord), (status = 200, description = "The batch an earlier request with the same Idempotency-Key made", body = BatchRecord), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 409, description = "The Idempotency-Key's first request is still being accepted; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 422, description = "The Idempotency-Key was used for a different request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Backlog full; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Broker or store unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> Result<Response, ApiError> {
    let owner = principal.tenant();
    let key = IdempotencyKey::from_headers(req.headers(), owner)?;
    let (parts, body) = req.into_parts();
    let bytes = crate::http::body::read_body(&parts, body, MAX_REQUEST_BYTES).await?;
    crate::http::request_limits::check_json_depth(&bytes, state.settings.limits.max_json_depth)?;
    let spec: CreateBatch = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::InvalidArgument(format!("invalid batch request: {e}")))?;
    let mut record = validate(&state, owner, spec).await?;
    record.owner = owner.map(str::to_owned);
    let store = state.store.as_ref();
    if let Some(key) = &key {
        let fingerprint = crate::intake::idempotency::fingerprint_bytes(&bytes);
        let ttl = state.settings.retention.idempotency_ttl;
        if let Claim::Taken {
            job,
            fingerprint: fp,
        } = store
            .claim_idempotency(&idempotency_scope(key), record.id, &fingerprint, ttl)
            .await?
        {
            if fp != fingerprint {
                return Err(ApiError::IdempotencyKeyReused(
                    "this Idempotency-Key was used for a different batch request".into(),
                ));
            }
            let earlier = stored::load(store, job)
                .await?
                .ok_or(ApiError::IdempotencyKeyInUse)?;
            return Ok(respond(StatusCode::OK, &earlier, true));
        }
    }
    let ttl = state.settings.retention.result_ttl;
    stored::save(store, &record, ttl).await?;
    store
        .schedule(BATCHES, &record.id.to_string(), now_ms())
        .await?;
    tracing::info!(batch_id = %record.id, model = %record.model, input = %record.input.uri,
        output = %record.output, "batch accepted");
    Ok(respond(StatusCode::ACCEPTED, &record, false))
}

pub(crate) fn now_ms() -> u64 {
    Utc::now().timestamp_millis().max(0) as u64
}

fn respond(status: StatusCode, record: &BatchRecord, replayed: bool) -> Response {
    let mut resp = (status, Json(record)).into_response();
    let location =
        HeaderValue::from_str(&format!("/v1/batches/{}", record.id)).expect("ascii location");
    resp.headers_mut().insert(header::LOCATION, location);
    if replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// Checks a batch request without side effects and builds its record.
async fn validate(
    state: &AppState,
    owner: Option<&str>,
    spec: CreateBatch,
) -> Result<BatchRecord, ApiError> {
    use crate::http::auth::principal::check_fence;
    use inferq_backends::fetch::fence::Access;
    let fence = state.auth.fence_for(owner);
    let input = match (spec.input.prefix, spec.input.jsonl, spec.input.file_list) {
        (Some(uri), None, None) => BatchInput {
            kind: InputKind::Prefix,
            uri,
        },
        (None, Some(uri), None) => BatchInput {
            kind: InputKind::Jsonl,
            uri,
        },
        (None, None, Some(uri)) => BatchInput {
            kind: InputKind::FileList,
            uri,
        },
        _ => {
            return Err(ApiError::InvalidArgument(
                "`input` must have exactly one of `prefix`, `jsonl` or `file_list`".into(),
            ));
        }
    };
    let limits = &state.settings.limits;
    crate::http::request_limits::check_uri_len("input", &input.uri, limits)?;
    let source = match input.kind {
        InputKind::Prefix => instances::parse_prefix(&input.uri)?,
        _ => check_uri(&input.uri)?,
    };
    // A listed prefix must itself lie inside the fence (`gs://b/acme` would
    // also list `gs://b/acme-other/…`); each instance's own reference is
    // fenced again when its job is submitted.
    check_fence(&fence, Access::Read, &input.uri)?;
    state.fetcher.check(&source)?;
    if input.kind == InputKind::Prefix
        && matches!(source, inferq_backends::fetch::StorageUri::Http(_))
    {
        return Err(ApiError::InvalidArgument(
            "a web URL cannot be listed as a prefix; use a `jsonl` or `file_list` input".into(),
        ));
    }
    let mut output = spec.output.prefix;
    crate::http::request_limits::check_uri_len("output.prefix", &output, limits)?;
    if !output.ends_with('/') {
        output.push('/');
    }
    check_fence(&fence, Access::Write, &output)?;
    let first_shard = format!("{output}{}", batch::shard_name("results", 0, 1));
    state.fetcher.check(&check_uri(&first_shard)?)?;
    if matches!(
        instances::parse_prefix(&output)?,
        inferq_backends::fetch::StorageUri::Http(_)
    ) {
        return Err(ApiError::InvalidArgument(
            "the output prefix must be a bucket or file:// prefix".into(),
        ));
    }
    let shard_size = spec
        .shard_size
        .unwrap_or(state.settings.batch.batch_shard_size);
    if !(1..=1_000_000).contains(&shard_size) {
        return Err(ApiError::InvalidArgument(
            "`shard_size` must be between 1 and 1000000".into(),
        ));
    }
    if let Some(k) = spec.top_k
        && !(1..=1000).contains(&k)
    {
        return Err(ApiError::InvalidArgument(
            "top_k must be between 1 and 1000".into(),
        ));
    }
    let options = JobOptions {
        webhook_url: spec.webhook.as_ref().map(|w| w.url.clone()),
        webhook_format: spec.webhook.and_then(|w| w.format),
        ..JobOptions::default()
    };
    let webhook = crate::routes::submit::check_webhook(state, owner, &options)?;
    let (model, version) = match spec.model_uri {
        Some(_) if spec.model.is_some() || spec.version.is_some() => {
            return Err(ApiError::InvalidArgument(
                "give `model` (and `version`) or `model_uri`, not both".into(),
            ));
        }
        Some(uri) => {
            check_fence(&fence, Access::Read, &uri)?;
            let (name, version) = crate::intake::model_uri::resolve(state, &uri).await?;
            (Some(name), Some(version))
        }
        None => (spec.model, spec.version),
    };
    let name = model.unwrap_or_else(|| state.settings.default_model.clone());
    let not_found = || ApiError::ModelNotFound {
        name: name.clone(),
        version,
    };
    if !valid_model_name(&name) {
        return Err(not_found());
    }
    let entry = state
        .models
        .find(&name, version)
        .await
        .ok_or_else(not_found)?;
    let mirror = spec.output.mirror.unwrap_or(input.kind != InputKind::Jsonl);
    Ok(BatchRecord {
        id: JobId::new(),
        state: BatchState::Queued,
        model: entry.name.clone(),
        version: entry.version,
        input,
        output,
        top_k: spec.top_k,
        mirror,
        shard_size,
        counts: BatchCounts::default(),
        created_at: Utc::now(),
        started_at: None,
        finished_at: None,
        files: Vec::new(),
        error: None,
        cancel_requested: false,
        input_digest: None,
        retries: 0,
        last_error: None,
        webhook,
        owner: None,
    })
}

/// The batch if the caller may see it (another tenant's is a 404).
async fn visible(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<BatchRecord, ApiError> {
    let not_found = || ApiError::BatchNotFound(id.to_owned());
    let batch_id: JobId = id.parse().map_err(|_| not_found())?;
    stored::load(state.store.as_ref(), batch_id)
        .await?
        .filter(|b| principal.can_see(b.owner.as_deref()))
        .ok_or_else(not_found)
}

/// `GET /v1/batches/{id}`: the record with live counts.
#[utoipa::path(
    get,
    operation_id = "get_batch",
    path = "/v1/batches/{id}",
    tag = "batches",
    params(("id" = String, Path, description = "Batch id")),
    responses((status = 200, description = "The batch and its live counts", body = BatchRecord), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<BatchRecord>, ApiError> {
    let mut record = visible(&state, &principal, &id).await?;
    if !record.state.is_terminal() {
        let store = state.store.as_ref();
        record.counts.succeeded = store.hash_len(&stored::ok_key(store, record.id)).await?;
        record.counts.failed = store.hash_len(&stored::err_key(store, record.id)).await?;
    }
    Ok(Json(record))
}

/// `POST /v1/batches/{id}/cancel`: no further instances are submitted,
/// queued ones are canceled, and the files are written for what finished.
/// The batch ends `canceled` once its coordinator has done that.
#[utoipa::path(
    post,
    operation_id = "cancel_batch",
    path = "/v1/batches/{id}/cancel",
    tag = "batches",
    params(("id" = String, Path, description = "Batch id")),
    responses((status = 202, description = "Cancel requested: the batch, with `cancel_requested`", body = BatchRecord), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict with the current state", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = visible(&state, &principal, &id).await?;
    if record.state.is_terminal() {
        return Err(ApiError::BatchFinished {
            id,
            state: record.state.to_string(),
        });
    }
    let store = state.store.as_ref();
    store
        .put_blob(
            &coordinator::cancel_key(store, record.id),
            b"1",
            state.settings.retention.result_ttl,
        )
        .await?;
    tracing::info!(batch_id = %record.id, "batch cancel requested");
    let mut shown = record;
    shown.cancel_requested = true;
    Ok((StatusCode::ACCEPTED, Json(shown)).into_response())
}
