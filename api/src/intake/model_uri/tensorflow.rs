//! A `model_uri` naming a TensorFlow-family model: a SavedModel folder (`saved_model.pb`), a
//! TF.js graph or layers folder (`model.json` + shards), or a `.keras`, `.h5` or `.tflite`
//! file. With a converter configured (`--model-import-python`), the objects are fetched into
//! a private temporary directory, converted and checked against the original by the same code
//! as `inferq models import` (`inferq-convert`), and the result installed once under the
//! content-addressed name of the objects read. Without one, the reference is refused with a
//! pointer to `inferq models import`: converting needs a TensorFlow environment of about
//! 1.7 GB that the serving image deliberately does not carry.
//!
//! What a folder may add: `labels.txt` (class names, for a classifier) and `import.toml`
//! with the flags `inferq models import` takes (`kind`, `mean`, `std`, `size`, `tolerance`),
//! since a model file does not say how its pixels are scaled.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use inferq_backends::fetch::{FetchError, ObjectStamp, StorageUri};
use inferq_convert::{ConvertError, Flags, Kind, LABELS_FILE};
use inferq_core::manifest::{MANIFEST_FILE, MODEL_FILE, ModelManifest};
use sha2::{Digest, Sha256};

use super::objects::{IMPORTED_VERSION, hex, import_lock, imported_name};
use crate::http::error::ApiError;
use crate::routes::register::{Upload, install};
use crate::state::AppState;

/// Files whose presence at the top of a folder marks a TensorFlow-family model.
const FOLDER_MARKERS: [&str; 2] = ["saved_model.pb", "model.json"];
/// Single-file formats, by file name suffix.
const FILE_SUFFIXES: [&str; 3] = [".keras", ".h5", ".tflite"];
/// The optional flags file beside the model.
const OPTIONS_FILE: &str = "import.toml";
/// Most objects a model folder may hold (a SavedModel has a handful, TF.js a shard per 4 MB).
const MAX_OBJECTS: usize = 1000;

/// Whether `uri` names a single-file TensorFlow-family model.
pub(super) fn names_a_file(uri: &str) -> bool {
    FILE_SUFFIXES.iter().any(|s| uri.ends_with(s))
}

/// The folder a reference lives in, ending in `/`.
fn folder_of(uri: &str) -> String {
    if names_a_file(uri) || uri.ends_with("/model.json") {
        uri[..uri.rfind('/').map_or(0, |i| i + 1)].to_owned()
    } else if uri.ends_with('/') {
        uri.to_owned()
    } else {
        format!("{uri}/")
    }
}

fn parse(uri: &str) -> Result<StorageUri, ApiError> {
    crate::intake::encodings::check_uri(uri)
}

/// The error for a reference no ONNX model was found at, on a server without a converter.
pub(super) async fn refusal(state: &AppState, uri: &str) -> ApiError {
    let folder = folder_of(uri);
    let pointer = |what: &str| {
        ApiError::InvalidArgument(format!(
            "{uri} is a TensorFlow-family model ({what}); this server has no converter \
             (--model-import-python): convert it once with `inferq models import {uri} --name …` \
             or put model.onnx and model.toml beside it"
        ))
    };
    if names_a_file(uri) {
        return pointer(uri.rsplit('/').next().unwrap_or(uri));
    }
    for marker in FOLDER_MARKERS {
        if let Ok(u) = parse(&format!("{folder}{marker}"))
            && matches!(state.fetcher.stat(&u).await, Ok(Some(_)))
        {
            return pointer(marker);
        }
    }
    no_model(&folder)
}

fn no_model(folder: &str) -> ApiError {
    ApiError::InvalidArgument(format!(
        "{folder} has no {MODEL_FILE} (a model_uri names a folder with model.onnx and \
         model.toml, an .onnx file with model.toml beside it, or a TensorFlow-family model)"
    ))
}

/// The flags of `import.toml`, with the names `inferq models import` gives them.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    kind: Option<String>,
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    size: Option<String>,
    tolerance: Option<f64>,
}

impl Options {
    fn parse(text: &[u8], folder: &str) -> Result<Self, ApiError> {
        let bad = |e: String| ApiError::InvalidArgument(format!("{folder}{OPTIONS_FILE}: {e}"));
        let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8 text".into()))?;
        let o: Options = toml::from_str(text).map_err(|e| bad(e.message().to_owned()))?;
        if let Some(k) = &o.kind {
            k.parse::<Kind>().map_err(bad)?;
        }
        let finite = |v: &Option<[f32; 3]>| v.is_none_or(|v| v.iter().all(|x| x.is_finite()));
        if !finite(&o.mean) || !finite(&o.std) || o.std.is_some_and(|s| s.contains(&0.0)) {
            return Err(bad(
                "mean and std are three finite numbers, std not 0".into()
            ));
        }
        if o.tolerance.is_some_and(|t| !(t >= 0.0 && t.is_finite())) {
            return Err(bad("tolerance is a non-negative number".into()));
        }
        Ok(o)
    }
}

