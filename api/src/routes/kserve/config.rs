//! `GET /v2/models/{m}[/versions/{v}]/config`: the model configuration as
//! Triton serves it (the `model_configuration` extension).
//!
//! Triton answers its `config.pbtxt` in JSON form; tools written for it
//! (`tritonclient.get_model_config`, perf analyzers, dashboards) read
//! `name`, `platform`, `max_batch_size` and the typed `input`/`output`
//! lists. InferQ has no `config.pbtxt`: the same facts come from the
//! model's manifest. `max_batch_size` is how many elements one request may
//! carry on its batch axis (`--max-instances`), and `dims` leave that axis
//! out, as Triton does when `max_batch_size` is above zero. The `image`
//! input takes encoded images (`TYPE_STRING`, one per element).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use inferq_backends::repository::ModelEntry;
use inferq_core::manifest::Layout;
use serde::Serialize;

use crate::state::AppState;

/// The configuration of one model version.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelConfig {
    pub name: String,
    /// Always `onnxruntime_onnx`.
    pub platform: &'static str,
    /// Always `onnxruntime`.
    pub backend: &'static str,
    /// Largest batch axis a request may carry.
    pub max_batch_size: usize,
    pub input: Vec<TensorConfig>,
    pub output: Vec<TensorConfig>,
}

/// One input or output of [`ModelConfig`].
#[derive(Serialize, utoipa::ToSchema)]
pub struct TensorConfig {
    pub name: String,
    /// `TYPE_FP32`, `TYPE_UINT8`, `TYPE_INT32` or `TYPE_STRING` (bytes).
    pub data_type: String,
    /// `FORMAT_NCHW` or `FORMAT_NHWC` for the image tensor input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
    /// Shape without the batch axis; -1 where it varies.
    pub dims: Vec<i64>,
}

/// Triton's name for a v2 datatype.
fn triton_type(datatype: &str) -> String {
    match datatype {
        "BYTES" => "TYPE_STRING".to_owned(),
        other => format!("TYPE_{other}"),
    }
}

/// The configuration of `entry`; `max_batch_size` is the request bound.
pub fn config(entry: &ModelEntry, max_batch_size: usize) -> ModelConfig {
    let input = &entry.manifest.input;
    let format = match input.layout {
        Layout::Nchw => "FORMAT_NCHW",
        Layout::Nhwc => "FORMAT_NHWC",
    };
    let output = super::outputs::outputs(entry)
        .into_iter()
        .map(|o| TensorConfig {
            name: o.name,
            data_type: triton_type(o.datatype),
            format: None,
            dims: match o.shape.get(1..) {
                Some(d) if !d.is_empty() => d.to_vec(),
                _ => vec![1],
            },
        })
        .collect();
    ModelConfig {
        name: entry.name.clone(),
        platform: "onnxruntime_onnx",
        backend: "onnxruntime",
        max_batch_size,
        input: vec![
            TensorConfig {
                name: input.name.clone(),
                data_type: triton_type(super::tensor_datatype(input.dtype)),
                format: Some(format),
                dims: super::instance_shape(entry)
                    .iter()
                    .map(|d| *d as i64)
                    .collect(),
            },
            TensorConfig {
                name: super::IMAGE_INPUT.to_owned(),
                data_type: triton_type("BYTES"),
                format: None,
                dims: vec![1],
            },
        ],
        output,
    }
}

async fn answer(state: &AppState, name: &str, version: Option<&str>) -> Response {
    match super::entry(state, name, version).await {
        Ok(e) => Json(config(&e, state.settings.limits.max_instances)).into_response(),
        Err(e) => e.into_v2_response(),
    }
}

/// `GET /v2/models/{m}/config`.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/config",
    tag = "kserve",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "The default version's configuration", body = ModelConfig),
        (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn model_config(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    answer(&state, &name, None).await
}

/// `GET /v2/models/{m}/versions/{v}/config`.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}/config",
    tag = "kserve",
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Model version")),
    responses(
        (status = 200, description = "The version's configuration", body = ModelConfig),
        (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn version_config(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    answer(&state, &name, Some(&version)).await
}
