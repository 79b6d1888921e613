//! The inputs every phase uses, loaded once.
//!
//! Two real images — a ~100 KB 640×480 JPEG photo and the 451×300 PNG cat
//! photo — go through the limit and service phases, so the in-process limit
//! and the service numbers are about the same bytes. The submit-path phase
//! uses a tiny 32×32 PNG (the API's cost without a large body) and a
//! by-reference job that carries no image at all.

use std::path::{Path, PathBuf};

use anyhow::Context;
use inferq_tests::load::Image;

/// A benchmark image: its bytes, content type and size.
#[derive(Debug, Clone)]
pub(crate) struct BenchImage {
    /// File name, e.g. `photo-640x480.jpg`.
    pub name: String,
    pub image: Image,
    pub width: u32,
    pub height: u32,
}

/// The images of the limit and service phases, in report order.
pub(crate) const IMAGE_FILES: [&str; 2] = ["photo-640x480.jpg", "chelsea.png"];

/// Decoder pixel limit for the in-process measurements (the worker's default).
pub(crate) const MAX_PIXELS: u64 = 40_000_000;

impl BenchImage {
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let image =
            Image::from_file(path).with_context(|| format!("reading {}", path.display()))?;
        let decoded = inferq_vision::preprocess::decode(&image.bytes, MAX_PIXELS)
            .with_context(|| format!("decoding {}", path.display()))?;
        Ok(BenchImage {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            width: decoded.width(),
            height: decoded.height(),
            image,
        })
    }

    pub(crate) fn bytes(&self) -> usize {
        self.image.bytes.len()
    }
}

/// Directory of the committed test images.
pub(crate) fn image_dir() -> PathBuf {
    inferq_tests::root().join("tests/images")
}

/// Loads [`IMAGE_FILES`].
pub(crate) fn load_all() -> anyhow::Result<Vec<BenchImage>> {
    IMAGE_FILES
        .iter()
        .map(|f| BenchImage::load(&image_dir().join(f)))
        .collect()
}

/// The tiny PNG of the submit-path phase.
pub(crate) fn tiny_png() -> Image {
    Image::png(inferq_tests::solid_png(32, 32, [200, 120, 40]))
}
