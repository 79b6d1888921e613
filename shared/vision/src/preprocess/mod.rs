//! Decoding images and turning them into model input tensors.
//!
//! Runs on the worker's inference threads, never on the async runtime. Every
//! step is driven by the model manifest: resize mode, crop, filter, channel
//! order, normalisation, layout and dtype.
//!
//! The stages are separate modules so each can be measured and replaced on
//! its own: [`decode`] (bytes → RGB, EXIF-aware, under limits), [`fit`]
//! (crop and resize to the input size with SIMD convolution) and [`tensor`]
//! (normalise and lay out); [`draft`] decodes large JPEGs at reduced scale
//! when the model needs far fewer pixels. A [`Preprocessor`] owns the buffers and the
//! resizer's scratch space of one inference thread, so a job allocates nothing
//! between the decoded image and the tensor handed to ONNX Runtime.

mod decode;
mod decoded;
mod draft;
mod fit;
mod microbatch;
mod tensor;
mod tiles;

use image::RgbImage;

use inferq_core::manifest::ModelManifest;

pub use decode::{decode, decode_with};
pub use decoded::{DecodeError, Decoded};
pub use draft::denominator as draft_denominator;
pub use microbatch::BatchTensor;
pub use tiles::{Rect, Tile, padded, plan as plan_tiles};

/// A model input of one image, batch dimension included (`N = 1`).
#[derive(Debug, Clone, PartialEq)]
pub struct InputTensor {
    pub shape: [usize; 4],
    pub data: TensorData,
}

/// Tensor elements in the manifest's dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    U8(Vec<u8>),
    I32(Vec<i32>),
}

/// Where in the original image each model pixel came from; used to map
/// model-space coordinates back to the original image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Source pixels per model pixel.
    pub scale_x: f32,
    pub scale_y: f32,
    /// Source coordinate of the model's (0, 0), negative with letterboxing.
    pub offset_x: f32,
    pub offset_y: f32,
    /// Size of the source image (after EXIF orientation).
    pub source_width: u32,
    pub source_height: u32,
}

impl Geometry {
    /// Maps a point in model-input pixels to source-image pixels.
    pub fn to_source(&self, mx: f32, my: f32) -> (f32, f32) {
        (
            self.offset_x + mx * self.scale_x,
            self.offset_y + my * self.scale_y,
        )
    }
}

/// One inference thread's preprocessing state: the resizer (with its
/// intermediate buffers), the model-size RGB image and the tensor, all
/// reused from job to job.
pub struct Preprocessor {
    resizer: fit::Resizer,
    fitted: Vec<u8>,
    tensor: InputTensor,
}

impl Default for Preprocessor {
    fn default() -> Self {
        Self::new()
    }
}

impl Preprocessor {
    pub fn new() -> Self {
        Preprocessor {
            resizer: fit::Resizer::new(),
            fitted: Vec::new(),
            tensor: InputTensor {
                shape: [0; 4],
                data: TensorData::F32(Vec::new()),
            },
        }
    }

    /// Crops/resizes `img` as the manifest says and lays it out as the
    /// model's input tensor, in this preprocessor's buffers.
    pub fn prepare(&mut self, img: &RgbImage, m: &ModelManifest) -> (&InputTensor, Geometry) {
        let geometry = self.resizer.fit_into(img, m, &mut self.fitted);
        tensor::fill(&self.fitted, m, &mut self.tensor);
        (&self.tensor, geometry)
    }

    /// Decodes for model `m`: a JPEG much larger than the input decodes at
    /// reduced scale, as far as the manifest's `jpeg_draft` allows.
    pub fn decode(
        &self,
        bytes: &[u8],
        max_pixels: u64,
        m: &ModelManifest,
    ) -> Result<Decoded, DecodeError> {
        let min_fraction = m.preprocess.jpeg_draft;
        decode_with(bytes, max_pixels, |w, h| {
            draft::denominator((w, h), min_fraction, |s| fit::needed_scale(m, s))
        })
    }

    /// [`Preprocessor::prepare`] for a possibly reduced-scale decode: the
    /// geometry maps back to the full-size original.
    pub fn prepare_decoded(&mut self, d: &Decoded, m: &ModelManifest) -> (&InputTensor, Geometry) {
        let (w, h) = d.image.dimensions();
        let (fx, fy) = (
            d.full_width as f32 / w as f32,
            d.full_height as f32 / h as f32,
        );
        let (tensor, g) = self.prepare(&d.image, m);
        let geometry = Geometry {
            scale_x: g.scale_x * fx,
            scale_y: g.scale_y * fy,
            offset_x: g.offset_x * fx,
            offset_y: g.offset_y * fy,
            source_width: d.full_width,
            source_height: d.full_height,
        };
        (tensor, geometry)
    }
}

/// Resizes/crops the image to the model's input size as the manifest says.
///
/// Allocating convenience over [`Preprocessor::prepare`], for one-off use.
pub fn fit(img: &RgbImage, m: &ModelManifest) -> (RgbImage, Geometry) {
    let mut out = Vec::new();
    let geometry = fit::Resizer::new().fit_into(img, m, &mut out);
    let image = RgbImage::from_raw(m.input.width, m.input.height, out)
        .expect("fit_into fills width * height * 3 bytes");
    (image, geometry)
}

/// Lays out an image of exactly the input size as the model's tensor.
///
/// Float inputs get `(pixel - mean) / std`; integer inputs carry the raw
/// 0..255 values (mean and std do not apply to them).
pub fn to_tensor(img: &RgbImage, m: &ModelManifest) -> InputTensor {
    debug_assert_eq!(img.dimensions(), (m.input.width, m.input.height));
    let mut out = InputTensor {
        shape: [0; 4],
        data: TensorData::F32(Vec::new()),
    };
    tensor::fill(img.as_raw(), m, &mut out);
    out
}

#[cfg(test)]
pub(crate) mod test_manifest {
    use std::path::Path;

    use inferq_core::manifest::ModelManifest;

    /// A 2x2-input manifest with extra `[input]` and `[preprocess]` lines.
    /// (`layout` defaults to NCHW here.)
    pub(crate) fn manifest(extra_input: &str, preprocess: &str) -> ModelManifest {
        let layout = if extra_input.contains("layout") {
            ""
        } else {
            "layout = \"nchw\""
        };
        let text = format!(
            "kind = \"classification\"\n[input]\nname = \"x\"\nwidth = 2\nheight = 2\n{layout}\n{extra_input}\n\
             [preprocess]\n{preprocess}\n[output]\nname = \"y\"\n"
        );
        ModelManifest::parse(&text, Path::new("t.toml")).unwrap()
    }
}
