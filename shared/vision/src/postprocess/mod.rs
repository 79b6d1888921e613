//! Turning raw model outputs into answers.
//!
//! The worker hands over the output tensors, the manifest and the geometry of
//! the preprocessing; what comes back is what clients see in a job's
//! `result`, plus an optional artifact (an output image) stored next to it.
//! Coordinates are mapped back to the *original* image's pixels here, so
//! clients never need to know the model's input size or how it was resized.
//! Kept free of ONNX Runtime types so it is unit-testable with plain slices.

mod canvas;
mod classify;
mod heatmap;
mod image;
mod spatial;

pub use canvas::Canvas;
pub use classify::{classify, embed};
pub use heatmap::MAX_PEAKS;
pub use image::render as render_image;
pub use inferq_core::prediction::Peak;
pub use inferq_core::prediction::{
    BoundingBox, ClassScore, Detection, Keypoint, Person, Prediction, RawOutput,
};
pub use spatial::{detect, keypoints};

use crate::preprocess::Geometry;
use inferq_core::manifest::{ModelKind, ModelManifest};

/// Largest raw tensor result (elements): bigger outputs belong in an image or
/// a storage reference, not in a JSON record.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 20;

/// A binary result stored beside the job record.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// Another rendering of an image result, served at `output?view=NAME`.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub name: &'static str,
    pub artifact: Artifact,
}

/// The prediction and, for image models, the image (and its other views).
#[derive(Debug, Clone, PartialEq)]
pub struct Interpreted {
    pub prediction: Prediction,
    pub artifact: Option<Artifact>,
    pub views: Vec<View>,
}

/// The output did not have the shape the manifest promised.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("model output: {0}")]
pub struct OutputError(pub String);

/// Interprets one image's outputs.
pub fn interpret(
    outputs: &[RawOutput],
    manifest: &ModelManifest,
    labels: &[String],
    geometry: &Geometry,
    top_k: Option<usize>,
) -> Result<Interpreted, OutputError> {
    let o = &manifest.output;
    // NaN and infinities have no JSON form (serde_json writes `null`, which
    // then cannot be read back as a number): a record holding one would be
    // unreadable. Fail the job with a clear message instead. Image outputs
    // are exempt: quantising maps them onto 0..255.
    if manifest.kind != ModelKind::Image
        && let Some(bad) = outputs
            .iter()
            .find(|r| r.data.iter().any(|v| !v.is_finite()))
    {
        return Err(OutputError(format!(
            "output `{}` holds NaN or infinite values",
            bad.name
        )));
    }
    let single = || -> Result<&RawOutput, OutputError> {
        let name = o.name.as_deref().unwrap_or_default();
        outputs
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| OutputError(format!("no output named `{name}`")))
    };
    let plain = |prediction| {
        Ok(Interpreted {
            prediction,
            artifact: None,
            views: Vec::new(),
        })
    };
    match manifest.kind {
        ModelKind::Classification => {
            let k = top_k.unwrap_or(o.top_k);
            plain(classify(&single()?.data, o.softmax, labels, k)?)
        }
        ModelKind::Keypoints => plain(keypoints(&single()?.data, manifest, geometry)?),
        ModelKind::Detection => plain(detect(&single()?.data, manifest, labels, geometry)?),
        ModelKind::Embedding => plain(embed(&single()?.data, o.normalize)?),
        ModelKind::Image => {
            // A model run once on a resized image: the output covers the
            // model input, which the geometry maps back to the source.
            let canvas = Canvas::from_output(single()?, o)?;
            let (w, h) = (manifest.input.width as f32, manifest.input.height as f32);
            image::render(
                &canvas,
                o,
                |fx, fy| geometry.to_source(fx * w, fy * h),
                None,
            )
        }
        ModelKind::Tensor => {
            let total: usize = outputs.iter().map(|r| r.data.len()).sum();
            if total > MAX_TENSOR_ELEMENTS {
                return Err(OutputError(format!(
                    "{total} output values exceed the tensor result limit of {MAX_TENSOR_ELEMENTS}"
                )));
            }
            plain(Prediction::Tensor {
                outputs: outputs.to_vec(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn non_finite_outputs_fail_clearly_except_for_images() {
        let text = "kind = \"tensor\"\n[input]\nname = \"x\"\ndtype = \"float32\"\nlayout = \"nchw\"\n\
                    width = 2\nheight = 2\n[preprocess]\nresize = \"stretch\"\n[output]\nnames = [\"y\"]\n";
        let m = ModelManifest::parse(text, Path::new("m.toml")).unwrap();
        let geometry = Geometry {
            scale_x: 1.0,
            scale_y: 1.0,
            offset_x: 0.0,
            offset_y: 0.0,
            source_width: 2,
            source_height: 2,
        };
        let out = |v: f32| RawOutput {
            name: "y".into(),
            shape: vec![1, 2],
            data: vec![1.0, v],
        };
        assert!(interpret(&[out(2.0)], &m, &[], &geometry, None).is_ok());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let err = interpret(&[out(bad)], &m, &[], &geometry, None).unwrap_err();
            assert!(err.0.contains("NaN or infinite"), "{err}");
        }
    }
}
