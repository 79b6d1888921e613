//! Model manifests and the on-disk model repository.
//!
//! A repository is a directory laid out as `<root>/<name>/<version>/` with a
//! `model.onnx` and a `model.toml` manifest in each version directory
//! (versions are positive integers; the highest is the default). The manifest
//! says everything needed to feed and read the network: input tensor name,
//! dtype, layout and size, how to resize/crop/normalise an image, and how to
//! interpret the output. Preprocessing is driven entirely by it, so adding a
//! model never means changing code.
//!
//! The API reads only manifests (to validate model names cheaply); workers
//! also load the ONNX files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// File name of the manifest inside a version directory.
pub const MANIFEST_FILE: &str = "model.toml";
/// File name of the network inside a version directory.
pub const MODEL_FILE: &str = "model.onnx";

/// What kind of answer the model gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Classification,
}

/// Element type of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    Float32,
    Uint8,
    Int32,
}

/// Memory layout of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `[N, C, H, W]` (PyTorch, most ONNX exports).
    Nchw,
    /// `[N, H, W, C]` (TensorFlow, TFJS).
    Nhwc,
}

/// Channel order the network expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorOrder {
    Rgb,
    Bgr,
}

/// How the image is brought to the input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Scale so the shorter side equals `resize_to`, keeping the aspect ratio
    /// (then usually center-cropped) — the ImageNet convention.
    ShorterSide,
    /// Scale both axes independently to the input size.
    Stretch,
    /// Scale the longer side to fit, pad the rest with `pad_value`.
    Letterbox,
}

/// Cropping after resizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Crop {
    Center,
    None,
}

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    Nearest,
    Bilinear,
    Bicubic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub dtype: DType,
    pub layout: Layout,
    pub width: u32,
    pub height: u32,
    #[serde(default = "default_color")]
    pub color: ColorOrder,
}

fn default_color() -> ColorOrder {
    ColorOrder::Rgb
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessSpec {
    pub resize: ResizeMode,
    /// Target of the shorter side for `shorter_side`; ignored otherwise.
    #[serde(default)]
    pub resize_to: Option<u32>,
    #[serde(default = "default_crop")]
    pub crop: Crop,
    #[serde(default = "default_filter")]
    pub filter: Filter,
    /// Per-channel value subtracted from the 0..255 pixel (in manifest
    /// channel order R, G, B regardless of `color`).
    #[serde(default)]
    pub mean: [f32; 3],
    /// Per-channel divisor applied after subtracting `mean`.
    #[serde(default = "default_std")]
    pub std: [f32; 3],
    /// Fill value (0..255) for letterbox padding.
    #[serde(default)]
    pub pad_value: u8,
}

fn default_crop() -> Crop {
    Crop::None
}
fn default_filter() -> Filter {
    Filter::Bilinear
}
fn default_std() -> [f32; 3] {
    [1.0; 3]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    /// Apply softmax to the output (true when the network emits logits).
    #[serde(default)]
    pub softmax: bool,
    /// Labels file, one label per line, relative to the manifest.
    #[serde(default)]
    pub labels: Option<String>,
    /// How many classes a result lists by default.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
}

fn default_top_k() -> usize {
    5
}

/// The parsed `model.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    pub kind: ModelKind,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub license: Option<String>,
    pub input: InputSpec,
    pub preprocess: PreprocessSpec,
    pub output: OutputSpec,
}

/// A manifest or repository that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Largest input side a manifest may declare; guards against typos that would
/// allocate gigabytes per job.
const MAX_INPUT_SIDE: u32 = 8192;

impl ModelManifest {
    /// Parses and validates manifest text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let m: ModelManifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        m.validate().map_err(|reason| ManifestError::Invalid {
            path: path.to_owned(),
            reason,
        })?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), String> {
        let i = &self.input;
        if i.width == 0 || i.height == 0 || i.width > MAX_INPUT_SIDE || i.height > MAX_INPUT_SIDE {
            return Err(format!(
                "input size {}x{} must be within 1..={MAX_INPUT_SIDE}",
                i.width, i.height
            ));
        }
        if i.name.is_empty() || self.output.name.is_empty() {
            return Err("input.name and output.name must not be empty".into());
        }
        let p = &self.preprocess;
        if p.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err("preprocess.std must be finite and non-zero".into());
        }
        if p.mean.iter().any(|m| !m.is_finite()) {
            return Err("preprocess.mean must be finite".into());
        }
        if p.resize == ResizeMode::ShorterSide {
            let target = p.resize_to.unwrap_or(i.width.min(i.height));
            if p.crop == Crop::Center && (target < i.width.min(i.height)) {
                return Err(format!(
                    "resize_to {target} is smaller than the input; center crop would not fit"
                ));
            }
            if target == 0 || target > MAX_INPUT_SIDE {
                return Err(format!("resize_to {target} out of range"));
            }
        }
        if self.output.top_k == 0 {
            return Err("output.top_k must be at least 1".into());
        }
        Ok(())
    }
}

/// One servable model version.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub name: String,
    pub version: u64,
    pub dir: PathBuf,
    pub manifest: ModelManifest,
    /// Class labels (empty when the manifest names none).
    pub labels: Arc<Vec<String>>,
}

impl ModelEntry {
    /// Path of the ONNX file.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(MODEL_FILE)
    }

    /// `name:version`, for logs and errors.
    pub fn key(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }

    /// Loads one version directory.
    pub fn load(name: &str, version: u64, dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        let manifest = ModelManifest::parse(&text, &path)?;
        let labels = match &manifest.output.labels {
            Some(rel) => {
                let lpath = dir.join(rel);
                let text = std::fs::read_to_string(&lpath).map_err(|source| ManifestError::Io {
                    path: lpath.clone(),
                    source,
                })?;
                text.lines().map(|l| l.trim().to_owned()).collect()
            }
            None => Vec::new(),
        };
        Ok(ModelEntry {
            name: name.to_owned(),
            version,
            dir: dir.to_owned(),
            manifest,
            labels: Arc::new(labels),
        })
    }
}

