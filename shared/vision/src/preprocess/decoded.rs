//! What decoding produces and how it fails, shared by the full-size
//! decoders ([`super::decode`], [`super::png_rows`]) and the reduced-scale
//! JPEG path ([`super::draft`]): the RGB image as stored, its EXIF
//! orientation, the size of the original as displayed, the memory-budget
//! permit that pays for the pixels, the error kinds, and the pixel limit
//! every path enforces before allocating.

use image::RgbImage;
use image::metadata::Orientation;

use super::budget::Permit;

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a supported image format")]
    UnknownFormat,
    #[error("image exceeds the decoder limits: {0}")]
    Limits(String),
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
}

/// A decoded image.
///
/// `image` is as stored in the file: the EXIF `orientation` is *not*
/// applied to it (that would copy the whole image); preprocessing applies
/// it to the small model input and to the [`super::Geometry`], and
/// [`Decoded::into_upright`] turns it in place where the whole upright
/// image is needed. `full_width` × `full_height` is the size of the
/// full-resolution original as displayed (after orientation), which also
/// differs from the image's when a JPEG was decoded at reduced scale.
#[derive(Debug)]
pub struct Decoded {
    pub image: RgbImage,
    pub full_width: u32,
    pub full_height: u32,
    pub orientation: Orientation,
    /// The memory-budget bytes held for `image`; released on drop.
    permit: Option<Permit>,
}

impl Decoded {
    /// `full` is the stored (not yet oriented) full-resolution size.
    pub(super) fn new(
        image: RgbImage,
        full: (u32, u32),
        orientation: Orientation,
        permit: Option<Permit>,
    ) -> Self {
        let (full_width, full_height) = super::orient::upright_size(orientation, full);
        Decoded {
            image,
            full_width,
            full_height,
            orientation,
            permit,
        }
    }

    /// The image turned upright in its own buffer (no copy), keeping its
    /// memory-budget permit.
    pub fn into_upright(self) -> Decoded {
        if self.orientation == Orientation::NoTransforms {
            return self;
        }
        Decoded {
            image: super::orient::apply_in_place(self.image, self.orientation),
            orientation: Orientation::NoTransforms,
            ..self
        }
    }

    /// Bytes of the memory budget this image holds (0 without a budget).
    pub fn budget_bytes(&self) -> u64 {
        self.permit.as_ref().map_or(0, Permit::bytes)
    }
}

/// Refuses images above the pixel budget, before anything is allocated.
pub(super) fn check_pixels(w: u32, h: u32, max_pixels: u64) -> Result<(), DecodeError> {
    if w as u64 * h as u64 > max_pixels {
        return Err(DecodeError::Limits(format!(
            "{w}x{h} is above {max_pixels} pixels"
        )));
    }
    Ok(())
}
