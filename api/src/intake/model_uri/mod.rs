//! `model_uri`: a job or a batch naming its model by storage reference, as batch users of
//! managed services do (`gs://bucket/models/resnet/`).
//!
//! The reference names an ONNX model ([`onnx`]: a folder with `model.onnx` + `model.toml`, or
//! an `.onnx` file) or a TensorFlow-family one ([`tensorflow`]: a SavedModel or TF.js folder,
//! a `.keras`, `.h5` or `.tflite` file), converted once by the same code as
//! `inferq models import` when an administrator configured a converter
//! (`--model-import-python`). Either way the API installs the model into the repository once,
//! through the same path as `PUT /v1/models/{name}/versions/{v}`, under a name derived from
//! the object versions it read ([`objects`]); later jobs naming the same objects reuse it.
//!
//! Only prefixes an administrator lists in `--model-uri-allow` may be named (empty: the
//! feature is off), and every read also passes the fetcher's storage policy.

mod objects;
mod onnx;
mod tensorflow;

use crate::http::error::ApiError;
use crate::state::AppState;

/// Resolves `model_uri` to an installed model: `(name, version)`.
pub async fn resolve(state: &AppState, uri: &str) -> Result<(String, u64), ApiError> {
    let cfg = &state.settings.models;
    let allowed = &cfg.model_uri_allow;
    if allowed.is_empty() {
        return Err(ApiError::Forbidden(
            "model_uri is disabled on this server (an administrator enables it for storage \
             prefixes with --model-uri-allow)"
                .into(),
        ));
    }
    if uri.contains("/../") || uri.ends_with("/..") {
        return Err(ApiError::InvalidArgument(format!(
            "model_uri {uri} contains `..`"
        )));
    }
    if !allowed
        .iter()
        .any(|p| !p.is_empty() && uri.starts_with(p.as_str()))
    {
        return Err(ApiError::Forbidden(format!(
            "model_uri {uri} is not under a prefix of --model-uri-allow"
        )));
    }
    if !tensorflow::names_a_file(uri)
        && let Some(found) = onnx::resolve(state, uri).await?
    {
        return Ok(found);
    }
    match &cfg.model_import_python {
        Some(python) => tensorflow::resolve(state, uri, python).await,
        None => Err(tensorflow::refusal(state, uri).await),
    }
}
