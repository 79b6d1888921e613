//! Decoding encoded images to 8-bit RGB, safely and in bounded memory.
//!
//! Every path allocates one full-size buffer: the RGB result (3 bytes per
//! pixel), or, where a decoder insists on writing its own pixel type
//! (RGBA GIF and WebP frames, 4 bytes), that buffer converted to RGB in
//! place and shrunk ([`super::pixels`]). PNG is decoded row by row
//! ([`super::png_rows`]) so 16-bit RGBA never exists at full size; large
//! JPEGs decode at reduced scale when the model allows ([`super::draft`]).
//! EXIF orientation is read, not applied: see [`Decoded`] and
//! [`super::orient`]. With a [`MemoryBudget`], the bytes the decode will
//! allocate are taken from it after the header is read and before the
//! pixels are.
//!
//! Decoding runs under the pixel limit (checked on the header, before any
//! allocation) and the `image` crate's limits, so a hostile file cannot
//! allocate more than the limit allows even if it slipped past the API's
//! header check. A JPEG without its end marker is refused rather than
//! decoded into grey (see [`jpeg_is_complete`]).

use std::io::Cursor;
use std::sync::Arc;

use image::metadata::Orientation;
use image::{ImageDecoder, ImageReader, RgbImage};

use super::budget::MemoryBudget;
use super::decoded::{DecodeError, Decoded, check_pixels};

/// Decodes to 8-bit RGB, upright (EXIF orientation applied in place); at
/// most `max_pixels`.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DecodeError> {
    decode_with(bytes, max_pixels, |_, _| 1).map(|d| d.into_upright().image)
}

/// Like [`decode`], but a JPEG may be decoded at 1/2, 1/4 or 1/8 scale:
/// `draft(width, height)` gets the header size and answers the largest scale
/// denominator the caller can use (1 = full size). Scaling in the DCT skips
/// most of the inverse transform, colour conversion and upsampling work, and
/// leaves the resizer less to do; it is also what makes large phone photos
/// cheap. The image comes back as stored, with its orientation beside it.
pub fn decode_with(
    bytes: &[u8],
    max_pixels: u64,
    draft: impl Fn(u32, u32) -> u32,
) -> Result<Decoded, DecodeError> {
    decode_budgeted(bytes, max_pixels, &draft, None)
}

/// [`decode_with`], taking the decoded bytes from `budget` first.
pub(super) fn decode_budgeted(
    bytes: &[u8],
    max_pixels: u64,
    draft: &dyn Fn(u32, u32) -> u32,
    budget: Option<&Arc<MemoryBudget>>,
) -> Result<Decoded, DecodeError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    match reader.format() {
        None => return Err(DecodeError::UnknownFormat),
        Some(image::ImageFormat::Jpeg) => {
            if !jpeg_is_complete(bytes) {
                return Err(DecodeError::Corrupt(
                    "truncated JPEG: no end-of-image marker".into(),
                ));
            }
            if let Some(decoded) = super::draft::decode(bytes, max_pixels, draft, budget)? {
                return Ok(decoded);
            }
        }
        Some(image::ImageFormat::Png) => {
            return super::png_rows::decode(bytes, max_pixels, budget);
        }
        Some(_) => {}
    }
    decode_full(reader, max_pixels, budget)
}

/// The other formats at full size, through the `image` crate's decoder
/// into one buffer of its pixel type, converted to RGB in place.
fn decode_full(
    mut reader: ImageReader<Cursor<&[u8]>>,
    max_pixels: u64,
    budget: Option<&Arc<MemoryBudget>>,
) -> Result<Decoded, DecodeError> {
    let side = max_pixels.min(u32::MAX as u64) as u32;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    // What a decoder may allocate for itself besides the buffer it is given
    // (e.g. a GIF frame smaller than the canvas).
    limits.max_alloc = Some(max_pixels.saturating_mul(4).max(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(classify)?;
    let (w, h) = decoder.dimensions();
    check_pixels(w, h, max_pixels)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let color = decoder.color_type();
    let pixels = w as usize * h as usize;
    let decoded_len = usize::try_from(decoder.total_bytes())
        .map_err(|_| DecodeError::Limits(format!("{w}x{h} does not fit in memory")))?;
    let len = decoded_len.max(pixels * 3);
    let permit = budget.map(|b| b.acquire(len as u64));
    let mut buf = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|_| DecodeError::Limits(format!("cannot allocate {len} bytes for {w}x{h}")))?;
    buf.resize(decoded_len, 0);
    // A decoder bug must not fail the other jobs of the engine thread's
    // batch: a panic inside a decoder (zune-jpeg 0.5.15 has one,
    // docs/fuzzing.md) is answered as a corrupt image.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decoder.read_image(&mut buf)
    }))
    .map_err(|_| DecodeError::Corrupt("the decoder failed on this image".into()))?
    .map_err(classify)?;
    super::pixels::to_rgb8_in_place(&mut buf, color, pixels)?;
    // A large buffer is its own mapping: shrinking it unmaps the tail
    // (4 → 3 bytes per pixel) without copying.
    buf.shrink_to_fit();
    let image = RgbImage::from_raw(w, h, buf).expect("converted to width * height * 3 bytes");
    Ok(Decoded::new(image, (w, h), orientation, permit))
}

