//! Model manifests (`model.toml`).
//!
//! Each model version directory (see `inferq_backends::repository`) holds a
//! `model.onnx` and this manifest. The manifest
//! says everything needed to feed and read the network: input tensor name,
//! dtype, layout and size, how to resize/crop/normalise an image, and how to
//! interpret the output. Preprocessing is driven entirely by it, so adding a
//! model never means changing code.
//!
//! The API reads only manifests (to validate model names cheaply); workers
//! also load the ONNX files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod image_output;
mod runtime;

pub use image_output::{Colormap, TilingSpec};
pub use runtime::{Provider, RuntimeSpec, UnknownProvider};

/// File name of the manifest inside a version directory.
pub const MANIFEST_FILE: &str = "model.toml";
/// File name of the network inside a version directory.
pub const MODEL_FILE: &str = "model.onnx";

/// What kind of answer the model gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Class scores: top-k labels with probabilities.
    Classification,
    /// Named points (pose estimation) with a skeleton.
    Keypoints,
    /// Boxes with classes and scores.
    Detection,
    /// An output tensor that is an image (image-to-image nets, heatmaps).
    Image,
    /// A feature vector.
    Embedding,
    /// Raw output tensors, for anything else.
    Tensor,
}

/// How keypoint rows are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeypointFormat {
    /// `(y, x, score)` per keypoint (MoveNet).
    YxScore,
    /// `(x, y, score)` per keypoint.
    XyScore,
}

/// How detection rows are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionFormat {
    /// `(x1, y1, x2, y2, score, class)` per row.
    XyxyScoreClass,
}

/// The box at the end of a person row of a multi-person pose model, in
/// the same unit as its keypoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonBox {
    /// `(ymin, xmin, ymax, xmax, score)` (MoveNet MultiPose).
    YxyxScore,
    /// `(xmin, ymin, xmax, ymax, score)`.
    XyxyScore,
}

impl PersonBox {
    /// Values the box takes at the end of a row.
    pub const LEN: usize = 5;
}

/// Unit of coordinates in a model's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coords {
    /// Fractions 0..1 of the model input's width/height.
    Normalized,
    /// Pixels of the model input.
    Pixels,
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
    /// No resizing: the image is fed at its own size (dynamic H and W), cut
    /// into tiles when `[tiling]` says so. For image-to-image and heatmap
    /// models, whose output is pixel-aligned with the input.
    None,
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
    /// The network also accepts other sizes whose sides are multiples of
    /// this (dynamic axes), e.g. 32 for MoveNet MultiPose. Informational:
    /// the worker feeds `width` x `height`; clients of the v2 protocol
    /// sending their own tensors may use any such size.
    #[serde(default)]
    pub size_multiple: Option<u32>,
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
    /// Reduced-scale JPEG decoding: a JPEG may be decoded at 1/2, 1/4 or 1/8
    /// size when that keeps at least this fraction of the resolution the
    /// input needs (1.0: never below it, so only images much larger than the
    /// input are affected; 0.9 also lets a 640x480 photo decode at half size
    /// for a 256-pixel resize; 0 turns it off).
    #[serde(default = "default_jpeg_draft")]
    pub jpeg_draft: f32,
}

