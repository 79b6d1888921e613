//! OpenAPI schemas of the v2 inference request and response, for the
//! document only.
//!
//! The codec ([`super::codec`], [`super::outputs`]) reads and writes these
//! bodies itself — the JSON part may be followed by binary tensor data, and
//! a tensor's `data` is flat or nested numbers, strings or booleans — so it
//! has no single Rust type to derive from. These types state the JSON shape
//! of the Open Inference Protocol as InferQ implements it
//! (docs/protocols.md), so clients and property-based testers see it.

use std::collections::BTreeMap;

use utoipa::ToSchema;

/// The JSON part of a v2 inference request. With the binary tensor
/// extension it is followed by the inputs' bytes and its length is sent in
/// `Inference-Header-Content-Length`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferRequestBody {
    /// Echoed in the response.
    id: Option<String>,
    /// `binary_data_output: true` asks for every output in binary form.
    parameters: Option<BTreeMap<String, serde_json::Value>>,
    inputs: Vec<InferInputBody>,
    /// Outputs wanted (default: all), with `binary_data` or
    /// `classification` (top-k `"score:index:label"` strings).
    outputs: Option<Vec<RequestedOutputBody>>,
}

/// One input tensor: encoded images as `BYTES` (or base64 text), or the
/// model's own tensor (`FP32`, `UINT8`, `INT32`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferInputBody {
    name: String,
    shape: Vec<i64>,
    /// `BYTES`, `FP32`, `UINT8` or `INT32`.
    datatype: String,
    /// `binary_data_size` when the data follows the JSON part.
    parameters: Option<BTreeMap<String, serde_json::Value>>,
    /// The elements, flat or nested in row-major order; absent when sent
    /// as binary data.
    data: Option<Vec<serde_json::Value>>,
}

/// An output asked for.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RequestedOutputBody {
    name: String,
    /// `binary_data` (bool), `classification` (top-k count).
    parameters: Option<BTreeMap<String, serde_json::Value>>,
}

/// The JSON part of a v2 inference response (followed by binary output
/// data when asked for; `Inference-Header-Content-Length` then gives the
/// JSON part's length).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferResponseBody {
    model_name: String,
    model_version: String,
    /// The request's `id`, when it had one.
    id: Option<String>,
    outputs: Vec<InferOutputBody>,
}

/// One output tensor.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferOutputBody {
    name: String,
    /// `FP32`, `INT32` or `BYTES`.
    datatype: String,
    shape: Vec<u64>,
    /// `binary_data_size` when the data follows the JSON part.
    parameters: Option<BTreeMap<String, serde_json::Value>>,
    /// The elements, flat in row-major order; absent when sent as binary
    /// data.
    data: Option<Vec<serde_json::Value>>,
}
