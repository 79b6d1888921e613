//! `model_uri`: a job or a batch naming its model by storage reference, as
//! batch users of managed services do (`gs://bucket/models/resnet/`).
//!
//! The reference is a folder holding `model.onnx` and `model.toml` (and the
//! labels file the manifest names), or an `.onnx` file with its
//! `model.toml` beside it. The API installs it into the model repository
//! once, through the same path as `PUT /v1/models/{name}/versions/{v}`
//! (manifest parsed, ONNX checked, one atomic rename), under a name derived
//! from the object versions it read: `uri-` and 16 hex digits of a SHA-256
//! over each file's URI, generation or ETag (a file's modification time)
//! and size. A later job naming the same unchanged objects costs two
//! `HEAD`s and finds the model installed; replacing an object gives a new
//! name, so a running batch never switches models halfway.
//!
//! Only prefixes an administrator lists in `--model-uri-allow` may be
//! named (empty: the feature is off), and every read also passes the
//! fetcher's storage policy. TensorFlow-family folders are refused with a
//! pointer to `inferq models import`: converting needs a 1.7 GB TensorFlow
//! environment that the serving image deliberately does not carry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use inferq_backends::fetch::{ObjectStamp, StorageUri};
use inferq_core::manifest::{MANIFEST_FILE, MODEL_FILE, ModelManifest};
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;
use crate::routes::register::{Upload, install};
use crate::state::AppState;

/// Version every imported model gets (its name already says which object
/// versions it came from).
pub const IMPORTED_VERSION: u64 = 1;

/// Files whose presence marks a TensorFlow-family model folder.
const TF_MARKERS: [&str; 3] = ["saved_model.pb", "model.json", "model.keras"];

/// The model files a reference names.
struct Refs {
    model: StorageUri,
    manifest: StorageUri,
    /// The folder, ending in `/`, for the labels and the TF check.
    folder: String,
}

fn refs(uri: &str) -> Result<Refs, ApiError> {
    let (model, folder) = if uri.ends_with(".onnx") {
        let cut = uri.rfind('/').map_or(0, |i| i + 1);
        (uri.to_owned(), uri[..cut].to_owned())
    } else {
        let folder = if uri.ends_with('/') {
            uri.to_owned()
        } else {
            format!("{uri}/")
        };
        (format!("{folder}{MODEL_FILE}"), folder)
    };
    let parse = |u: &str| crate::intake::encodings::check_uri(u);
    Ok(Refs {
        model: parse(&model)?,
        manifest: parse(&format!("{folder}{MANIFEST_FILE}"))?,
        folder,
    })
}

/// The content-addressed name of the model at these object versions.
fn imported_name(parts: &[(&StorageUri, &ObjectStamp)]) -> String {
    let mut h = Sha256::new();
    for (uri, stamp) in parts {
        h.update(uri.to_string().as_bytes());
        h.update([0]);
        h.update(stamp.version.as_bytes());
        h.update([0]);
        h.update(stamp.size.unwrap_or(u64::MAX).to_le_bytes());
    }
    format!("uri-{}", hex(&h.finalize()[..8]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One import at a time per name: a batch whose first jobs all name a new
/// model fetches it once, not once per job.
fn import_lock(name: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .expect("import lock table");
    // Bounded: drop the entries nobody holds before adding one.
    locks.retain(|_, l| Arc::strong_count(l) > 1);
    locks.entry(name.to_owned()).or_default().clone()
}

fn forbidden(msg: String) -> ApiError {
    ApiError::Forbidden(msg)
}

/// Why a TensorFlow-family folder cannot be served as it is.
async fn refuse_tensorflow(state: &AppState, folder: &str) -> ApiError {
    for marker in TF_MARKERS {
        if let Ok(uri) = crate::intake::encodings::check_uri(&format!("{folder}{marker}"))
            && matches!(state.fetcher.stat(&uri).await, Ok(Some(_)))
        {
            return ApiError::InvalidArgument(format!(
                "{folder} holds a TensorFlow-family model ({marker}); this server converts \
                 none at run time: convert it once with `inferq models import {folder} --name …` \
                 or put model.onnx and model.toml beside it"
            ));
        }
    }
    ApiError::InvalidArgument(format!(
        "{folder} has no {MODEL_FILE} (a model_uri names a folder with model.onnx and \
         model.toml, or an .onnx file with model.toml beside it)"
    ))
}

/// Resolves `model_uri` to an installed model: `(name, version)`.
pub async fn resolve(state: &AppState, uri: &str) -> Result<(String, u64), ApiError> {
    let allowed = &state.settings.models.model_uri_allow;
    if allowed.is_empty() {
        return Err(forbidden(
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
        return Err(forbidden(format!(
            "model_uri {uri} is not under a prefix of --model-uri-allow"
        )));
    }
    let refs = refs(uri)?;
    let model_stamp = match state.fetcher.stat(&refs.model).await {
        Ok(stamp) => stamp,
        Err(inferq_backends::fetch::FetchError::NotFound(_)) => {
            return Err(refuse_tensorflow(state, &refs.folder).await);
        }
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
        return Ok((name, IMPORTED_VERSION));
    }
    let lock = import_lock(&name);
    let _held = lock.lock().await;
    // Another job may have imported it while this one waited.
    if installed().await {
        return Ok((name, IMPORTED_VERSION));
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
    Ok((name, IMPORTED_VERSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_folder_or_an_onnx_file() {
        let r = refs("gs://bkt/models/resnet").unwrap();
        assert_eq!(r.model.to_string(), "gs://bkt/models/resnet/model.onnx");
        assert_eq!(r.manifest.to_string(), "gs://bkt/models/resnet/model.toml");
        let r = refs("s3://bkt/m/net-v3.onnx").unwrap();
        assert_eq!(r.model.to_string(), "s3://bkt/m/net-v3.onnx");
        assert_eq!(r.manifest.to_string(), "s3://bkt/m/model.toml");
        assert_eq!(r.folder, "s3://bkt/m/");
        assert!(refs("ftp://x/y").is_err());
    }

    #[test]
    fn names_change_with_any_object_version() {
        let m = StorageUri::parse("gs://bkt/m/model.onnx").unwrap();
        let t = StorageUri::parse("gs://bkt/m/model.toml").unwrap();
        let stamp = |v: &str| ObjectStamp {
            version: v.into(),
            size: Some(10),
        };
        let a = imported_name(&[(&m, &stamp("1")), (&t, &stamp("1"))]);
        assert!(a.starts_with("uri-") && a.len() == 20, "{a}");
        assert!(inferq_backends::repository::valid_model_name(&a));
        assert_eq!(a, imported_name(&[(&m, &stamp("1")), (&t, &stamp("1"))]));
        assert_ne!(a, imported_name(&[(&m, &stamp("2")), (&t, &stamp("1"))]));
        assert_ne!(a, imported_name(&[(&m, &stamp("1")), (&t, &stamp("2"))]));
    }
}
