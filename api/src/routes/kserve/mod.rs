//! KServe v2 / Open Inference Protocol: health, metadata and inference.
//!
//! Clients of Triton and KServe (`tritonclient`, the KServe SDK, load
//! balancers configured for them) probe `GET /v2/health/live`,
//! `/v2/health/ready` and `/v2/models/{m}[/versions/{v}]/ready` and read
//! `GET /v2` for the server's name, version and extensions ([`health`]).
//! Server health is outside API-key authentication like the other probes;
//! model readiness, metadata and configuration ([`config`]) name models,
//! so they need the `read` scope.
//!
//! `POST /v2/models/{m}[/versions/{v}]/infer` is answered synchronously
//! like TF Serving's `:predict` (see [`crate::intake::wait_all`]): every element
//! of the batch axis becomes a job through the queue and the workers, with
//! admission control, and the call waits for all of them. The input is
//! either encoded images (`BYTES`, one per element, any accepted format) or
//! a tensor in the model's layout (`FP32`, `UINT8`, `INT32`); [`codec`]
//! reads both the JSON and the binary form, [`outputs`] says which tensors
//! each model kind answers with. Request and response bodies may be
//! gzip- or deflate-compressed ([`crate::http::content_coding`]). Errors are problem+json bodies that also
//! carry the protocol's `error` member; [`crate::http::error_member`] adds
//! it to the answers made before a handler runs (authentication, limits,
//! unknown routes).

pub mod codec;
pub mod config;
pub mod health;
pub mod outputs;
pub mod schemas;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use inferq_backends::repository::ModelEntry;
use inferq_core::manifest::{DType, Layout};
use serde_json::{Value, json};

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::intake::encodings::{JobOptions, Payload, Submission};
use crate::state::AppState;
use codec::{DataType, Elements};

/// The model version a v2 path names, or 404.
async fn entry(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<ModelEntry>, ApiError> {
    let not_found = |v| ApiError::ModelNotFound {
        name: name.to_owned(),
        version: v,
    };
    let version = match version {
        Some(v) => Some(v.parse::<u64>().map_err(|_| not_found(None))?),
        None => None,
    };
    if !inferq_backends::repository::valid_model_name(name) {
        return Err(not_found(version));
    }
    state
        .models
        .find(name, version)
        .await
        .ok_or_else(|| not_found(version))
}

/// Name of the `BYTES` input that takes encoded images.
const IMAGE_INPUT: &str = "image";

/// The tensor input's datatype name.
fn tensor_datatype(dtype: DType) -> &'static str {
    match dtype {
        DType::Float32 => "FP32",
        DType::Uint8 => "UINT8",
        DType::Int32 => "INT32",
    }
}

/// `[channels, height, width]` or `[height, width, channels]`.
fn instance_shape(entry: &ModelEntry) -> [usize; 3] {
    let i = &entry.manifest.input;
    let (w, h) = (i.width as usize, i.height as usize);
    match i.layout {
        Layout::Nchw => [3, h, w],
        Layout::Nhwc => [h, w, 3],
    }
}

