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
//! layout); [`crate::intake::tf_instance`] reads them. The columnar
//! format, `{"inputs": [...]}` or `{"inputs": {"image_bytes": [...]}}`, is
//! answered `{"outputs": [...]}` as TF Serving does. `parameters.top_k`
//! sets the classifier's top-k. Error bodies carry TF Serving's `error`
//! member, added by [`crate::http::error_member`] for every answer on a
//! `:predict` path.
//!
//! The whole call fails if any instance does (as with TF Serving): the
//! first failure is the problem's detail, and jobs already queued for the
//! request are canceled. The wait is bounded by `--max-wait-secs`; past it
//! the answer is 503 `unavailable` and the jobs are canceled.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::intake::encodings::{JobOptions, Submission};
use crate::intake::tf_instance::instance;
use crate::intake::wait_all::{at_instance, run_all};
use crate::state::AppState;

/// The request, read without building a `serde_json::Value` tree: each
/// instance stays a slice of the body until it is parsed on its own,
/// straight into its typed payload (a tensor into a flat `f32` buffer), so
/// a request costs its body plus its tensors, not a tree of boxed numbers.
#[derive(Deserialize)]
struct PredictRequest<'a> {
    #[serde(borrow)]
    instances: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    inputs: Option<&'a RawValue>,
    #[serde(default)]
    parameters: Option<Parameters>,
    /// TF Serving's signature selector: only the default exists here.
    signature_name: Option<String>,
}

/// The one signature a model has here.
pub const SIGNATURE: &str = "serving_default";

/// The name of the encoded-image input in TF Serving's convention.
pub const IMAGE_BYTES: &str = "image_bytes";

/// A `:predict` request as the OpenAPI document describes it (the handler
/// reads the same JSON through [`PredictRequest`], without a value tree).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PredictBody {
    /// Row format: one element per instance.
    instances: Option<Vec<TfInstance>>,
    /// Columnar format: the batch unnamed, or under the one input's name
    /// (`image_bytes`, or the model's tensor input).
    inputs: Option<ColumnarInputs>,
    parameters: Option<ParametersDoc>,
    /// Only `serving_default` exists.
    signature_name: Option<String>,
}

/// One instance, in any of the shapes TF Serving and Vertex clients send.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum TfInstance {
    /// A nested list of numbers: a tensor in the model's layout.
    Tensor(Vec<serde_json::Value>),
    /// Base64 (or a `data:` URL), or a storage URI (`gs://`, `s3://`, `https://`).
    Text(String),
    /// `{"b64": …}`, `{"image_bytes": {"b64": …}}`, `{"uri": …}` or `{"tensor": […]}`.
    Object(TfInstanceObject),
}

/// The object forms of an instance: exactly one member.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TfInstanceObject {
    b64: Option<String>,
    image_bytes: Option<B64>,
    uri: Option<String>,
    tensor: Option<Vec<serde_json::Value>>,
}

/// `{"b64": "…"}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct B64 {
    b64: String,
}

/// The columnar `inputs` member.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ColumnarInputs {
    /// The batch, for the model's one input.
    Batch(Vec<TfInstance>),
    /// `{"image_bytes": [...]}` or `{"<tensor input>": [...]}`.
    Named(HashMap<String, Vec<TfInstance>>),
}

/// `parameters`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ParametersDoc {
    /// Classes returned by a classifier.
    top_k: Option<usize>,
}