fn default_jpeg_draft() -> f32 {
    1.0
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

/// How to read the output. Which fields apply depends on the model kind;
/// [`ModelManifest::parse`] rejects fields that make no sense for the kind.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// The output tensor to read (every kind but `tensor`).
    #[serde(default)]
    pub name: Option<String>,
    /// `tensor`: the outputs to return; empty means all.
    #[serde(default)]
    pub names: Vec<String>,
    /// `classification`: apply softmax (true when the network emits logits).
    #[serde(default)]
    pub softmax: bool,
    /// `classification`, `detection`: labels file, one per line, relative
    /// to the manifest.
    #[serde(default)]
    pub labels: Option<String>,
    /// `classification`: how many classes a result lists by default.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// `keypoints`, `detection`: row layout.
    #[serde(default)]
    pub format: Option<String>,
    /// `keypoints`, `detection`: coordinate unit.
    #[serde(default)]
    pub coords: Option<Coords>,
    /// `keypoints`: point names, in output order.
    #[serde(default)]
    pub keypoints: Vec<String>,
    /// `keypoints`: edges between points (indices into `keypoints`).
    #[serde(default)]
    pub skeleton: Vec<[usize; 2]>,
    /// `keypoints`, `detection`: results scoring below this are dropped.
    #[serde(default)]
    pub score_threshold: f32,
    /// `keypoints`: the output holds this many person rows (a multi-person
    /// model such as MoveNet MultiPose); absent for a single person's
    /// points. Each row is the points (3 values each), then the box when
    /// [`Self::person_box`] is set.
    #[serde(default)]
    pub persons: Option<usize>,
    /// `keypoints`: what follows the points in each person row.
    #[serde(default, rename = "box")]
    pub person_box: Option<PersonBox>,
    /// `keypoints` with `persons`: rows scoring below this are not people.
    #[serde(default)]
    pub person_score_threshold: f32,
    /// `detection`: IoU above which a lower-scored box of the same class is
    /// suppressed; absent means no non-maximum suppression.
    #[serde(default)]
    pub nms_iou: Option<f32>,
    /// `detection`: most boxes returned.
    #[serde(default = "default_max_detections")]
    pub max_detections: usize,
    /// `image`: layout of the output tensor.
    #[serde(default)]
    pub layout: Option<Layout>,
    /// `image`: the output value range, mapped linearly onto 0..255.
    #[serde(default)]
    pub range: Option<[f32; 2]>,
    /// `image`: channel order of the output.
    #[serde(default)]
    pub color: Option<ColorOrder>,
    /// `image`: output height and width are this many times the input's
    /// (2 for a x2 super-resolution net); absent = 1.
    #[serde(default)]
    pub scale: Option<u32>,
    /// `image`: channels of the output image, 1 (grey, a heatmap) or 3;
    /// absent = whatever the tensor has.
    #[serde(default)]
    pub channels: Option<u8>,
    /// `image` with one channel: the colour map of the `colormap` and
    /// `overlay` views (default inferno).
    #[serde(default)]
    pub colormap: Option<Colormap>,
    /// `image` with one channel: report local maxima at or above this
    /// fraction of the output range as peaks (default 0.5).
    #[serde(default)]
    pub peak_threshold: Option<f32>,
    /// `embedding`: L2-normalise the vector.
    #[serde(default)]
    pub normalize: bool,
}

/// Most person rows a multi-person pose model may declare.
pub const MAX_PERSONS: usize = 256;

fn default_max_detections() -> usize {
    100
}

impl OutputSpec {
    /// Keypoint row layout (defaults to MoveNet's `yx_score`).
    pub fn keypoint_format(&self) -> KeypointFormat {
        match self.format.as_deref() {
            Some("xy_score") => KeypointFormat::XyScore,
            _ => KeypointFormat::YxScore,
        }
    }

    /// The output tensors the engine must fetch (empty = all the model has).
    pub fn wanted(&self) -> Vec<String> {
        match &self.name {
            Some(n) => vec![n.clone()],
            None => self.names.clone(),
        }
    }
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
    /// Whether this version may be the model's default (the version a
    /// request that names none gets). The default is the highest version
    /// that does not say `default = false`; a version that does is served
    /// only when named, e.g. a candidate that did not (yet) earn it.
    #[serde(default = "yes")]
    pub default: bool,
    pub input: InputSpec,
    pub preprocess: PreprocessSpec,
    pub output: OutputSpec,
    /// Dynamic batching; off unless the manifest declares it.
    #[serde(default)]
    pub batching: BatchingSpec,
    /// How a `resize = "none"` model runs an image larger than one tile.
    #[serde(default)]
    pub tiling: Option<TilingSpec>,
    /// Execution providers (`[runtime]`); absent: the worker's default.
    #[serde(default)]
    pub runtime: RuntimeSpec,
}

/// `[batching]`: whether and how an inference thread runs several jobs of
/// this model as one batch.
///
/// Batching is declared per model because whether it pays depends on the
/// model and the hardware: on a CPU with one thread per core it can win a
/// little (fewer runs, better cache use of the weights) or lose (larger
/// activations fall out of cache). The model's batch axis must be dynamic;
/// the engine checks that when it loads the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingSpec {
    /// Most jobs run together; 1 turns batching off.
    #[serde(default = "one")]
    pub max_batch: usize,
    /// How long a thread holding fewer than `max_batch` jobs waits for more
    /// before it runs them. 0 (the default) takes only the jobs already
    /// waiting, so batching never adds latency when the service is idle.
    #[serde(default)]
    pub max_delay_ms: u64,
}

impl Default for BatchingSpec {
    fn default() -> Self {
        BatchingSpec {
            max_batch: 1,
            max_delay_ms: 0,
        }
    }
}

impl BatchingSpec {
    /// Largest `max_batch` a manifest may declare.
    pub const MAX_BATCH: usize = 64;
    /// Longest `max_delay_ms` a manifest may declare.
    pub const MAX_DELAY_MS: u64 = 1000;

