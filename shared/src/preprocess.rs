//! Decoding images and turning them into model input tensors.
//!
//! Runs on the worker's inference threads, never on the async runtime. Every
//! step is driven by the model manifest: resize mode, crop, filter, channel
//! order, normalisation, layout and dtype. Decoding honours EXIF orientation
//! (phones store portraits sideways) and runs under the `image` crate's
//! limits, so a hostile file cannot allocate more than the pixel budget allows
//! even if it slipped past the API's header check.

use std::io::Cursor;

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::manifest::{ColorOrder, Crop, DType, Filter, Layout, ModelManifest, ResizeMode};

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

/// Decodes to 8-bit RGB, applying EXIF orientation; at most `max_pixels`.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DecodeError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    match reader.format() {
        None => return Err(DecodeError::UnknownFormat),
        Some(image::ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
            return Err(DecodeError::Corrupt(
                "truncated JPEG: no end-of-image marker".into(),
            ));
        }
        Some(_) => {}
    }
    let side = max_pixels.min(u32::MAX as u64) as u32;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    // Room for the decoded image in its widest pixel type (16-bit RGBA, 8
    // bytes) plus the RGB8 copy, with slack for decoder buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(12).max(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(classify)?;
    let (w, h) = decoder.dimensions();
    if w as u64 * h as u64 > max_pixels {
        return Err(DecodeError::Limits(format!(
            "{w}x{h} is above {max_pixels} pixels"
        )));
    }
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(classify)?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img.into_rgb8())
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

fn filter_type(f: Filter) -> FilterType {
    match f {
        Filter::Nearest => FilterType::Nearest,
        Filter::Bilinear => FilterType::Triangle,
        Filter::Bicubic => FilterType::CatmullRom,
    }
}

/// Resizes/crops the image to the model's input size as the manifest says.
pub fn fit(img: &RgbImage, m: &ModelManifest) -> (RgbImage, Geometry) {
    let (tw, th) = (m.input.width, m.input.height);
    let (sw, sh) = img.dimensions();
    let p = &m.preprocess;
    let filter = filter_type(p.filter);
    match (p.resize, p.crop) {
        (ResizeMode::ShorterSide, Crop::Center) => {
            // Resizing the whole image and then cropping wastes work on pixels
            // that are thrown away; cropping the matching source region first
            // and resizing only that is equivalent up to sub-pixel rounding.
            let target = p.resize_to.unwrap_or(tw.min(th)) as f32;
            let s = target / sw.min(sh) as f32;
            let (rw, rh) = ((sw as f32 * s).round(), (sh as f32 * s).round());
            let cx = ((rw - tw as f32) / 2.0).floor().max(0.0) / s;
            let cy = ((rh - th as f32) / 2.0).floor().max(0.0) / s;
            let cw = (tw as f32 / s).min(sw as f32);
            let ch = (th as f32 / s).min(sh as f32);
            let (x0, y0) = (cx.round() as u32, cy.round() as u32);
            let w = (cw.round() as u32).clamp(1, sw - x0.min(sw - 1));
            let h = (ch.round() as u32).clamp(1, sh - y0.min(sh - 1));
            let region = imageops::crop_imm(img, x0, y0, w, h).to_image();
            let out = imageops::resize(&region, tw, th, filter);
            let geometry = Geometry {
                scale_x: w as f32 / tw as f32,
                scale_y: h as f32 / th as f32,
                offset_x: x0 as f32,
                offset_y: y0 as f32,
                source_width: sw,
                source_height: sh,
            };
            (out, geometry)
        }
        (ResizeMode::Letterbox, _) => {
            let s = (tw as f32 / sw as f32).min(th as f32 / sh as f32);
            let rw = ((sw as f32 * s).round() as u32).clamp(1, tw);
            let rh = ((sh as f32 * s).round() as u32).clamp(1, th);
            let resized = imageops::resize(img, rw, rh, filter);
            let v = p.pad_value;
            let mut canvas = RgbImage::from_pixel(tw, th, image::Rgb([v, v, v]));
            let (dx, dy) = ((tw - rw) / 2, (th - rh) / 2);
            imageops::replace(&mut canvas, &resized, dx as i64, dy as i64);
            let geometry = Geometry {
                scale_x: sw as f32 / rw as f32,
                scale_y: sh as f32 / rh as f32,
                offset_x: -(dx as f32) * sw as f32 / rw as f32,
                offset_y: -(dy as f32) * sh as f32 / rh as f32,
                source_width: sw,
                source_height: sh,
            };
            (canvas, geometry)
        }
        // Stretch, and shorter-side without a crop (which can only end in the
        // input size by stretching).
        _ => {
            let out = if (sw, sh) == (tw, th) {
                img.clone()
            } else {
                imageops::resize(img, tw, th, filter)
            };
            let geometry = Geometry {
                scale_x: sw as f32 / tw as f32,
                scale_y: sh as f32 / th as f32,
                offset_x: 0.0,
                offset_y: 0.0,
                source_width: sw,
                source_height: sh,
            };
            (out, geometry)
        }
    }
}