/// The answer: `predictions` for rows, `outputs` for columns, in order.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PredictAnswer {
    predictions: Option<Vec<inferq_core::prediction::Prediction>>,
    outputs: Option<Vec<inferq_core::prediction::Prediction>>,
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
    request_body(content = PredictBody, description = "Rows (`instances`) or columns (`inputs`); every error body also carries TF Serving's `error` member", content_type = "application/json"),
    responses((status = 200, description = "`{\"predictions\": [...]}` in instance order (`{\"outputs\": [...]}` for the columnar `inputs` format)", body = PredictAnswer), (status = 400, description = "Invalid request, or an instance's input was refused", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the submit scope, or a cross-site request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 413, description = "Body over the size limit or the in-flight body budget", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 422, description = "An image failed to decode in the worker", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Backlog full; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 500, description = "Inference failed", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Broker or store unavailable, or server busy", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 504, description = "The jobs did not finish within --max-wait-secs", body = crate::http::error::Problem, content_type = "application/problem+json")),
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
    request_body(content = PredictBody, description = "Rows (`instances`) or columns (`inputs`); every error body also carries TF Serving's `error` member", content_type = "application/json"),
    responses((status = 200, description = "`{\"predictions\": [...]}` in instance order (`{\"outputs\": [...]}` for the columnar `inputs` format)", body = PredictAnswer), (status = 400, description = "Invalid request, or an instance's input was refused", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the submit scope, or a cross-site request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 413, description = "Body over the size limit or the in-flight body budget", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 422, description = "An image failed to decode in the worker", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Backlog full; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 500, description = "Inference failed", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Broker or store unavailable, or server busy", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 504, description = "The jobs did not finish within --max-wait-secs", body = crate::http::error::Problem, content_type = "application/problem+json")),
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

/// The instances of a columnar `inputs` member, in batch order.
///
/// TF Serving's columnar format names each input and gives its whole batch:
/// `{"inputs": {"image_bytes": [{"b64": …}, …]}}`, or the model's tensor
/// input by its manifest name with a list of tensors; a model with one
/// input may also be sent the batch unnamed, `{"inputs": [...]}`. Each
/// element is then read like an instance.
fn columnar<'a>(inputs: &'a RawValue, tensor_input: &str) -> Result<Vec<&'a RawValue>, ApiError> {
    let invalid =
        |e: serde_json::Error| ApiError::InvalidArgument(format!("invalid `inputs`: {e}"));
    let text = inputs.get().trim_start();
    if text.starts_with('[') {
        return serde_json::from_str(text).map_err(invalid);
    }
    if !text.starts_with('{') {
        return Err(ApiError::InvalidArgument(
            "`inputs` is a list (the batch) or an object naming one input".into(),
        ));
    }
    let named: HashMap<String, &RawValue> = serde_json::from_str(text).map_err(invalid)?;
    let expected = || format!("`{IMAGE_BYTES}` (encoded images) or `{tensor_input}` (tensors)");
    if named.len() != 1 {
        return Err(ApiError::InvalidArgument(format!(
            "`inputs` names exactly one input: {}",
            expected()
        )));
    }
    let (name, batch) = named.into_iter().next().expect("one member");
    let name = name.as_str();
    let tensors = if name == IMAGE_BYTES {
        false
    } else if name == tensor_input {
        true
    } else {
        return Err(ApiError::InvalidArgument(format!(
            "no input named `{name}`; the inputs are {}",
            expected()
        )));
    };
    let elements: Vec<&RawValue> = serde_json::from_str(batch.get()).map_err(|_| {
        ApiError::InvalidArgument(format!("`inputs.{name}` must be a list (the batch)"))
    })?;
    for (i, e) in elements.iter().enumerate() {
        let first = e.get().trim_start().as_bytes().first().copied();
        let fits = if tensors {
            first == Some(b'[')
        } else {
            matches!(first, Some(b'{' | b'"'))
        };
        if !fits {
            let want = if tensors {
                "a nested list"
            } else {
                "{\"b64\": \"…\"} or a base64 string"
            };
            return Err(ApiError::InvalidArgument(format!(
                "instance {i}: each element of `inputs.{name}` is {want}"
            )));
        }
    }
    Ok(elements)
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
    let bytes = crate::http::body::read_body(&parts, body, limits.json_limit()).await?;
    crate::http::request_limits::check_json_depth(&bytes, limits.max_json_depth)?;
    let request: PredictRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::InvalidArgument(format!("invalid predict request: {e}")))?;
    if let Some(sig) = &request.signature_name
        && sig != SIGNATURE
    {
        return Err(ApiError::InvalidArgument(format!(
            "signature `{sig}` does not exist; only {SIGNATURE}"
        )));
    }
    let (instances, answer_key) = match (request.instances, request.inputs) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidArgument(
                "send either `instances` (rows) or `inputs` (columns), not both".into(),
            ));
        }
        (Some(rows), None) => (rows, "predictions"),
        (None, Some(inputs)) => {
            let entry = state.models.find(&model, version).await.ok_or_else(|| {
                ApiError::ModelNotFound {
                    name: model.clone(),
                    version,
                }
            })?;
            (columnar(inputs, &entry.manifest.input.name)?, "outputs")
        }
        (None, None) => {
            return Err(ApiError::InvalidArgument(
                "the request has neither `instances` nor `inputs`".into(),
            ));
        }
    };
    crate::http::request_limits::check_instances(instances.len(), limits)?;
    let top_k = request.parameters.unwrap_or_default().top_k;
    let mut submissions = Vec::with_capacity(instances.len());
    for (i, raw) in instances.into_iter().enumerate() {
        let payload = instance(raw, limits).map_err(|e| at_instance(i, e))?;
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
    // Everything needed is in the submissions now. (The body's bytes stay
    // reserved in the body budget until the answer.)
    drop(bytes);
    let records = run_all(&state, principal.tenant(), submissions).await?;
    let predictions: Vec<Value> = records
        .into_iter()
        .map(|r| serde_json::to_value(&r.result).expect("json"))
        .collect();
    Ok(Json(json!({ answer_key: predictions })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(json: &str) -> Result<usize, String> {
        let raw: &RawValue = serde_json::from_str(json).unwrap();
        columnar(raw, "input")
            .map(|v| v.len())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn columnar_inputs_become_instances() {
        assert_eq!(cols(r#"[{"b64": "aGk="}, "aGk="]"#), Ok(2));
        assert_eq!(cols(r#"{"image_bytes": [{"b64": "aGk="}]}"#), Ok(1));
        assert_eq!(cols(r#"{"input": [[[1, 2]], [[3, 4]]]}"#), Ok(2));
        for (json, why) in [
            (r#"{"pixels": [[1]]}"#, "no input named `pixels`"),
            (
                r#"{"input": [[1]], "image_bytes": []}"#,
                "exactly one input",
            ),
            (r#"{"image_bytes": {"b64": "aGk="}}"#, "must be a list"),
            (r#"{"input": ["aGk="]}"#, "instance 0: each element"),
            (r#"{"image_bytes": [[1]]}"#, "instance 0: each element"),
            ("3", "`inputs` is a list"),
        ] {
            let err = cols(json).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
    }
}
