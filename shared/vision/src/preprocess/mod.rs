//! Decoding images and turning them into model input tensors.
//!
//! Runs on the worker's inference threads, never on the async runtime. Every
//! step is driven by the model manifest: resize mode, crop, filter, channel
//! order, normalisation, layout and dtype.
//!
//! The stages are separate modules so each can be measured and replaced on
//! its own: [`decode`] (bytes → one 8-bit RGB buffer, under limits;
//! [`png_rows`] and [`pixels`] keep it to one full-size buffer), [`fit`]
//! (crop and resize to the input size with SIMD convolution) and [`tensor`]
//! (normalise and lay out); [`draft`] decodes large JPEGs at reduced scale
//! when the model needs far fewer pixels; [`orient`] applies EXIF
//! orientation to the small fitted image and the geometry instead of the
//! full decode; [`budget`] bounds the decoded bytes of all inference
//! threads together. A [`Preprocessor`] owns the buffers and the
//! resizer's scratch space of one inference thread, so a job allocates nothing
//! between the decoded image and the tensor handed to ONNX Runtime.

mod budget;
mod decode;
#[cfg(test)]
mod decode_tests;
mod decoded;
mod draft;
mod fit;
mod microbatch;
mod orient;
mod pixels;
mod png_rows;
mod tensor;
mod tiles;

use std::sync::Arc;

use image::RgbImage;
use image::metadata::Orientation;

use inferq_core::manifest::ModelManifest;

pub use budget::{MemoryBudget, Permit};
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

impl InputTensor {
    /// Bytes of the elements the tensor's shape covers (what the model
    /// reads; a reused buffer's spare capacity does not count).
    pub fn byte_len(&self) -> u64 {
        let elements: usize = self.shape.iter().product();
        let width = match self.data {
            TensorData::F32(_) | TensorData::I32(_) => 4,
            TensorData::U8(_) => 1,
        };
        (elements * width) as u64
    }
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
    /// The fitted image turned upright, for images stored sideways.
    oriented: Vec<u8>,
    tensor: InputTensor,
    /// Shared by the inference threads: decodes take their bytes from it.
    budget: Option<Arc<MemoryBudget>>,
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
            oriented: Vec::new(),
            tensor: InputTensor {
                shape: [0; 4],
                data: TensorData::F32(Vec::new()),
            },
            budget: None,
        }
    }

    /// A preprocessor whose decodes wait for, and hold, their decoded bytes
    /// in `budget` (shared with the other inference threads).
    pub fn with_budget(budget: Arc<MemoryBudget>) -> Self {
        Preprocessor {
            budget: Some(budget),
            ..Self::new()
        }
    }

    /// Crops/resizes `img` as the manifest says and lays it out as the
    /// model's input tensor, in this preprocessor's buffers.
    pub fn prepare(&mut self, img: &RgbImage, m: &ModelManifest) -> (&InputTensor, Geometry) {
        let target = (m.input.width, m.input.height);
        let geometry = self.resizer.fit_into(img, m, target, &mut self.fitted);
        tensor::fill(&self.fitted, m, &mut self.tensor);
        (&self.tensor, geometry)
    }

    /// Decodes for model `m`: a JPEG much larger than the input decodes at
    /// reduced scale, as far as the manifest's `jpeg_draft` allows. With a
    /// memory budget, waits until the decoded bytes fit in it; the returned
    /// image holds them until it is dropped.
    pub fn decode(
        &self,
        bytes: &[u8],
        max_pixels: u64,
        m: &ModelManifest,
    ) -> Result<Decoded, DecodeError> {
        let min_fraction = m.preprocess.jpeg_draft;
        let draft = |w, h| draft::denominator((w, h), min_fraction, |s| fit::needed_scale(m, s));
        decode::decode_budgeted(bytes, max_pixels, &draft, self.budget.as_ref())
    }

    /// [`Preprocessor::prepare`] for a decoded image, possibly at reduced
    /// scale and stored sideways: the stored image is fitted to the input
    /// size (axes swapped if the orientation swaps them), the small result
    /// is turned upright, and the geometry maps upright model pixels to the
    /// full-size original as displayed.
    pub fn prepare_decoded(&mut self, d: &Decoded, m: &ModelManifest) -> (&InputTensor, Geometry) {
        let o = d.orientation;
        let input = (m.input.width, m.input.height);
        let target = orient::upright_size(o, input); // swapping is its own inverse
        let g = self.resizer.fit_into(&d.image, m, target, &mut self.fitted);
        if o != Orientation::NoTransforms {
            orient::orient_small(&self.fitted, target, o, &mut self.oriented);
            std::mem::swap(&mut self.fitted, &mut self.oriented);
        }
        tensor::fill(&self.fitted, m, &mut self.tensor);
        // Stored full-size original, and the reduced-scale factor.
        let full = orient::upright_size(o, (d.full_width, d.full_height));
        let (w, h) = d.image.dimensions();
        let (fx, fy) = (full.0 as f32 / w as f32, full.1 as f32 / h as f32);
        let ((offset_x, offset_y), (scale_x, scale_y)) = if o == Orientation::NoTransforms {
            (
                (g.offset_x * fx, g.offset_y * fy),
                (g.scale_x * fx, g.scale_y * fy),
            )
        } else {
            orient::compose(o, target, full, |a, b| {
                let (x, y) = g.to_source(a, b);
                (x * fx, y * fy)
            })
        };
        let geometry = Geometry {
            scale_x,
            scale_y,
            offset_x,
            offset_y,
            source_width: d.full_width,
            source_height: d.full_height,
        };
        (&self.tensor, geometry)
    }
}

/// Resizes/crops the image to the model's input size as the manifest says.
///
/// Allocating convenience over [`Preprocessor::prepare`], for one-off use.
pub fn fit(img: &RgbImage, m: &ModelManifest) -> (RgbImage, Geometry) {
    let mut out = Vec::new();
    let target = (m.input.width, m.input.height);
    let geometry = fit::Resizer::new().fit_into(img, m, target, &mut out);
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
