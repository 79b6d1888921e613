//! `GET /v1/models/{m}[/versions/{v}]/metadata`: TF Serving's model
//! metadata, built from the manifest.
//!
//! TF Serving describes a model by its `serving_default` signature: the
//! inputs and outputs as tensor infos (dtype, shape with `-1` for the batch
//! axis, tensor name). Tools written for it (and Vertex's model
//! inspection) read that shape, so InferQ answers it for every served
//! version. The signature lists both inputs a `:predict` instance may use
//! — `image_bytes` (encoded images, `DT_STRING`) and the model's tensor
//! input in its layout — though a request sends one of them, and the
//! outputs are the model's tensors as the KServe metadata lists them
//! ([`crate::routes::kserve::outputs`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use inferq_backends::repository::ModelEntry;
use inferq_core::manifest::{DType, Layout};
use serde::Serialize;

use crate::http::error::ApiError;
use crate::routes::predict::{IMAGE_BYTES, SIGNATURE};
use crate::state::AppState;

/// TF Serving's method name for predict signatures.
const PREDICT_METHOD: &str = "tensorflow/serving/predict";

/// The protobuf type TF Serving names its signature map with.
const SIGNATURE_MAP_TYPE: &str = "type.googleapis.com/tensorflow.serving.SignatureDefMap";

/// The answer: which model version, and its signatures.
#[derive(Serialize, utoipa::ToSchema)]
// Named apart from KServe's `ModelMetadata`: one name in the document's
// components would make both routes describe the same body.
#[schema(as = TfModelMetadata)]
pub struct ModelMetadata {
    model_spec: ModelSpec,
    metadata: MetadataMap,
}

/// Which model version the metadata is of.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelSpec {
    name: String,
    /// Empty: the request named no signature.
    signature_name: String,
    /// The version, as a decimal string (TF Serving's int64 in JSON).
    version: String,
}

/// `metadata`: the one kind of metadata TF Serving serves.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MetadataMap {
    signature_def: SignatureDefMap,
}

/// `metadata.signature_def`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignatureDefMap {
    #[serde(rename = "@type")]
    kind: &'static str,
    /// Signatures by name; only `serving_default`.
    signature_def: BTreeMap<String, SignatureDef>,
}

/// One signature: its inputs and outputs by name.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignatureDef {
    inputs: BTreeMap<String, TensorInfo>,
    outputs: BTreeMap<String, TensorInfo>,
    method_name: &'static str,
}

/// A tensor of a signature.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TensorInfo {
    /// `DT_FLOAT`, `DT_UINT8`, `DT_INT32` or `DT_STRING`.
    dtype: &'static str,
    tensor_shape: TensorShape,
    /// The tensor's name in the graph (`<name>:0`).
    name: String,
}

/// A shape; `-1` is an axis of any size.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TensorShape {
    dim: Vec<Dim>,
    unknown_rank: bool,
}

/// One axis.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Dim {
    /// The size as a decimal string (an int64 in TF Serving's JSON).
    size: String,
    name: String,
}

fn tensor(dtype: &'static str, shape: &[i64], name: &str) -> TensorInfo {
    TensorInfo {
        dtype,
        tensor_shape: TensorShape {
            dim: shape
                .iter()
                .map(|s| Dim {
                    size: s.to_string(),
                    name: String::new(),
                })
                .collect(),
            unknown_rank: false,
        },
        name: format!("{name}:0"),
    }
}

/// The TF dtype of a KServe datatype name.
fn tf_dtype(datatype: &str) -> &'static str {
    match datatype {
        "INT32" => "DT_INT32",
        "UINT8" => "DT_UINT8",
        "BYTES" => "DT_STRING",
        _ => "DT_FLOAT",
    }
}

/// The metadata of one model version.
pub fn metadata(entry: &ModelEntry) -> ModelMetadata {
    let input = &entry.manifest.input;
    let (w, h) = (i64::from(input.width), i64::from(input.height));
    let shape = match input.layout {
        Layout::Nchw => [-1, 3, h, w],
        Layout::Nhwc => [-1, h, w, 3],
    };
    let dtype = match input.dtype {
        DType::Float32 => "DT_FLOAT",
        DType::Uint8 => "DT_UINT8",
        DType::Int32 => "DT_INT32",
    };
    let mut inputs = BTreeMap::new();
    inputs.insert(input.name.clone(), tensor(dtype, &shape, &input.name));
    inputs.insert(
        IMAGE_BYTES.to_owned(),
        tensor("DT_STRING", &[-1], IMAGE_BYTES),
    );
    let outputs = crate::routes::kserve::outputs::outputs(entry)
        .into_iter()
        .map(|o| {
            let info = tensor(tf_dtype(o.datatype), &o.shape, &o.name);
            (o.name, info)
        })
        .collect();
    let mut signatures = BTreeMap::new();
    signatures.insert(
        SIGNATURE.to_owned(),
        SignatureDef {
            inputs,
            outputs,
            method_name: PREDICT_METHOD,
        },
    );
    ModelMetadata {
        model_spec: ModelSpec {
            name: entry.name.clone(),
            signature_name: String::new(),
            version: entry.version.to_string(),
        },
        metadata: MetadataMap {
            signature_def: SignatureDefMap {
                kind: SIGNATURE_MAP_TYPE,
                signature_def: signatures,
            },
        },
    }
}

async fn find(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<ModelMetadata, ApiError> {
    let not_found = |version| ApiError::ModelNotFound {
        name: name.to_owned(),
        version,
    };
    let version = match version {
        Some(v) => Some(v.parse::<u64>().map_err(|_| not_found(None))?),
        None => None,
    };
    if !inferq_backends::repository::valid_model_name(name) {
        return Err(not_found(version));
    }
    let entry = state
        .models
        .find(name, version)
        .await
        .ok_or_else(|| not_found(version))?;
    Ok(metadata(&entry))
}

/// `GET /v1/models/{name}/metadata`: the default version's signature.
#[utoipa::path(
    get,
    operation_id = "tf_model_metadata",
    path = "/v1/models/{name}/metadata",
    tag = "predict",
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, description = "TF Serving model metadata (the `serving_default` signature)", body = ModelMetadata), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn model(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelMetadata>, ApiError> {
    find(&state, &name, None).await.map(Json)
}

/// `GET /v1/models/{name}/versions/{version}/metadata`.
#[utoipa::path(
    get,
    operation_id = "tf_version_metadata",
    path = "/v1/models/{name}/versions/{version}/metadata",
    tag = "predict",
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Model version")),
    responses((status = 200, description = "TF Serving model metadata of the version", body = ModelMetadata), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelMetadata>, ApiError> {
    find(&state, &name, Some(&version)).await.map(Json)
}
