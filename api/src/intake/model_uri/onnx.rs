//! A `model_uri` naming an ONNX model: a folder holding `model.onnx` and `model.toml` (and
//! the labels file the manifest names), or an `.onnx` file with its `model.toml` beside it.
//! Installed through the same path as `PUT /v1/models/{name}/versions/{v}` (manifest parsed,
//! ONNX checked, one atomic rename). A later job naming the same unchanged objects costs two
//! `HEAD`s and finds the model installed.

use inferq_backends::fetch::ObjectStamp;
use inferq_core::manifest::{MANIFEST_FILE, ModelManifest};
use sha2::{Digest, Sha256};

use super::objects::{IMPORTED_VERSION, hex, import_lock, imported_name, refs};
use crate::http::error::ApiError;
use crate::routes::register::{Upload, install};
use crate::state::AppState;

/// Installs the ONNX model `uri` names: `(name, version)`, or `None` when there is no
/// `model.onnx` where the reference points (it may name a TensorFlow-family model).
pub(super) async fn resolve(
    state: &AppState,
    uri: &str,
) -> Result<Option<(String, u64)>, ApiError> {
    let refs = refs(uri)?;
    let model_stamp = match state.fetcher.stat(&refs.model).await {
        Ok(stamp) => stamp,
        Err(inferq_backends::fetch::FetchError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let manifest_stamp = state.fetcher.stat(&refs.manifest).await?;
    let cfg = &state.settings.models;
    let max = cfg.max_model_bytes;
    let (name, fetched) = match (model_stamp, manifest_stamp) {
        (Some(m), Some(t)) => (
            imported_name(&[(&refs.model, &m), (&refs.manifest, &t)]),
            None,
        ),
        // A web server that names no versions: address by content instead.
        _ => {
            let model = state.fetcher.get_capped(&refs.model, max).await?;
            let manifest = state.fetcher.get_capped(&refs.manifest, 1 << 20).await?;
            let stamp = |b: &[u8]| ObjectStamp {
                version: hex(&Sha256::digest(b)),
                size: Some(b.len() as u64),
            };
            let name = imported_name(&[
                (&refs.model, &stamp(&model)),
                (&refs.manifest, &stamp(&manifest)),
            ]);
            (name, Some((model, manifest)))
        }
    };
    let installed = || async {
        state
            .models
            .find(&name, Some(IMPORTED_VERSION))
            .await
            .is_some()
    };
    if installed().await {
        return Ok(Some((name, IMPORTED_VERSION)));
    }
    let lock = import_lock(&name);
    let _held = lock.lock().await;
    // Another job may have imported it while this one waited.
    if installed().await {
        return Ok(Some((name, IMPORTED_VERSION)));
    }
    let (model, manifest) = match fetched {
        Some(both) => both,
        None => (
            state.fetcher.get_capped(&refs.model, max).await?,
            state.fetcher.get_capped(&refs.manifest, 1 << 20).await?,
        ),
    };
    let manifest = String::from_utf8(manifest.to_vec())
        .map_err(|_| ApiError::InvalidArgument(format!("{} is not UTF-8 text", refs.manifest)))?;
    let parsed = ModelManifest::parse(&manifest, std::path::Path::new(MANIFEST_FILE))
        .map_err(|e| ApiError::InvalidArgument(format!("{}: {e}", refs.manifest)))?;
    // The labels file sits beside the manifest (its own name, whatever
    // relative path the manifest gives it).
    let labels = match &parsed.output.labels {
        Some(rel) => {
            let file = rel.rsplit('/').next().unwrap_or(rel);
            let uri = crate::intake::encodings::check_uri(&format!("{}{file}", refs.folder))?;
            Some(state.fetcher.get_capped(&uri, 16 << 20).await?)
        }
        None => None,
    };
    let upload = Upload {
        model,
        manifest,
        labels,
    };
    match install(state, &name, IMPORTED_VERSION, upload).await {
        Ok(()) | Err(ApiError::VersionExists { .. }) => {}
        Err(e) => return Err(e),
    }
    tracing::info!(model = %name, %uri, "model imported from storage");
    Ok(Some((name, IMPORTED_VERSION)))
}
