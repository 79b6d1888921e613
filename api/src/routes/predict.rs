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
use std::collections::HashMap;

use inferq_runtime::config::LimitConfig;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::intake::encodings::{JobOptions, Payload, Submission, b64_instance, parse_instance};
use crate::intake::json_tensor::JsonTensor;
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
    responses((status = 200, description = "`{\"predictions\": [...]}` in instance order", body = serde_json::Value), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Backlog full; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 422, description = "An image failed to decode in the worker", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 500, description = "Inference failed", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Broker or store unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 504, description = "The jobs did not finish within --max-wait-secs", body = crate::http::error::Problem, content_type = "application/problem+json")),
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
    responses((status = 200, description = "`{\"predictions\": [...]}` in instance order", body = serde_json::Value), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Backlog full; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 422, description = "An image failed to decode in the worker", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 500, description = "Inference failed", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Broker or store unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 504, description = "The jobs did not finish within --max-wait-secs", body = crate::http::error::Problem, content_type = "application/problem+json")),
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

/// One instance in the shape the job submission path reads: a nested list
/// is a tensor, a string is base64, `{"image_bytes": {"b64"}}` is TF
/// Serving's image, any other object is a job's `input`.
fn instance(raw: &RawValue, limits: &LimitConfig) -> Result<Payload, ApiError> {
    let text = raw.get().trim_start();
    let invalid =
        |e: serde_json::Error| ApiError::InvalidArgument(format!("invalid instance: {e}"));
    match text.as_bytes().first() {
        Some(b'[') => {
            let tensor: JsonTensor = serde_json::from_str(text).map_err(invalid)?;
            Ok(Payload::Tensor {
                shape: tensor.shape,
                values: tensor.values,
            })
        }
        Some(b'"') => {
            let b64: String = serde_json::from_str(text).map_err(invalid)?;
            b64_instance(Some(b64), limits)
        }
        Some(b'{') => {
            // Only the keys are owned; values stay slices of the body.
            let mut fields: HashMap<String, &RawValue> =
                serde_json::from_str(text).map_err(invalid)?;
            match fields.remove("image_bytes") {
                None => parse_instance(text.as_bytes(), limits),
                Some(inner) if inner.get().trim_start().starts_with('{') => {
                    let mut inner: HashMap<String, &RawValue> =
                        serde_json::from_str(inner.get()).map_err(invalid)?;
                    let b64 = match inner.remove("b64") {
                        Some(v) => serde_json::from_str::<Option<String>>(v.get())
                            .map_err(invalid)?,
                        None => None,
                    };
                    b64_instance(b64, limits)
                }
                Some(_) => Err(ApiError::InvalidArgument(
                    "`image_bytes` must be {\"b64\": \"…\"}".into(),
                )),
            }
        }
        _ => Err(ApiError::InvalidArgument(
            "an instance is {\"b64\"}, {\"image_bytes\": {\"b64\"}}, {\"uri\"}, {\"tensor\"} or a nested list".into(),
        )),
    }
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
    Ok(Json(json!({ "predictions": predictions })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LimitConfig {
        crate::fuzzing::limits()
    }

    fn one(json: &str) -> Result<Payload, String> {
        let raw: &RawValue = serde_json::from_str(json).unwrap();
        instance(raw, &limits()).map_err(|e| e.to_string())
    }

    #[test]
    fn each_instance_shape_becomes_its_payload() {
        match one("[[[0.5, 1], [2, 3]]]").unwrap() {
            Payload::Tensor { shape, values } => {
                assert_eq!(shape, vec![1, 2, 2]);
                assert_eq!(values, vec![0.5, 1.0, 2.0, 3.0]);
            }
            other => panic!("{other:?}"),
        }
        for json in [
            r#""aGk=""#,
            r#"{"b64": "aGk="}"#,
            r#"{"image_bytes": {"b64": "aGk="}}"#,
        ] {
            match one(json).unwrap() {
                Payload::Image { bytes, .. } => assert_eq!(&bytes[..], b"hi", "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
        assert!(matches!(
            one(r#"{"uri": "gs://bucket/o.png"}"#).unwrap(),
            Payload::Uri(_)
        ));
    }

    #[test]
    fn bad_instances_keep_their_messages() {
        for (json, why) in [
            ("[[1, 2], [3]]", "invalid instance: `tensor`: ragged"),
            ("3", "an instance is"),
            ("null", "an instance is"),
            (r#"{"image_bytes": 3}"#, "`image_bytes` must be"),
            (r#"{"image_bytes": null}"#, "`image_bytes` must be"),
            (r#"{"image_bytes": {}}"#, "exactly one of"),
            (
                r#"{"image_bytes": {"b64": 3}}"#,
                "invalid instance: invalid type",
            ),
            (r#"{"b64": "aGk=", "x": 1}"#, "unknown field `x`"),
            (r#""%%%""#, "not valid base64"),
        ] {
            let err = one(json).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
    }
}
