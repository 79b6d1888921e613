//! Model import: a TensorFlow-family model (SavedModel, Keras `.keras`/`.h5`, TF.js graph or
//! layers model, TFLite) or an ONNX file turned into ONNX plus an inferred `model.toml`.
//!
//! Why a crate of its own: two front doors import models — the CLI (`inferq models import`)
//! on the operator's machine and the API (`model_uri` naming a TensorFlow folder in storage,
//! when an administrator configured a converter). Both must convert with the same script,
//! apply the same tolerance check and infer the same manifest, or a model would answer
//! differently depending on how it arrived.
//!
//! How: the conversion and the check against the original are Python (`scripts/import_model.py`,
//! carried in the binary with `include_str!` and written to a temporary file per run, so an
//! installed binary needs no checkout) using the maintained converters (tf2onnx, tensorflowjs'
//! Keras loader). The script prints the signature it found as JSON; [`manifest_text`] turns
//! it and the caller's flags into the manifest. Nothing here touches a model repository:
//! callers write or upload the result atomically themselves.

pub mod manifest;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub use manifest::{Flags, Inferred, Kind, LABELS_FILE, manifest_text};

/// The conversion script, carried inside the binary.
pub const SCRIPT: &str = include_str!("../../../scripts/import_model.py");

/// Why a conversion did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The model cannot be converted as it is: unknown format, unreadable model, missing
    /// signature, unsupported op, wrong layout, tolerance exceeded (the script exits with 2).
    #[error("{0}")]
    Refused(String),
    /// The environment failed: no Python, TensorFlow not importable, I/O, a crash.
    #[error("{0}")]
    Failed(String),
}

/// One conversion: what to read, where to write `model.onnx`, and the check's parameters.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// A SavedModel directory, `.keras`/`.h5` file, TF.js `model.json` (or its folder),
    /// `.tflite` or `.onnx` file.
    pub source: &'a Path,
    /// The ONNX file to write.
    pub out: &'a Path,
    /// Largest accepted max abs difference from the original, relative to the largest
    /// absolute output value of the original on the sample.
    pub tolerance: f64,
    /// Per-channel mean subtracted from 0..255 pixels (float inputs; default 0).
    pub mean: Option<[f32; 3]>,
    /// Per-channel divisor after the mean (float inputs; default 1).
    pub std: Option<[f32; 3]>,
    /// `WxH`, for models whose height or width is dynamic.
    pub size: Option<&'a str>,
    /// Let the converter's own output through to this process's stderr.
    pub verbose: bool,
}

/// A name part unique to this process and moment (temporary files and staging directories).
pub fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos:x}", std::process::id())
}

/// Removes the script file however the conversion ends.
struct ScriptFile(PathBuf);

impl Drop for ScriptFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the conversion with `python` (an interpreter with tf2onnx, TensorFlow, tensorflowjs
/// and onnxruntime; ONNX sources need onnxruntime only) and returns the script's JSON summary:
/// `format`, `opset`, `input` (name, dtype, layout, width, height), `outputs`, `check`,
/// `seconds`. The child is killed if the returned future is dropped.
pub async fn convert(python: &Path, req: &Request<'_>) -> Result<Value, ConvertError> {
    let script =
        ScriptFile(std::env::temp_dir().join(format!("inferq-import-{}.py", unique_suffix())));
    std::fs::write(&script.0, SCRIPT)
        .map_err(|e| ConvertError::Failed(format!("{}: {e}", script.0.display())))?;
    let triple = |v: [f32; 3]| format!("{},{},{}", v[0], v[1], v[2]);
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(&script.0)
        .arg("--source")
        .arg(req.source)
        .arg("--out")
        .arg(req.out)
        .arg("--tolerance")
        .arg(req.tolerance.to_string())
        .arg("--mean")
        .arg(triple(req.mean.unwrap_or([0.0; 3])))
        .arg("--std")
        .arg(triple(req.std.unwrap_or([1.0; 3])));
    if let Some(s) = req.size {
        cmd.arg("--size").arg(s);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if req.verbose {
            Stdio::inherit()
        } else {
            Stdio::piped()
        })
        .kill_on_drop(true);
    let output = cmd
        .output()
        .await
        .map_err(|e| ConvertError::Failed(format!("cannot run {}: {e}", python.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = error_line(&stderr)
            .unwrap_or_else(|| format!("{} exited with {}", python.display(), output.status));
        return Err(match output.status.code() {
            Some(2) => ConvertError::Refused(line),
            _ => ConvertError::Failed(line),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .ok_or_else(|| ConvertError::Failed("the conversion script printed no summary".into()))
}

/// The script's one-line `error: …`, else the last non-empty line of its stderr.
fn error_line(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_embedded() {
        assert!(SCRIPT.contains("def detect_format"));
    }

    #[test]
    fn the_error_line_is_the_scripts_own() {
        let err = "Traceback…\nerror: unsupported op Foo\nwarning: x\n";
        assert_eq!(error_line(err).as_deref(), Some("unsupported op Foo"));
        assert_eq!(error_line("a\nsegfault\n\n").as_deref(), Some("segfault"));
        assert_eq!(error_line(""), None);
    }

    #[test]
    fn kinds_parse_by_their_manifest_name() {
        for k in [
            "classification",
            "keypoints",
            "detection",
            "image",
            "embedding",
            "tensor",
        ] {
            assert_eq!(k.parse::<Kind>().unwrap().as_str(), k);
        }
        assert!("pose".parse::<Kind>().is_err());
    }

    #[tokio::test]
    async fn a_missing_interpreter_is_a_failure_of_the_environment() {
        let out = std::env::temp_dir().join("inferq-never-written.onnx");
        let req = Request {
            source: Path::new("/nonexistent/model.keras"),
            out: &out,
            tolerance: 1e-3,
            mean: None,
            std: None,
            size: None,
            verbose: false,
        };
        let err = convert(Path::new("/nonexistent/python"), &req)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConvertError::Failed(ref m) if m.contains("cannot run")),
            "{err}"
        );
    }
}