/// One object of the model: its URI, its path inside the folder, its version stamp.
struct Object {
    uri: StorageUri,
    rel: String,
    stamp: Option<ObjectStamp>,
}

/// A path inside the folder that stays inside it.
fn safe_rel(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.starts_with('/')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// The objects the reference consists of, each stamped with its version.
async fn objects(state: &AppState, uri: &str, folder: &str) -> Result<Vec<Object>, ApiError> {
    let mut names: Vec<String> = if names_a_file(uri) {
        // The file and, when present, the two side files.
        let mut v = vec![uri.to_owned()];
        for side in [LABELS_FILE, OPTIONS_FILE] {
            let u = format!("{folder}{side}");
            match state.fetcher.stat(&parse(&u)?).await {
                Ok(_) => v.push(u),
                Err(FetchError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        v
    } else {
        let listed = state.fetcher.list(&parse(folder)?, MAX_OBJECTS + 1).await?;
        if listed.len() > MAX_OBJECTS {
            return Err(ApiError::InvalidArgument(format!(
                "{folder} holds more than {MAX_OBJECTS} objects; a model folder holds its model only"
            )));
        }
        let top = |m: &str| listed.iter().any(|u| u.strip_prefix(folder) == Some(m));
        if !FOLDER_MARKERS.iter().any(|m| top(m)) {
            return Err(no_model(folder));
        }
        listed
    };
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let rel = name.strip_prefix(folder).unwrap_or_default().to_owned();
        if !safe_rel(&rel) {
            return Err(ApiError::InvalidArgument(format!(
                "{name}: not a plain path inside {folder}"
            )));
        }
        let uri = parse(&name)?;
        let stamp = state.fetcher.stat(&uri).await?;
        out.push(Object { uri, rel, stamp });
    }
    Ok(out)
}

/// Removes the conversion's private directory however the import ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fetches every object (at most `budget` bytes together) into `dir`, keeping their paths.
async fn download(
    state: &AppState,
    objs: &[Object],
    dir: &Path,
    budget: usize,
) -> Result<Vec<(String, Bytes)>, ApiError> {
    let mut left = budget;
    let mut files = Vec::with_capacity(objs.len());
    for o in objs {
        let bytes = state.fetcher.get_capped(&o.uri, left).await?;
        left = left.saturating_sub(bytes.len());
        let path = dir.join(&o.rel);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        tokio::fs::write(&path, &bytes).await.map_err(io)?;
        files.push((o.rel.clone(), bytes));
    }
    Ok(files)
}

fn io(e: std::io::Error) -> ApiError {
    ApiError::Internal(format!("model import scratch space: {e}"))
}

/// Converts and installs the TensorFlow-family model `uri` names: `(name, version)`.
pub(super) async fn resolve(
    state: &AppState,
    uri: &str,
    python: &Path,
) -> Result<(String, u64), ApiError> {
    let cfg = &state.settings.models;
    let folder = folder_of(uri);
    let mut objs = objects(state, uri, &folder).await?;
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "inferq-model-import-{}",
        inferq_convert::unique_suffix()
    )));
    let src = scratch.0.join("src");
    let mut fetched = None;
    if objs.iter().any(|o| o.stamp.is_none()) {
        // A web server that names no versions: address by content instead.
        let files = download(state, &objs, &src, cfg.max_model_bytes).await?;
        for (o, (_, bytes)) in objs.iter_mut().zip(&files) {
            o.stamp = Some(ObjectStamp {
                version: hex(&Sha256::digest(bytes)),
                size: Some(bytes.len() as u64),
            });
        }
        fetched = Some(files);
    }
    let stamped: Vec<(&StorageUri, &ObjectStamp)> = objs
        .iter()
        .filter_map(|o| o.stamp.as_ref().map(|s| (&o.uri, s)))
        .collect();
    let name = imported_name(&stamped);
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
    if installed().await {
        return Ok((name, IMPORTED_VERSION));
    }
    let files = match fetched {
        Some(files) => files,
        None => download(state, &objs, &src, cfg.max_model_bytes).await?,
    };
    let side = |f: &str| {
        files
            .iter()
            .find(|(rel, _)| rel == f)
            .map(|(_, b)| b.clone())
    };
    let options = match side(OPTIONS_FILE) {
        Some(text) => Options::parse(&text, &folder)?,
        None => Options::default(),
    };
    let labels = side(LABELS_FILE);
    let source = if names_a_file(uri) {
        src.join(uri.rsplit('/').next().unwrap_or_default())
    } else {
        src.clone()
    };
    let out = scratch.0.join(MODEL_FILE);
    let request = inferq_convert::Request {
        source: &source,
        out: &out,
        tolerance: options.tolerance.unwrap_or(1e-3),
        mean: options.mean,
        std: options.std,
        size: options.size.as_deref(),
        verbose: false,
    };
    let limit = Duration::from_secs_f64(cfg.model_import_timeout_secs.max(1.0));
    tracing::info!(%uri, model = %name, "converting a TensorFlow-family model_uri");
    let summary = match tokio::time::timeout(limit, inferq_convert::convert(python, &request)).await
    {
        Ok(Ok(summary)) => summary,
        Ok(Err(ConvertError::Refused(m))) => {
            return Err(ApiError::InvalidArgument(format!(
                "{uri}: cannot import: {m}"
            )));
        }
        Ok(Err(ConvertError::Failed(m))) => {
            return Err(ApiError::Internal(format!(
                "model import of {uri} failed: {m}"
            )));
        }
        Err(_) => {
            return Err(ApiError::Internal(format!(
                "model import of {uri} took longer than {} s (--model-import-timeout-secs)",
                limit.as_secs()
            )));
        }
    };
    let flags = Flags {
        kind: options.kind.as_deref().and_then(|k| k.parse().ok()),
        mean: options.mean,
        std: options.std,
        source_name: uri
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .into(),
    };
    let count = labels.as_deref().map(|l| {
        String::from_utf8_lossy(l)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    });
    let inferred = inferq_convert::manifest_text(&flags, &summary, count)
        .map_err(|m| ApiError::InvalidArgument(format!("{uri}: {m}")))?;
    ModelManifest::parse(&inferred.text, Path::new(MANIFEST_FILE)).map_err(|e| {
        ApiError::InvalidArgument(format!("{uri}: the inferred manifest is not valid: {e}"))
    })?;
    let model = tokio::fs::read(&out).await.map_err(io)?;
    let upload = Upload {
        model: Bytes::from(model),
        manifest: inferred.text,
        labels,
    };
    match install(state, &name, IMPORTED_VERSION, upload).await {
        Ok(()) | Err(ApiError::VersionExists { .. }) => {}
        Err(e) => return Err(e),
    }
    tracing::info!(
        model = %name,
        %uri,
        format = %summary["format"].as_str().unwrap_or("?"),
        max_abs_diff = %summary["check"]["max_abs_diff"],
        seconds = %summary["seconds"]["total"],
        notes = ?inferred.notes,
        "TensorFlow-family model converted from storage and installed"
    );
    Ok((name, IMPORTED_VERSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_folder_or_a_file() {
        assert_eq!(folder_of("gs://b/m/net.keras"), "gs://b/m/");
        assert_eq!(folder_of("gs://b/m/model.json"), "gs://b/m/");
        assert_eq!(folder_of("gs://b/m"), "gs://b/m/");
        assert_eq!(folder_of("s3://b/m/"), "s3://b/m/");
        assert!(names_a_file("https://h/x.tflite") && !names_a_file("gs://b/m/"));
    }

    #[test]
    fn paths_stay_inside_the_folder() {
        assert!(safe_rel("variables/variables.index"));
        for bad in ["", "/etc/passwd", "a/../b", "./a", "a//b", ".."] {
            assert!(!safe_rel(bad), "{bad}");
        }
    }

    #[test]
    fn import_options_are_the_cli_flags() {
        let o = Options::parse(b"kind = \"tensor\"\nstd = [255.0, 255.0, 255.0]\n", "f/").unwrap();
        assert_eq!(o.kind.as_deref(), Some("tensor"));
        assert_eq!(o.std, Some([255.0; 3]));
        for bad in [
            &b"kind = \"pose\""[..],
            b"colour = 1",
            b"std = [1.0, 0.0, 1.0]",
            b"tolerance = -1.0",
            b"\xff",
        ] {
            let err = Options::parse(bad, "f/").unwrap_err();
            assert!(err.to_string().contains("import.toml"), "{err}");
        }
    }
}
