//! `inferq models import SOURCE --name N`: a TensorFlow-family model (SavedModel, Keras
//! `.keras`/`.h5`, TF.js graph or layers model, TFLite) or an ONNX file, turned into an
//! InferQ model version.
//!
//! Why it exists: models in the field come as TensorFlow artefacts, InferQ serves ONNX with a
//! manifest, and doing the conversion by hand (tf2onnx flags, TF.js quirks, guessing the
//! layout, writing `model.toml`) is where imports went wrong. One command does it and proves
//! the result: the converted model must agree with the original framework on a sample input.
//!
//! How: the conversion and the check are Python (`scripts/import_model.py`, run through the
//! `inferq-convert` crate the API's `model_uri` import shares), run by `--python` / `INFERQ_IMPORT_PYTHON` or else `.cache/tf-venv/bin/python`
//! when it exists, else `python3`. It uses the maintained converters (tf2onnx, tensorflowjs'
//! Keras loader) and prints the signature it found as JSON. This module infers the manifest
//! from that signature and the flags ([`manifest_text`]), validates it with the parser the
//! server uses, and either writes `<models-dir>/<name>/<version>/` atomically (everything is
//! written into a hidden `.import-*` directory beside it and renamed into place; any error
//! removes it, and the model's directory too if the import created it) or uploads the version
//! with `PUT /v1/models/{name}/versions/{version}` (`--server`).
//!
//! Errors are one line; exit status 2 for refusals (unknown format, unreadable model, missing
//! signature, unsupported op, wrong layout, tolerance exceeded, version exists, usage) and 1
//! for failures of the environment (no Python, TensorFlow not importable, I/O).

use std::path::{Path, PathBuf};

use clap::Args;
use inferq_convert::{ConvertError, Flags, Kind, LABELS_FILE, manifest_text, unique_suffix};
use inferq_core::manifest::{MANIFEST_FILE, MODEL_FILE, ModelManifest};
use serde_json::{Value, json};

use crate::http::{Api, ClientError};
/// The interpreter used when neither `--python` nor `INFERQ_IMPORT_PYTHON` is given and it
/// exists (the venv `make models-seed` builds).
const TF_VENV_PYTHON: &str = ".cache/tf-venv/bin/python";

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// A SavedModel directory, .keras or .h5 file, TF.js model.json (or its folder), .tflite or
    /// .onnx file.
    source: PathBuf,
    /// Model name (a-z, 0-9, '-', '_', '.').
    #[arg(long)]
    name: String,
    /// Version to create (default: the next free integer).
    #[arg(long)]
    version: Option<u64>,
    /// What the model answers (default: classification for one [N, classes] output, else
    /// tensor).
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// Class names, one per line (classification, detection).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Per-channel mean subtracted from 0..255 pixels (float inputs), e.g. 127.5,127.5,127.5.
    #[arg(long, value_parser = parse_triple)]
    mean: Option<[f32; 3]>,
    /// Per-channel divisor after the mean (float inputs), e.g. 255,255,255 for 0..1 inputs.
    #[arg(long, value_parser = parse_triple)]
    std: Option<[f32; 3]>,
    /// Largest accepted max abs difference from the original, relative to the largest absolute
    /// output value of the original on the sample.
    #[arg(long, default_value_t = 1e-3)]
    tolerance: f64,
    /// Input size WxH, for models whose height or width is dynamic.
    #[arg(long)]
    size: Option<String>,
    /// The model repository to write into.
    #[arg(long, default_value = "models", conflicts_with = "server")]
    models_dir: PathBuf,
    /// Upload to this InferQ API instead (PUT /v1/models/{name}/versions/{version}).
    #[arg(long)]
    server: Option<String>,
    /// Python with tf2onnx, TensorFlow and onnxruntime (ONNX sources need onnxruntime only).
    #[arg(long, env = "INFERQ_IMPORT_PYTHON")]
    python: Option<PathBuf>,
    /// Show the converter's own output.
    #[arg(long)]
    verbose: bool,
}

fn parse_triple(s: &str) -> Result<[f32; 3], String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|p| p.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{s}: {e}"))?;
    match v[..] {
        [a, b, c] if v.iter().all(|x| x.is_finite()) => Ok([a, b, c]),
        _ => Err(format!("{s}: expected three numbers a,b,c")),
    }
}

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The model or the request cannot be imported as it is (exit status 2).
    #[error("{0}")]
    Refused(String),
    /// The environment failed: no Python, TensorFlow missing, I/O (exit status 1).
    #[error("{0}")]
    Failed(String),
    /// The server refused the upload or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl ImportError {
    /// The process exit status for this error.
    pub fn exit_status(&self) -> i32 {
        match self {
            ImportError::Failed(_) | ImportError::Client(ClientError::Connect { .. }) => 1,
            ImportError::Refused(_) | ImportError::Client(_) => 2,
        }
    }
}

fn io_failed(what: &Path) -> impl Fn(std::io::Error) -> ImportError + '_ {
    move |e| ImportError::Failed(format!("{}: {e}", what.display()))
}

/// The same rule the repository applies (`inferq_backends::repository::valid_model_name`).
fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

