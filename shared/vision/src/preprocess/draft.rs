//! Reduced-scale ("draft") JPEG decoding, in the DCT.
//!
//! A JPEG stores 8×8 blocks of frequencies; decoding at 1/2, 1/4 or 1/8
//! scale runs a 4×4, 2×2 or 1×1 inverse transform per block instead of
//! 8×8 and produces a smaller image directly, the way libjpeg's
//! `scale_denom` (Pillow's `draft`) does. Models see 224 or 256 pixels, so
//! a photo of several megapixels loses nothing they could use, and decodes
//! several times faster. The `jpeg-decoder` crate implements the scaling;
//! full-size decoding stays with the `image` crate (zune-jpeg, faster at
//! scale 1).
//!
//! Only baseline/progressive 8-bit RGB and greyscale JPEGs take this path;
//! anything else (CMYK, 16-bit lossless) answers `None` and is decoded at
//! full size by the caller.

use std::sync::Arc;

use image::RgbImage;
use image::metadata::Orientation;

use super::budget::MemoryBudget;
use super::decoded::{DecodeError, Decoded, check_pixels};

/// Decodes `bytes` (a complete JPEG) at the scale `draft(width, height)`
/// allows, or answers `None` when that is 1 or the JPEG is of a kind this
/// path does not handle. The (small) decoded size is taken from `budget`
/// before decoding; the EXIF orientation is reported, not applied.
pub(super) fn decode(
    bytes: &[u8],
    max_pixels: u64,
    draft: &dyn Fn(u32, u32) -> u32,
    budget: Option<&Arc<MemoryBudget>>,
) -> Result<Option<Decoded>, DecodeError> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder
        .read_info()
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    let Some(info) = decoder.info() else {
        return Ok(None);
    };
    let (w, h) = (info.width as u32, info.height as u32);
    check_pixels(w, h, max_pixels)?;
    let denom = draft(w, h);
    let gray = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => false,
        jpeg_decoder::PixelFormat::L8 => true,
        _ => return Ok(None),
    };
    if !matches!(denom, 2 | 4 | 8) {
        return Ok(None);
    }
    let want = |side: u32| side.div_ceil(denom).clamp(1, u16::MAX as u32) as u16;
    let (dw, dh) = decoder
        .scale(want(w), want(h))
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    let (dw, dh) = (dw as u32, dh as u32);
    // jpeg-decoder picks the coarsest scale at which *either* side reaches
    // the request, so a side of a few pixels (whose request rounds up to
    // 1 at every scale) can leave the other side below what the model
    // needs (64x4 asked at 1/4 came out 8x1). Such images decode at full
    // size instead; their short side makes that cheap.
    if dw < want(w) as u32 || dh < want(h) as u32 {
        return Ok(None);
    }
    decoder.set_max_decoding_buffer_size((dw as usize * dh as usize * 3).max(1 << 20));
    let permit = budget.map(|b| b.acquire(dw as u64 * dh as u64 * 3));
    let pixels = decoder
        .decode()
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    let rgb = if gray {
        pixels.iter().flat_map(|&v| [v, v, v]).collect()
    } else {
        pixels
    };
    let image = RgbImage::from_raw(dw, dh, rgb)
        .ok_or_else(|| DecodeError::Corrupt("JPEG data shorter than its header says".into()))?;
    let orientation = decoder
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    Ok(Some(Decoded::new(image, (w, h), orientation, permit)))
}