/// Model names are used in URLs, queue names and metric labels.
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

/// All models found under a root directory.
#[derive(Debug, Clone, Default)]
pub struct ModelRepository {
    /// name -> version -> entry
    models: BTreeMap<String, BTreeMap<u64, Arc<ModelEntry>>>,
}

/// The result of scanning: the usable models plus what could not be loaded.
/// A broken model must not take the others down, so errors are returned, not
/// raised.
pub struct Scan {
    pub repository: ModelRepository,
    pub errors: Vec<ManifestError>,
}

impl ModelRepository {
    /// Scans `<root>/<name>/<version>/model.toml`.
    pub fn scan(root: &Path) -> Result<Scan, ManifestError> {
        let io = |source| ManifestError::Io {
            path: root.to_owned(),
            source,
        };
        let mut repo = ModelRepository::default();
        let mut errors = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(root)
            .map_err(io)?
            .filter_map(Result::ok)
            .collect();
        names.sort_by_key(|e| e.file_name());
        for name_dir in names {
            let name = name_dir.file_name().to_string_lossy().into_owned();
            if !name_dir.path().is_dir() || name.starts_with('.') {
                continue;
            }
            if !valid_model_name(&name) {
                errors.push(ManifestError::Invalid {
                    path: name_dir.path(),
                    reason: "model names use a-z, 0-9, '-', '_' and '.'".into(),
                });
                continue;
            }
            let Ok(versions) = std::fs::read_dir(name_dir.path()) else {
                continue;
            };
            for v in versions.filter_map(Result::ok) {
                let Some(version) = v
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|v| *v > 0)
                else {
                    continue;
                };
                if !v.path().join(MANIFEST_FILE).exists() {
                    continue;
                }
                match ModelEntry::load(&name, version, &v.path()) {
                    Ok(entry) => {
                        repo.models
                            .entry(name.clone())
                            .or_default()
                            .insert(version, Arc::new(entry));
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        Ok(Scan {
            repository: repo,
            errors,
        })
    }

    /// Finds a model version; `None` version means the newest.
    pub fn get(&self, name: &str, version: Option<u64>) -> Option<&Arc<ModelEntry>> {
        let versions = self.models.get(name)?;
        match version {
            Some(v) => versions.get(&v),
            None => versions.values().next_back(),
        }
    }

    /// Every loaded version of every model.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<ModelEntry>> {
        self.models.values().flat_map(|v| v.values())
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Model names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
kind = "classification"
[input]
name = "input"
dtype = "float32"
layout = "nchw"
width = 224
height = 224
[preprocess]
resize = "shorter_side"
resize_to = 256
crop = "center"
mean = [127.0, 127.0, 127.0]
std = [128.0, 128.0, 128.0]
[output]
name = "logits"
softmax = true
"#;

    #[test]
    fn parses_and_defaults() {
        let m = ModelManifest::parse(GOOD, Path::new("m.toml")).unwrap();
        assert_eq!(m.kind, ModelKind::Classification);
        assert_eq!(m.input.color, ColorOrder::Rgb);
        assert_eq!(m.preprocess.filter, Filter::Bilinear);
        assert_eq!(m.preprocess.resize_to, Some(256));
        assert_eq!(m.output.top_k, 5);
        assert!(m.output.labels.is_none());
    }

    #[test]
    fn rejects_zero_std_and_unknown_keys() {
        let bad = GOOD.replace("std = [128.0, 128.0, 128.0]", "std = [0.0, 1.0, 1.0]");
        let err = ModelManifest::parse(&bad, Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("std"), "{err}");

        let typo = GOOD.replace("softmax = true", "softmx = true");
        let err = ModelManifest::parse(&typo, Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("softmx"), "{err}");
    }

    #[test]
    fn rejects_crop_larger_than_resize() {
        let bad = GOOD.replace("resize_to = 256", "resize_to = 100");
        assert!(ModelManifest::parse(&bad, Path::new("m.toml")).is_err());
    }

    #[test]
    fn model_names() {
        assert!(valid_model_name("efficientnet-lite0"));
        assert!(valid_model_name("a.b_c"));
        assert!(!valid_model_name(""));
        assert!(!valid_model_name("-x"));
        assert!(!valid_model_name("Upper"));
        assert!(!valid_model_name("a/b"));
    }

    #[test]
    fn scans_repository_and_picks_newest() {
        let root = std::env::temp_dir().join(format!("inferq-repo-{}", uuid::Uuid::new_v4()));
        for v in [1, 2] {
            let d = root.join("m").join(v.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(MANIFEST_FILE), GOOD).unwrap();
        }
        // A broken model is reported, not fatal.
        let d = root.join("broken").join("1");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(MANIFEST_FILE), "kind = 3").unwrap();

        let scan = ModelRepository::scan(&root).unwrap();
        assert_eq!(scan.errors.len(), 1);
        assert!(scan.errors[0].to_string().contains("broken"));
        let repo = scan.repository;
        assert_eq!(repo.get("m", None).unwrap().version, 2);
        assert_eq!(repo.get("m", Some(1)).unwrap().version, 1);
        assert!(repo.get("m", Some(3)).is_none());
        assert!(repo.get("broken", None).is_none());
        std::fs::remove_dir_all(root).unwrap();
    }
}
