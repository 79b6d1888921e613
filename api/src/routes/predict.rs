//! `POST /v1/models/{m}[/versions/{v}]:predict`: the TF Serving / Vertex AI
//! predict call, answered synchronously.
//!
//! Clients of TF Serving and Vertex endpoints send
//! `{"instances": [...], "parameters": {...}}` and expect
//! `{"predictions": [...]}` in the same order. Here each instance becomes an
//! ordinary job — same validation, admission control (429 when a model's
//! backlog is full) and queue — and the handler waits for all of them. No
//! inference runs in the API. An instance is `{"b64": "…"}` (or TF
//! Serving's `{"image_bytes": {"b64": "…"}}`), `{"uri": "gs://…"}`,
//! `{"tensor": [...]}` or a bare nested list (a tensor in the model's
//! layout). `parameters.top_k` sets the classifier's top-k.
//!
//! The whole call fails if any instance does (as with TF Serving): the
//! first failure is the problem's detail, and jobs already queued for the
//! request are canceled. The wait is bounded by `--max-wait-secs`; past it
//! the answer is 503 `unavailable` and the jobs are canceled.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::intake::encodings::{JobOptions, Submission, parse_instance};
use crate::intake::wait_all::{at_instance, run_all};
use crate::state::AppState;

#[derive(Deserialize)]
struct PredictRequest {
    instances: Option<Vec<Value>>,
    inputs: Option<Value>,
    #[serde(default)]
    parameters: Option<Parameters>,
    /// TF Serving's signature selector: only the default exists here.
    signature_name: Option<String>,
}

#[derive(Deserialize, Default)]
struct Parameters {
    top_k: Option<usize>,
}

/// The model (and version) of a `…:predict` path segment; `None` when the
/// segment does not end in `:predict`.
fn split_verb(segment: &str) -> Option<&str> {
    segment.strip_suffix(":predict")
}

/// `POST /v1/models/{name}:predict`.
#[utoipa::path(
    post,
    path = "/v1/models/{name}:predict",
    tag = "predict",
    params(("name" = String, Path, description = "Model name")),
    request_body(content = serde_json::Value, description = "`{\"instances\": [...], \"parameters\": {\"top_k\": 3}}`", content_type = "application/json"),
    responses((status = 200, description = "`{\"predictions\": [...]}` in instance order", body = serde_json::Value), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Backlog full; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Broker or store unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn model(
    state: State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let Some(model) = split_verb(&name) else {
        return Err(ApiError::RouteNotFound(format!("/v1/models/{name}")));
    };
    predict(state, principal, model.to_owned(), None, req).await
}

/// `POST /v1/models/{name}/versions/{version}:predict`.
#[utoipa::path(
    post,
    path = "/v1/models/{name}/versions/{version}:predict",
    tag = "predict",
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Model version")),
    request_body(content = serde_json::Value, description = "`{\"instances\": [...], \"parameters\": {\"top_k\": 3}}`", content_type = "application/json"),
    responses((status = 200, description = "`{\"predictions\": [...]}` in instance order", body = serde_json::Value), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Backlog full; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Broker or store unavailable", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn version(
    state: State<AppState>,
    principal: Principal,
    Path((name, version)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::RouteNotFound(format!("/v1/models/{name}/versions/{version}"));
    let v = split_verb(&version)
        .ok_or_else(not_found)?
        .parse::<u64>()
        .map_err(|_| not_found())?;
    predict(state, principal, name.clone(), Some(v), req).await
}

/// One instance in the shape the job submission path reads.
fn instance(
    value: Value,
    limits: &inferq_runtime::config::LimitConfig,
) -> Result<crate::intake::encodings::Payload, ApiError> {
    let normalised = match value {
        Value::Array(_) => json!({ "tensor": value }),
        Value::Object(mut o) => match o.remove("image_bytes") {
            Some(Value::Object(mut inner)) => {
                json!({ "b64": inner.remove("b64").unwrap_or(Value::Null) })
            }
            Some(_) => {
                return Err(ApiError::InvalidArgument(
                    "`image_bytes` must be {\"b64\": \"…\"}".into(),
                ));
            }
            None => Value::Object(o),
        },
        Value::String(s) => json!({ "b64": s }),
        _ => {
            return Err(ApiError::InvalidArgument(
                "an instance is {\"b64\"}, {\"image_bytes\": {\"b64\"}}, {\"uri\"}, {\"tensor\"} or a nested list".into(),
            ));
        }
    };
    parse_instance(normalised.to_string().as_bytes(), limits)
}

async fn predict(
    State(state): State<AppState>,
    principal: Principal,
    model: String,
    version: Option<u64>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let limits = &state.settings.limits;
    let bytes = crate::http::body::read_body(&parts.headers, body, limits.json_limit()).await?;
    crate::http::request_limits::check_json_depth(&bytes, limits.max_json_depth)?;
    let request: PredictRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::InvalidArgument(format!("invalid predict request: {e}")))?;
    if request.inputs.is_some() {
        return Err(ApiError::InvalidArgument(
            "the columnar `inputs` format is not supported; send `instances`".into(),
        ));
    }
    if let Some(sig) = &request.signature_name
        && sig != "serving_default"
    {
        return Err(ApiError::InvalidArgument(format!(
            "signature `{sig}` does not exist; only serving_default"
        )));
    }
    let instances = request.instances.unwrap_or_default();
    crate::http::request_limits::check_instances(instances.len(), limits)?;
    let top_k = request.parameters.unwrap_or_default().top_k;
    let mut submissions = Vec::with_capacity(instances.len());
    for (i, value) in instances.into_iter().enumerate() {
        let payload = instance(value, limits).map_err(|e| at_instance(i, e))?;
        submissions.push(Submission {
            options: JobOptions {
                model: Some(model.clone()),
                version,
                top_k,
                ..JobOptions::default()
            },
            payload,
        });
    }
    let records = run_all(&state, principal.tenant(), submissions).await?;
    let predictions: Vec<Value> = records
        .into_iter()
        .map(|r| serde_json::to_value(&r.result).expect("json"))
        .collect();
    Ok(Json(json!({ "predictions": predictions })).into_response())
}