/// Lays out an image of exactly the input size as the model's tensor.
///
/// Float inputs get `(pixel - mean) / std`; integer inputs carry the raw
/// 0..255 values (mean and std do not apply to them).
pub fn to_tensor(img: &RgbImage, m: &ModelManifest) -> InputTensor {
    let (w, h) = (img.width() as usize, img.height() as usize);
    debug_assert_eq!((w as u32, h as u32), (m.input.width, m.input.height));
    let order: [usize; 3] = match m.input.color {
        ColorOrder::Rgb => [0, 1, 2],
        ColorOrder::Bgr => [2, 1, 0],
    };
    let shape = match m.input.layout {
        Layout::Nchw => [1, 3, h, w],
        Layout::Nhwc => [1, h, w, 3],
    };
    let plane = w * h;
    let index = |i: usize, c: usize| match m.input.layout {
        Layout::Nchw => c * plane + i,
        Layout::Nhwc => i * 3 + c,
    };
    let raw = img.as_raw();
    let data = match m.input.dtype {
        DType::Float32 => {
            let p = &m.preprocess;
            // Multiply by the reciprocal: one division per channel, not per pixel.
            let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / p.std[order[c]]);
            let shift: [f32; 3] = std::array::from_fn(|c| p.mean[order[c]]);
            let mut out = vec![0f32; plane * 3];
            for (i, px) in raw.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[index(i, c)] = (px[order[c]] as f32 - shift[c]) * scale[c];
                }
            }
            TensorData::F32(out)
        }
        DType::Uint8 => {
            let mut out = vec![0u8; plane * 3];
            for (i, px) in raw.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[index(i, c)] = px[order[c]];
                }
            }
            TensorData::U8(out)
        }
        DType::Int32 => {
            let mut out = vec![0i32; plane * 3];
            for (i, px) in raw.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[index(i, c)] = px[order[c]] as i32;
                }
            }
            TensorData::I32(out)
        }
    };
    InputTensor { shape, data }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest(extra_input: &str, preprocess: &str) -> ModelManifest {
        let text = format!(
            "kind = \"classification\"\n[input]\nname = \"x\"\nwidth = 2\nheight = 2\n{extra_input}\n\
             [preprocess]\n{preprocess}\n[output]\nname = \"y\"\n"
        );
        ModelManifest::parse(&text, Path::new("t.toml")).unwrap()
    }

    /// 2x2 image: red, green / blue, white.
    fn tiny() -> RgbImage {
        RgbImage::from_raw(2, 2, vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]).unwrap()
    }

    #[test]
    fn nchw_float_normalises_exactly() {
        let m = manifest(
            "dtype = \"float32\"\nlayout = \"nchw\"",
            "resize = \"stretch\"\nmean = [127.0, 127.0, 127.0]\nstd = [128.0, 128.0, 128.0]",
        );
        let t = to_tensor(&tiny(), &m);
        assert_eq!(t.shape, [1, 3, 2, 2]);
        let TensorData::F32(d) = t.data else {
            panic!("f32 expected")
        };
        let hi = (255.0 - 127.0) / 128.0; // 1.0
        let lo = -127.0 / 128.0; // -0.9921875
        #[rustfmt::skip]
        let expected = [
            hi, lo, lo, hi, // R plane
            lo, hi, lo, hi, // G plane
            lo, lo, hi, hi, // B plane
        ];
        assert_eq!(d, expected);
    }

    #[test]
    fn nhwc_int32_bgr_keeps_raw_values() {
        let m = manifest(
            "dtype = \"int32\"\nlayout = \"nhwc\"\ncolor = \"bgr\"",
            "resize = \"stretch\"",
        );
        let t = to_tensor(&tiny(), &m);
        assert_eq!(t.shape, [1, 2, 2, 3]);
        assert_eq!(
            t.data,
            TensorData::I32(vec![0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 255])
        );
    }

    #[test]
    fn shorter_side_center_crop_geometry() {
        let m = manifest(
            "dtype = \"uint8\"\nlayout = \"nchw\"",
            "resize = \"shorter_side\"\nresize_to = 4\ncrop = \"center\"\nfilter = \"nearest\"",
        );
        let img = RgbImage::from_pixel(16, 8, image::Rgb([10, 20, 30]));
        let (out, g) = fit(&img, &m);
        assert_eq!(out.dimensions(), (2, 2));
        assert!(out.pixels().all(|p| p.0 == [10, 20, 30]));
        // s = 4/8 = 0.5: resized 8x4, crop (3,1) -> source (6,2), 4x4 region.
        assert_eq!(
            g,
            Geometry {
                scale_x: 2.0,
                scale_y: 2.0,
                offset_x: 6.0,
                offset_y: 2.0,
                source_width: 16,
                source_height: 8,
            }
        );
    }

    #[test]
    fn letterbox_pads_the_short_axis() {
        let m = manifest(
            "dtype = \"uint8\"\nlayout = \"nhwc\"",
            "resize = \"letterbox\"\nfilter = \"nearest\"\npad_value = 7",
        );
        let img = RgbImage::from_pixel(4, 2, image::Rgb([200, 200, 200]));
        let (out, _) = fit(&img, &m);
        // 4x2 -> 2x1 placed at row 0 (dy = 0), row 1 padded.
        assert_eq!(out.get_pixel(0, 0).0, [200, 200, 200]);
        assert_eq!(out.get_pixel(1, 1).0, [7, 7, 7]);
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
    fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
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