    /// Whether the model runs jobs in batches at all.
    pub fn enabled(&self) -> bool {
        self.max_batch > 1
    }
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
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
        if i.name.is_empty() {
            return Err("input.name must not be empty".into());
        }
        if let Some(k) = i.size_multiple
            && (k == 0 || !i.width.is_multiple_of(k) || !i.height.is_multiple_of(k))
        {
            return Err(format!(
                "input.size_multiple {k} must be positive and divide {}x{}",
                i.width, i.height
            ));
        }
        self.validate_output()?;
        self.validate_native()?;
        self.runtime.validate()?;
        let p = &self.preprocess;
        if p.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err("preprocess.std must be finite and non-zero".into());
        }
        if !(0.0..=1.0).contains(&p.jpeg_draft) {
            return Err("preprocess.jpeg_draft must be within 0..=1".into());
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
        let b = &self.batching;
        if !(1..=BatchingSpec::MAX_BATCH).contains(&b.max_batch) {
            return Err(format!(
                "batching.max_batch must be within 1..={}",
                BatchingSpec::MAX_BATCH
            ));
        }
        if b.max_delay_ms > BatchingSpec::MAX_DELAY_MS {
            return Err(format!(
                "batching.max_delay_ms must be at most {}",
                BatchingSpec::MAX_DELAY_MS
            ));
        }
        Ok(())
    }

    fn validate_output(&self) -> Result<(), String> {
        let o = &self.output;
        let kind = self.kind;
        match (kind, &o.name) {
            (ModelKind::Tensor, Some(_)) => {
                return Err(
                    "a tensor model lists its outputs in output.names, not output.name".into(),
                );
            }
            (ModelKind::Tensor, None) => {}
            (_, None) => return Err("output.name is required".into()),
            (_, Some(n)) if n.is_empty() => return Err("output.name must not be empty".into()),
            (_, Some(_)) => {
                if !o.names.is_empty() {
                    return Err("output.names is only for tensor models".into());
                }
            }
        }
        let only = |set: bool, field: &str, kinds: &[ModelKind]| {
            if set && !kinds.contains(&kind) {
                Err(format!("output.{field} does not apply to a {kind:?} model"))
            } else {
                Ok(())
            }
        };
        use ModelKind::*;
        only(o.softmax, "softmax", &[Classification])?;
        only(o.labels.is_some(), "labels", &[Classification, Detection])?;
        only(o.format.is_some(), "format", &[Keypoints, Detection])?;
        only(o.coords.is_some(), "coords", &[Keypoints, Detection])?;
        only(!o.keypoints.is_empty(), "keypoints", &[Keypoints])?;
        only(!o.skeleton.is_empty(), "skeleton", &[Keypoints])?;
        only(o.persons.is_some(), "persons", &[Keypoints])?;
        only(o.person_box.is_some(), "box", &[Keypoints])?;
        only(
            o.person_score_threshold != 0.0,
            "person_score_threshold",
            &[Keypoints],
        )?;
        only(o.nms_iou.is_some(), "nms_iou", &[Detection])?;
        only(o.layout.is_some(), "layout", &[Image])?;
        only(o.range.is_some(), "range", &[Image])?;
        only(o.color.is_some(), "color", &[Image])?;
        only(o.scale.is_some(), "scale", &[Image])?;
        only(o.channels.is_some(), "channels", &[Image])?;
        only(o.colormap.is_some(), "colormap", &[Image])?;
        only(o.peak_threshold.is_some(), "peak_threshold", &[Image])?;
        only(o.normalize, "normalize", &[Embedding])?;
        match kind {
            Keypoints => {
                if !matches!(
                    o.format.as_deref(),
                    None | Some("yx_score") | Some("xy_score")
                ) {
                    return Err("output.format must be yx_score or xy_score".into());
                }
                if o.persons.is_some_and(|p| !(1..=MAX_PERSONS).contains(&p)) {
                    return Err(format!("output.persons must be within 1..={MAX_PERSONS}"));
                }
                if o.persons.is_none()
                    && (o.person_box.is_some() || o.person_score_threshold != 0.0)
                {
                    return Err("output.box and person_score_threshold need output.persons".into());
                }
                if let Some(bad) = o
                    .skeleton
                    .iter()
                    .flatten()
                    .find(|i| **i >= o.keypoints.len())
                {
                    return Err(format!(
                        "skeleton refers to keypoint {bad}, but only {} are named",
                        o.keypoints.len()
                    ));
                }
            }
            Detection => {
                if !matches!(o.format.as_deref(), None | Some("xyxy_score_class")) {
                    return Err("output.format must be xyxy_score_class".into());
                }
                if o.nms_iou.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
                    return Err("output.nms_iou must be within 0..=1".into());
                }
            }
            Image => self.validate_image_output()?,
            Classification | Embedding | Tensor => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