/// One tensor of [`ModelMetadata`].
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TensorMetadata {
    pub name: String,
    /// `FP32`, `UINT8`, `INT32` or `BYTES`.
    pub datatype: String,
    /// -1 where the size varies (always the batch axis).
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{m}[/versions/{v}]`'s body.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    /// Always `onnxruntime_onnx`.
    pub platform: &'static str,
    /// Two alternatives: the model's tensor input and `image` (encoded images).
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

fn metadata(entry: &ModelEntry, versions: Vec<u64>) -> ModelMetadata {
    let dims = instance_shape(entry);
    let input = &entry.manifest.input;
    let outputs = outputs::outputs(entry)
        .into_iter()
        .map(|o| TensorMetadata {
            name: o.name,
            datatype: o.datatype.to_owned(),
            shape: o.shape,
        })
        .collect();
    ModelMetadata {
        name: entry.name.clone(),
        versions: versions.iter().map(u64::to_string).collect(),
        platform: "onnxruntime_onnx",
        inputs: vec![
            TensorMetadata {
                name: input.name.clone(),
                datatype: tensor_datatype(input.dtype).to_owned(),
                shape: vec![-1, dims[0] as i64, dims[1] as i64, dims[2] as i64],
            },
            TensorMetadata {
                name: IMAGE_INPUT.to_owned(),
                datatype: "BYTES".to_owned(),
                shape: vec![-1],
            },
        ],
        outputs,
    }
}

/// `GET /v2/models/{m}`: inputs, outputs and versions. The two inputs are
/// alternatives: a request sends one of them.
#[utoipa::path(
    get,
    path = "/v2/models/{name}",
    tag = "kserve",
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, description = "Inputs, outputs and versions", body = ModelMetadata), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn model_metadata(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match entry(&state, &name, None).await {
        Ok(e) => {
            let repo = state.models.current();
            let versions = repo
                .versions(&name)
                .map(|v| v.map(|e| e.version).collect())
                .unwrap_or_default();
            Json(metadata(&e, versions)).into_response()
        }
        Err(e) => e.into_v2_response(),
    }
}

/// `GET /v2/models/{m}/versions/{v}`.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}",
    tag = "kserve",
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Model version")),
    responses((status = 200, description = "Inputs, outputs and versions", body = ModelMetadata), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn version_metadata(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    match entry(&state, &name, Some(&version)).await {
        Ok(e) => Json(metadata(&e, vec![e.version])).into_response(),
        Err(e) => e.into_v2_response(),
    }
}

/// `POST /v2/models/{m}/infer`.
#[utoipa::path(
    post,
    path = "/v2/models/{name}/infer",
    tag = "kserve",
    params(("name" = String, Path, description = "Model name")),
    request_body(description = "Inference request, JSON or binary-tensor extension (Inference-Header-Content-Length), optionally Content-Encoding gzip or deflate; docs/protocols.md", content((schemas::InferRequestBody = "application/json"), (crate::http::media::Binary = "application/octet-stream"))),
    responses((status = 200, description = "Outputs, JSON or JSON header plus binary data", content((schemas::InferResponseBody = "application/json"), (crate::http::media::Binary = "application/octet-stream"))), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 413, description = "Body (decompressed) over the limit or the body budget", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 415, description = "Unsupported Content-Encoding or image format", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 422, description = "An image failed to decode in the worker", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Backlog full; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 500, description = "Inference failed", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Broker or store unavailable, or the server is busy", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 504, description = "The jobs did not finish within --max-wait-secs", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn model_infer(
    state: State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    infer(state, principal, name, None, req)
        .await
        .unwrap_or_else(ApiError::into_v2_response)
}

/// `POST /v2/models/{m}/versions/{v}/infer`.
#[utoipa::path(
    post,
    path = "/v2/models/{name}/versions/{version}/infer",
    tag = "kserve",
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Model version")),
    request_body(description = "Inference request, JSON or binary-tensor extension (Inference-Header-Content-Length), optionally Content-Encoding gzip or deflate; docs/protocols.md", content((schemas::InferRequestBody = "application/json"), (crate::http::media::Binary = "application/octet-stream"))),
    responses((status = 200, description = "Outputs, JSON or JSON header plus binary data", content((schemas::InferResponseBody = "application/json"), (crate::http::media::Binary = "application/octet-stream"))), (status = 400, description = "Invalid request", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 413, description = "Body (decompressed) over the limit or the body budget", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 415, description = "Unsupported Content-Encoding or image format", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 422, description = "An image failed to decode in the worker", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Backlog full; see Retry-After", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 500, description = "Inference failed", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Broker or store unavailable, or the server is busy", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 504, description = "The jobs did not finish within --max-wait-secs", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn version_infer(
    state: State<AppState>,
    principal: Principal,
    Path((name, version)): Path<(String, String)>,
    req: Request,
) -> Response {
    infer(state, principal, name, Some(version), req)
        .await
        .unwrap_or_else(ApiError::into_v2_response)
}

async fn infer(
    State(state): State<AppState>,
    principal: Principal,
    name: String,
    version: Option<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let entry = entry(&state, &name, version.as_deref()).await?;
    let limits = &state.settings.limits;
    let (parts, body) = req.into_parts();
    let body = crate::http::content_coding::read_decoded(&parts, body, limits.json_limit()).await?;
    let header_length = parts
        .headers
        .get(codec::HEADER_LENGTH)
        .map(|v| v.to_str().unwrap_or("invalid"));
    let (request, tail) = codec::parse_request(&body, header_length, limits.max_json_depth)?;
    let wanted = outputs::resolve(
        &entry,
        request.outputs,
        request.parameters.binary_data_output,
    )?;
    let mut inputs = codec::decode_inputs(request.inputs, tail)?;
    if inputs.len() != 1 {
        return Err(ApiError::InvalidArgument(format!(
            "send exactly one input: `{IMAGE_INPUT}` (BYTES, encoded images) or `{}` (a tensor)",
            entry.manifest.input.name
        )));
    }
    let payloads = instances(&entry, inputs.remove(0))?;
    // The body is no longer needed (binary elements share its buffer and
    // keep it); its bytes stay reserved until the answer.
    drop(body);
    crate::http::request_limits::check_instances(payloads.len(), limits)?;
    let top_k = outputs::top_k_needed(&entry, &wanted);
    let submissions = payloads
        .into_iter()
        .map(|payload| Submission {
            options: JobOptions {
                model: Some(entry.name.clone()),
                version: Some(entry.version),
                top_k,
                ..JobOptions::default()
            },
            payload,
        })
        .collect();
    let records = crate::intake::wait_all::run_all(&state, principal.tenant(), submissions).await?;
    let mut answers = Vec::with_capacity(records.len());
    for r in records {
        let image = match entry.manifest.kind {
            inferq_core::manifest::ModelKind::Image => {
                state.store.get_blob(&state.store.output_key(r.id)).await?
            }
            _ => None,
        };
        let prediction = r
            .result
            .ok_or_else(|| ApiError::Internal("a succeeded job has no result".into()))?;
        answers.push(outputs::Answer { prediction, image });
    }
    let tensors = outputs::build(&entry, &answers, &wanted)?;
    let mut head = json!({
        "model_name": entry.name,
        "model_version": entry.version.to_string(),
    });
    if let Some(id) = request.id {
        head["id"] = Value::String(id);
    }
    let (body, header_len) = outputs::encode(head, tensors);
    let mut headers = axum::http::HeaderMap::new();
    match header_len {
        Some(n) => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(codec::HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    let body =
        crate::http::content_coding::encode_response(&parts.headers, &mut headers, body).await?;
    Ok((headers, body).into_response())
}

/// One job payload per element of the input's batch axis.
fn instances(entry: &ModelEntry, input: codec::Input) -> Result<Vec<Payload>, ApiError> {
    let model_input = &entry.manifest.input;
    let expected = instance_shape(entry);
    match input.elements {
        Elements::Blobs(blobs) => {
            if input.name != IMAGE_INPUT && input.name != model_input.name {
                return Err(ApiError::InvalidArgument(format!(
                    "unknown input `{}`; encoded images go in `{IMAGE_INPUT}`",
                    input.name
                )));
            }
            if input.shape.len() > 2 || input.shape.get(1).is_some_and(|d| *d != 1) {
                return Err(ApiError::InvalidArgument(format!(
                    "input `{}`: BYTES images have shape [N] or [N, 1]",
                    input.name
                )));
            }
            Ok(blobs
                .into_iter()
                .map(|bytes| Payload::Image {
                    bytes,
                    encoding: "kserve",
                })
                .collect())
        }
        Elements::Numbers(values) => {
            if input.name != model_input.name {
                return Err(ApiError::InvalidArgument(format!(
                    "unknown input `{}`; this model's tensor input is `{}`",
                    input.name, model_input.name
                )));
            }
            debug_assert_ne!(input.datatype, DataType::Bytes);
            if input.shape.len() != 4 || input.shape[1..] != expected {
                return Err(ApiError::InvalidArgument(format!(
                    "input `{}` has shape {:?}; this model takes [N, {}, {}, {}] ({:?})",
                    input.name,
                    input.shape,
                    expected[0],
                    expected[1],
                    expected[2],
                    model_input.layout
                )));
            }
            let per = expected.iter().product::<usize>();
            let shape = vec![1, expected[0], expected[1], expected[2]];
            Ok(split_batch(values, per)
                .into_iter()
                .map(|values| Payload::Tensor {
                    shape: shape.clone(),
                    values,
                })
                .collect())
        }
    }
}

/// Cuts a batch of `per`-value tensors into one buffer each, from the end,
/// shrinking the batch's buffer as it goes: at most one tensor more than
/// the batch is held at any time, instead of the batch twice.
fn split_batch(mut values: Vec<f32>, per: usize) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(values.len() / per.max(1));
    while per > 0 && values.len() > per {
        out.push(values.split_off(values.len() - per));
        values.shrink_to_fit();
    }
    out.push(values);
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_batch_splits_in_order() {
        let values: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let parts = super::split_batch(values, 2);
        assert_eq!(parts, vec![vec![0.0, 1.0], vec![2.0, 3.0], vec![4.0, 5.0]]);
        assert_eq!(super::split_batch(vec![1.0], 1), vec![vec![1.0]]);
    }
}