/// The largest scale denominator (1, 2, 4 or 8) at which an image of
/// `source` pixels still gives the model at least `min_fraction` of the
/// resolution it needs, `needed` being the factor (model pixels per source
/// pixel) at which the source maps onto the input. EXIF rotation may swap
/// the axes, so both orientations are asked and the stricter one wins.
pub fn denominator(
    source: (u32, u32),
    min_fraction: f32,
    needed: impl Fn((u32, u32)) -> f32,
) -> u32 {
    if min_fraction.is_nan() || min_fraction <= 0.0 {
        return 1;
    }
    let need = needed(source).max(needed((source.1, source.0)));
    [8, 4, 2]
        .into_iter()
        .find(|&d| 1.0 / d as f32 >= need * min_fraction)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::super::decode::decode_with;
    use super::*;
    use image::DynamicImage;
    use std::io::Cursor;

    fn jpeg(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)));
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
            .unwrap();
        out
    }

    #[test]
    fn denominators_keep_the_needed_resolution() {
        // Needs 256 px on the shorter side.
        let shorter = |(w, h): (u32, u32)| 256.0 / w.min(h) as f32;
        assert_eq!(denominator((640, 480), 1.0, shorter), 1);
        // 240 of 256 px is 94%: allowed at 0.9, not at 1.0.
        assert_eq!(denominator((640, 480), 0.9, shorter), 2);
        assert_eq!(denominator((4032, 3024), 1.0, shorter), 8);
        assert_eq!(denominator((1600, 1200), 1.0, shorter), 4);
        assert_eq!(denominator((4032, 3024), 0.0, shorter), 1, "0 turns it off");
        // Stretch to 224x224 of a 2000x500 strip: the short axis decides,
        // and a rotation must not make it pick a scale that is too small.
        let stretch = |(w, h): (u32, u32)| (224.0 / w as f32).max(224.0 / h as f32);
        assert_eq!(denominator((2000, 500), 1.0, stretch), 2);
    }

    #[test]
    fn scaled_decode_matches_a_full_decode_shrunk() {
        // Smooth gradient: an 8x smaller decode must agree with the full one
        // at the corresponding pixels (up to JPEG error).
        let bytes = jpeg(512, 256, |x, y| [(x / 2) as u8, (y) as u8, 128]);
        let full = decode_with(&bytes, 1 << 24, |_, _| 1).unwrap();
        let small = decode_with(&bytes, 1 << 24, |_, _| 8).unwrap();
        assert_eq!(full.image.dimensions(), (512, 256));
        assert_eq!(small.image.dimensions(), (64, 32));
        assert_eq!((small.full_width, small.full_height), (512, 256));
        for (sx, sy) in [(4, 4), (40, 20), (60, 28)] {
            let a = small.image.get_pixel(sx, sy).0;
            let b = full.image.get_pixel(sx * 8 + 4, sy * 8 + 4).0;
            for c in 0..3 {
                assert!((a[c] as i32 - b[c] as i32).abs() <= 6, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn geometry_of_a_scaled_decode_refers_to_the_full_image() {
        let bytes = jpeg(512, 256, |x, _| [(x / 2) as u8, 0, 0]);
        let mut geometries = Vec::new();
        for draft in ["1.0", "0"] {
            let m = super::super::test_manifest::manifest(
                "dtype = \"uint8\"",
                &format!("resize = \"shorter_side\"\ncrop = \"center\"\njpeg_draft = {draft}"),
            );
            let mut prep = super::super::Preprocessor::new();
            let d = prep.decode(&bytes, 1 << 24, &m).unwrap();
            let expected = if draft == "0" { 512 } else { 64 };
            assert_eq!(d.image.width(), expected, "jpeg_draft {draft}");
            geometries.push(prep.prepare_decoded(&d, &m).1);
        }
        assert_eq!(geometries[0], geometries[1]);
        assert_eq!(geometries[0].offset_x, 128.0);
        assert_eq!(geometries[0].scale_x, 128.0);
        assert_eq!(geometries[0].source_width, 512);
    }

    #[test]
    fn exif_rotation_applies_to_scaled_decodes() {
        // 64x32, red on the left half; orientation 6 turns it 90 degrees
        // clockwise: 32x64 at full size, 4x8 at 1/8, red on top.
        let img = RgbImage::from_fn(64, 32, |x, _| {
            if x < 32 {
                image::Rgb([250, 10, 10])
            } else {
                image::Rgb([10, 10, 250])
            }
        });
        let bytes = super::super::decode::tests::jpeg_with_orientation(&img, 6);
        let d = decode_with(&bytes, 1 << 20, |_, _| 8).unwrap();
        assert_eq!(d.orientation, Orientation::Rotate90);
        assert_eq!(d.image.dimensions(), (8, 4), "as stored");
        let d = d.into_upright();
        assert_eq!(d.image.dimensions(), (4, 8));
        assert_eq!((d.full_width, d.full_height), (32, 64));
        assert!(d.image.get_pixel(2, 1).0[0] > 200, "{:?}", d.image);
        assert!(d.image.get_pixel(2, 6).0[2] > 200, "{:?}", d.image);
    }

    /// Found by the `jpeg_reduced` fuzz target: a side that rounds to one
    /// block at every scale let the decoder pick a coarser scale than asked.
    #[test]
    fn no_side_comes_out_below_the_requested_scale() {
        for (w, h, denom) in [(64, 4, 4), (4, 64, 4), (8, 4, 4), (40, 2, 2), (64, 64, 4)] {
            let bytes = jpeg(w, h, |x, y| [(x * 4) as u8, (y * 4) as u8, 90]);
            let d = decode_with(&bytes, 1 << 20, |_, _| denom).unwrap();
            let (dw, dh) = d.image.dimensions();
            assert!(
                dw >= w.div_ceil(denom) && dh >= h.div_ceil(denom),
                "{w}x{h} at 1/{denom} gave {dw}x{dh}"
            );
        }
    }

    #[test]
    fn grey_jpegs_come_out_as_rgb_and_limits_hold() {
        let img = image::GrayImage::from_pixel(256, 256, image::Luma([90]));
        let mut bytes = Vec::new();
        DynamicImage::ImageLuma8(img)
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
            .unwrap();
        let d = decode_with(&bytes, 1 << 20, |_, _| 2).unwrap();
        assert_eq!(d.image.dimensions(), (128, 128));
        assert!(
            d.image
                .pixels()
                .all(|p| p.0.iter().all(|&c| (c as i32 - 90).abs() <= 2))
        );
        // The pixel budget applies to the full size, not the scaled one.
        assert!(matches!(
            decode_with(&bytes, 256 * 255, |_, _| 8),
            Err(DecodeError::Limits(_))
        ));
    }
}