/// Whether a JPEG ends with its end-of-image marker (FF D9), allowing a
/// little trailing padding. The JPEG decoder silently fills a truncated scan
/// with grey, which would turn a broken upload into a confident wrong answer;
/// inside entropy-coded data FF is always escaped, so the marker cannot
/// appear there by accident.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(256)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn classify(e: image::ImageError) -> DecodeError {
    match e {
        image::ImageError::Limits(l) => DecodeError::Limits(l.to_string()),
        image::ImageError::Unsupported(_) => DecodeError::UnknownFormat,
        other => DecodeError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use image::DynamicImage;

    /// Found by `make fuzz` (jpeg_reduced): panics inside zune-jpeg 0.5.15.
    #[test]
    fn a_panicking_decoder_is_a_corrupt_image() {
        let jpeg = include_bytes!("../../../../fuzz/corpus/decode/zune-jpeg-idct-panic.jpg");
        let reader = ImageReader::with_format(Cursor::new(&jpeg[..]), image::ImageFormat::Jpeg);
        match decode_full(reader, 40_000_000, None) {
            Err(DecodeError::Corrupt(_)) => {}
            other => panic!("expected a corrupt image, got {other:?}"),
        }
    }

    #[test]
    fn decode_rejects_truncated_and_oversized() {
        let mut png = Vec::new();
        DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3])))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(decode(&png, 1 << 20).unwrap().dimensions(), (64, 64));
        assert!(matches!(decode(&png, 100), Err(DecodeError::Limits(_))));
        assert!(matches!(
            decode(&png[..png.len() / 2], 1 << 20),
            Err(DecodeError::Corrupt(_))
        ));
        let mut jpeg = Vec::new();
        DynamicImage::ImageRgb8(RgbImage::from_pixel(256, 256, image::Rgb([9, 8, 7])))
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        assert!(decode(&jpeg, 1 << 20).is_ok());
        let err = decode(&jpeg[..jpeg.len() - 300], 1 << 20).unwrap_err();
        assert!(err.to_string().contains("truncated JPEG"), "{err}");
        assert!(matches!(
            decode(b"definitely not an image", 1 << 20),
            Err(DecodeError::UnknownFormat)
        ));
    }

    fn encode(img: DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    #[test]
    fn decodes_every_supported_format_to_rgb() {
        let rgb = RgbImage::from_fn(16, 8, |x, _| {
            if x < 8 {
                image::Rgb([250, 10, 10])
            } else {
                image::Rgb([10, 10, 250])
            }
        });
        let rgba = DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(rgb.clone()).to_rgba8());
        let gray16 = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(
            16,
            8,
            image::Luma([40_000u16]),
        ));
        let cases = [
            ("png rgba", encode(rgba.clone(), image::ImageFormat::Png)),
            ("png 16-bit gray", encode(gray16, image::ImageFormat::Png)),
            (
                "webp lossless",
                encode(rgba.clone(), image::ImageFormat::WebP),
            ),
            ("gif", encode(rgba.clone(), image::ImageFormat::Gif)),
            (
                "bmp",
                encode(
                    DynamicImage::ImageRgb8(rgb.clone()),
                    image::ImageFormat::Bmp,
                ),
            ),
            (
                "jpeg",
                encode(
                    DynamicImage::ImageRgb8(rgb.clone()),
                    image::ImageFormat::Jpeg,
                ),
            ),
        ];
        for (name, bytes) in cases {
            let img = decode(&bytes, 1 << 20).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(img.dimensions(), (16, 8), "{name}");
            let left = img.get_pixel(2, 4).0;
            if name.contains("gray") {
                // 40000/65535 of full scale, on every channel.
                assert!(
                    left.iter().all(|c| (*c as i32 - 156).abs() <= 1),
                    "{name}: {left:?}"
                );
            } else {
                assert!(left[0] > 200 && left[2] < 60, "{name}: left {left:?}");
                let right = img.get_pixel(13, 4).0;
                assert!(right[2] > 200 && right[0] < 60, "{name}: right {right:?}");
            }
        }
    }

    /// A JPEG with an EXIF APP1 segment declaring `orientation`.
    pub(crate) fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
        let jpeg = encode(
            DynamicImage::ImageRgb8(img.clone()),
            image::ImageFormat::Jpeg,
        );
        let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes());
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // padding + next IFD = 0
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn exif_orientation_is_applied() {
        // 16x8, red on the left half: rotated 90 degrees clockwise
        // (orientation 6) it becomes 8x16 with red on the top half.
        let img = RgbImage::from_fn(16, 8, |x, _| {
            if x < 8 {
                image::Rgb([250, 10, 10])
            } else {
                image::Rgb([10, 10, 250])
            }
        });
        let upright = decode(&jpeg_with_orientation(&img, 1), 1 << 20).unwrap();
        assert_eq!(upright.dimensions(), (16, 8));
        let rotated = decode(&jpeg_with_orientation(&img, 6), 1 << 20).unwrap();
        assert_eq!(rotated.dimensions(), (8, 16));
        assert!(
            rotated.get_pixel(4, 2).0[0] > 200,
            "{:?}",
            rotated.get_pixel(4, 2)
        );
        assert!(
            rotated.get_pixel(4, 13).0[2] > 200,
            "{:?}",
            rotated.get_pixel(4, 13)
        );
    }
}
