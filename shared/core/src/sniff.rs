//! Cheap validation of an image without decoding it.
//!
//! The API must answer in microseconds and never spend CPU on pixels, yet it
//! should refuse what is certain to fail before it costs a queue slot: bytes
//! that are not an image, and decompression bombs (a few KB of PNG that
//! declare 100000×100000 pixels). Both are visible in the first bytes: magic
//! numbers identify the format, and every supported format stores its
//! dimensions in the header.

use serde::{Deserialize, Serialize};

/// Image formats InferQ decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
    Bmp,
}

impl ImageFormat {
    /// Identifies the format from its magic bytes.
    pub fn sniff(data: &[u8]) -> Option<Self> {
        match data {
            [0xFF, 0xD8, 0xFF, ..] => Some(ImageFormat::Jpeg),
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(ImageFormat::Png),
            [
                b'R',
                b'I',
                b'F',
                b'F',
                _,
                _,
                _,
                _,
                b'W',
                b'E',
                b'B',
                b'P',
                ..,
            ] => Some(ImageFormat::Webp),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(ImageFormat::Gif),
            [b'B', b'M', ..] if data.len() >= 26 => Some(ImageFormat::Bmp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
            ImageFormat::Gif => "gif",
            ImageFormat::Bmp => "bmp",
        }
    }
}

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

impl ImageHeader {
    pub fn pixels(&self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

/// Why an image was refused before decoding.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SniffError {
    #[error("the body is empty")]
    Empty,
    #[error("not a supported image format (JPEG, PNG, WebP, GIF or BMP expected)")]
    UnknownFormat,
    #[error("the {0} header is truncated or corrupt")]
    BadHeader(&'static str),
    #[error("image declares {width}x{height} = {pixels} pixels, above the limit of {limit}")]
    TooManyPixels {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
}

/// Reads format and dimensions from the header and checks the pixel limit.
pub fn inspect(data: &[u8], max_pixels: u64) -> Result<ImageHeader, SniffError> {
    if data.is_empty() {
        return Err(SniffError::Empty);
    }
    let format = ImageFormat::sniff(data).ok_or(SniffError::UnknownFormat)?;
    let size = imagesize::blob_size(data).map_err(|_| SniffError::BadHeader(format.as_str()))?;
    let (width, height) = (size.width as u64, size.height as u64);
    if width == 0 || height == 0 || width > u32::MAX as u64 || height > u32::MAX as u64 {
        return Err(SniffError::BadHeader(format.as_str()));
    }
    let header = ImageHeader {
        format,
        width: width as u32,
        height: height as u32,
    };
    if header.pixels() > max_pixels {
        return Err(SniffError::TooManyPixels {
            width: header.width,
            height: header.height,
            pixels: header.pixels(),
            limit: max_pixels,
        });
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG signature and IHDR chunk declaring the given size (no pixel data).
    pub(crate) fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut v = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
        v.extend_from_slice(&13u32.to_be_bytes());
        v.extend_from_slice(b"IHDR");
        v.extend_from_slice(&width.to_be_bytes());
        v.extend_from_slice(&height.to_be_bytes());
        v.extend_from_slice(&[8, 2, 0, 0, 0]);
        v.extend_from_slice(&[0, 0, 0, 0]); // CRC, not checked by a header read
        v
    }

    #[test]
    fn reads_png_dimensions() {
        let h = inspect(&png_header(640, 480), 40_000_000).unwrap();
        assert_eq!(h.format, ImageFormat::Png);
        assert_eq!((h.width, h.height), (640, 480));
    }

    #[test]
    fn refuses_decompression_bomb() {
        let err = inspect(&png_header(100_000, 100_000), 40_000_000).unwrap_err();
        assert_eq!(
            err,
            SniffError::TooManyPixels {
                width: 100_000,
                height: 100_000,
                pixels: 10_000_000_000,
                limit: 40_000_000
            }
        );
    }

    #[test]
    fn refuses_garbage_and_empty() {
        assert_eq!(inspect(b"", 1), Err(SniffError::Empty));
        assert_eq!(
            inspect(b"hello, this is text", 100),
            Err(SniffError::UnknownFormat)
        );
        assert_eq!(
            inspect(&[0xFF, 0xD8, 0xFF], 100),
            Err(SniffError::BadHeader("jpeg"))
        );
    }

    #[test]
    fn sniffs_each_format() {
        assert_eq!(ImageFormat::sniff(b"GIF89a...."), Some(ImageFormat::Gif));
        assert_eq!(
            ImageFormat::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageFormat::Webp)
        );
        assert_eq!(
            ImageFormat::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(ImageFormat::sniff(b"BM"), None);
    }
}
