//! What decoding produces and how it fails, shared by the full-size
//! decoder ([`super::decode`]) and the reduced-scale JPEG path
//! ([`super::draft`]): the RGB image with its original size, the error
//! kinds, and the pixel budget both enforce before allocating.

use image::RgbImage;

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

/// A decoded image and the size of the full-resolution original (after
/// EXIF orientation), which differs when a JPEG was decoded at reduced scale.
#[derive(Debug)]
pub struct Decoded {
    pub image: RgbImage,
    pub full_width: u32,
    pub full_height: u32,
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