/// Removes what an unfinished import created: the staging directory, and the model's
/// directory when the import made it and it is empty again.
struct Cleanup {
    staging: PathBuf,
    created_model_dir: Option<PathBuf>,
    committed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
            if let Some(d) = &self.created_model_dir {
                let _ = std::fs::remove_dir(d); // only if empty
            }
        }
    }
}

/// Runs `inferq models import`; prints progress to stderr and a JSON summary to stdout.
/// `api_key` authenticates the upload (`--server`).
pub(crate) async fn run(a: ImportArgs, api_key: Option<&str>) -> Result<i32, ImportError> {
    if !valid_model_name(&a.name) {
        return Err(ImportError::Refused(format!(
            "invalid model name `{}`: use a-z, 0-9, '-', '_', '.' (at most 64, starting with a letter or digit)",
            a.name
        )));
    }
    if a.version == Some(0) {
        return Err(ImportError::Refused(
            "versions are positive integers".into(),
        ));
    }
    if !(a.tolerance >= 0.0 && a.tolerance.is_finite()) {
        return Err(ImportError::Refused(
            "--tolerance must be a non-negative number".into(),
        ));
    }
    let api = match &a.server {
        Some(url) => Some(Api::new(url, api_key)?),
        None => None,
    };
    if let (Some(api), Some(v)) = (&api, a.version) {
        // Refuse an existing version before the (slow) conversion; the PUT still decides.
        match api
            .get(&format!("/v1/models/{}/versions/{v}", a.name))
            .await
        {
            Ok(_) => return Err(version_exists(&a.name, v)),
            Err(ClientError::Refused { status: 404, .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let labels = match &a.labels {
        Some(p) => Some(
            std::fs::read(p)
                .map_err(|e| ImportError::Refused(format!("labels {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let suffix = unique_suffix();
    let (staging, created_model_dir) = match &a.server {
        Some(_) => (
            std::env::temp_dir().join(format!("inferq-import-{suffix}")),
            None,
        ),
        None => {
            if !a.models_dir.is_dir() {
                return Err(ImportError::Refused(format!(
                    "models dir {} does not exist (give --models-dir)",
                    a.models_dir.display()
                )));
            }
            let model_dir = a.models_dir.join(&a.name);
            if let Some(v) = a.version
                && model_dir.join(v.to_string()).exists()
            {
                return Err(version_exists(&a.name, v));
            }
            let created = (!model_dir.exists()).then(|| model_dir.clone());
            (model_dir.join(format!(".import-{suffix}")), created)
        }
    };
    let mut cleanup = Cleanup {
        staging: staging.clone(),
        created_model_dir,
        committed: false,
    };
    std::fs::create_dir_all(&staging).map_err(io_failed(&staging))?;

    let summary = convert(&a, &staging.join(MODEL_FILE)).await?;
    let labels_count = labels.as_deref().map(count_labels);
    let flags = Flags {
        kind: a.kind,
        mean: a.mean,
        std: a.std,
        source_name: a
            .source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let inferred = manifest_text(&flags, &summary, labels_count).map_err(ImportError::Refused)?;
    for note in &inferred.notes {
        eprintln!("inferq: {note}");
    }
    let text = inferred.text;
    ModelManifest::parse(&text, Path::new(MANIFEST_FILE))
        .map_err(|e| ImportError::Refused(format!("the inferred manifest is not valid: {e}")))?;
    let manifest_path = staging.join(MANIFEST_FILE);
    std::fs::write(&manifest_path, &text).map_err(io_failed(&manifest_path))?;
    if let Some(bytes) = &labels {
        let p = staging.join(LABELS_FILE);
        std::fs::write(&p, bytes).map_err(io_failed(&p))?;
    }

    // Reported once nothing can be refused any more (an error is one line on stderr).
    report_conversion(&summary);
    let mut out = json!({
        "name": a.name,
        "format": summary["format"],
        "input": summary["input"],
        "outputs": summary["outputs"],
        "check": summary["check"],
        "seconds": summary["seconds"],
    });
    match (&a.server, api) {
        (Some(server), Some(api)) => {
            let version = match a.version {
                Some(v) => v,
                None => next_server_version(&api, &a.name).await?,
            };
            let model = std::fs::read(staging.join(MODEL_FILE))
                .map_err(io_failed(&staging.join(MODEL_FILE)))?;
            let mut form = reqwest::multipart::Form::new()
                .part("model", part(model, MODEL_FILE))
                .part("manifest", part(text.into_bytes(), MANIFEST_FILE));
            if let Some(l) = labels {
                form = form.part("labels", part(l, LABELS_FILE));
            }
            let path = format!("/v1/models/{}/versions/{version}", a.name);
            let answer = api.put_form(&path, form).await?;
            eprintln!("inferq: uploaded {}{path}", server.trim_end_matches('/'));
            out["version"] = json!(version);
            out["server"] = json!(server);
            out["registered"] = answer;
        }
        _ => {
            let model_dir = a.models_dir.join(&a.name);
            let version = match a.version {
                Some(v) => v,
                None => next_local_version(&model_dir)?,
            };
            let dest = model_dir.join(version.to_string());
            if dest.exists() {
                return Err(version_exists(&a.name, version));
            }
            // rename(2) refuses a non-empty target, so a version that appeared meanwhile is
            // never overwritten.
            std::fs::rename(&staging, &dest).map_err(|e| {
                ImportError::Failed(format!("moving the version into {}: {e}", dest.display()))
            })?;
            cleanup.committed = true;
            let files = if labels.is_some() {
                "{model.onnx,model.toml,labels.txt}"
            } else {
                "{model.onnx,model.toml}"
            };
            eprintln!("inferq: wrote {}/{files}", dest.display());
            out["version"] = json!(version);
            out["path"] = json!(dest.display().to_string());
        }
    }
    println!("{out}");
    Ok(0)
}

fn version_exists(name: &str, v: u64) -> ImportError {
    ImportError::Refused(format!(
        "version exists: {name}/{v} (versions are immutable; omit --version for the next free one)"
    ))
}

fn part(bytes: Vec<u8>, file: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes).file_name(file.to_owned())
}

fn count_labels(bytes: &[u8]) -> usize {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// The next integer above every numbered version directory (1 for a new model).
fn next_local_version(model_dir: &Path) -> Result<u64, ImportError> {
    let mut top = 0;
    if model_dir.is_dir() {
        for e in std::fs::read_dir(model_dir).map_err(io_failed(model_dir))? {
            let e = e.map_err(io_failed(model_dir))?;
            if let Some(v) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
                top = top.max(v);
            }
        }
    }
    Ok(top + 1)
}

/// The next version above those the server lists (1 when it does not know the model).
async fn next_server_version(api: &Api, name: &str) -> Result<u64, ImportError> {
    match api.get(&format!("/v1/models/{name}")).await {
        Ok(m) => Ok(m["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["version"].as_u64())
            .max()
            .unwrap_or(0)
            + 1),
        Err(ClientError::Refused { status: 404, .. }) => Ok(1),
        Err(e) => Err(e.into()),
    }
}

/// The interpreter: `--python` / `INFERQ_IMPORT_PYTHON`, else the TF venv if present, else
/// `python3`.
fn python(a: &ImportArgs) -> PathBuf {
    a.python.clone().unwrap_or_else(|| {
        let venv = PathBuf::from(TF_VENV_PYTHON);
        if venv.is_file() {
            venv
        } else {
            PathBuf::from("python3")
        }
    })
}

/// Runs the conversion; returns the script's JSON summary or its one-line error.
async fn convert(a: &ImportArgs, out: &Path) -> Result<Value, ImportError> {
    let python = python(a);
    let req = inferq_convert::Request {
        source: &a.source,
        out,
        tolerance: a.tolerance,
        mean: a.mean,
        std: a.std,
        size: a.size.as_deref(),
        verbose: a.verbose,
    };
    inferq_convert::convert(&python, &req)
        .await
        .map_err(|e| match e {
            ConvertError::Refused(m) => ImportError::Refused(m),
            ConvertError::Failed(m) if m.starts_with("cannot run") => {
                ImportError::Failed(format!("{m} (give --python or set INFERQ_IMPORT_PYTHON)"))
            }
            ConvertError::Failed(m) => ImportError::Failed(m),
        })
}

fn report_conversion(s: &Value) {
    let secs = &s["seconds"];
    let f = |k: &str| secs[k].as_f64().unwrap_or(0.0);
    let c = &s["check"];
    match c["max_abs_diff"].as_f64() {
        Some(d) => {
            eprintln!(
                "inferq: {} -> ONNX (opset {}) in {:.1} s (TensorFlow import {:.1} s, convert {:.1} s, check {:.1} s)",
                s["format"].as_str().unwrap_or("?"),
                s["opset"],
                f("total"),
                f("import_tf"),
                f("convert"),
                f("check"),
            );
            eprintln!(
                "inferq: check against the original: max abs diff {d:.3e} (limit {:.3e} = tolerance {} x output scale {:.3})",
                c["limit"].as_f64().unwrap_or(0.0),
                c["tolerance"],
                c["output_scale"].as_f64().unwrap_or(0.0),
            );
        }
        None => eprintln!(
            "inferq: ONNX file (opset {}) taken as it is: ONNX Runtime loads and runs it ({:.1} s); no conversion, nothing to compare",
            s["opset"],
            f("total"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_triples() {
        assert!(valid_model_name("my-net.v2"));
        assert!(!valid_model_name(".hidden") && !valid_model_name("Net"));
        assert_eq!(parse_triple("1, 2,3.5"), Ok([1.0, 2.0, 3.5]));
        assert!(parse_triple("1,2").is_err() && parse_triple("1,x,3").is_err());
    }

    #[test]
    fn next_version_is_above_every_numbered_one() {
        let d = std::env::temp_dir().join(format!("inferq-next-{}", unique_suffix()));
        assert_eq!(next_local_version(&d).unwrap(), 1);
        for v in ["1", "7", ".import-x", "notes"] {
            std::fs::create_dir_all(d.join(v)).unwrap();
        }
        assert_eq!(next_local_version(&d).unwrap(), 8);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
