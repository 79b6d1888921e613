//! Cropping and resizing a decoded image to the model's input size.
//!
//! Uses `fast_image_resize`: SIMD (AVX2/SSE4.1/NEON) separable convolution
//! whose kernel widens with the downscale factor, as Pillow's does, so a
//! large photo is averaged rather than sampled. For shorter-side resizing
//! with a centre crop only the source region that survives the crop is
//! resized (the crop is a window into the source, not a copy), which on a
//! 640×480 photo skips a quarter of the work.

use fast_image_resize as fr;
use image::RgbImage;

use super::Geometry;
use inferq_core::manifest::{Crop, Filter, ModelManifest, ResizeMode};

/// A resizer with its intermediate buffers, kept per thread.
pub(super) struct Resizer {
    inner: fr::Resizer,
    /// Letterbox: the resized image before it is placed on the canvas.
    scratch: Vec<u8>,
}

fn algorithm(f: Filter) -> fr::ResizeAlg {
    match f {
        Filter::Nearest => fr::ResizeAlg::Nearest,
        Filter::Bilinear => fr::ResizeAlg::Convolution(fr::FilterType::Bilinear),
        Filter::Bicubic => fr::ResizeAlg::Convolution(fr::FilterType::CatmullRom),
    }
}

/// A source window (left, top, width, height) in source pixels.
type Window = (u32, u32, u32, u32);

impl Resizer {
    pub(super) fn new() -> Self {
        Resizer {
            inner: fr::Resizer::new(),
            scratch: Vec::new(),
        }
    }

    /// Writes the `target`-size RGB image into `out` (resized to fit) and
    /// says where its pixels came from. `target` is the model's input size,
    /// or that size with the axes swapped when the image is stored sideways
    /// and is turned upright after fitting (see [`super::orient`]).
    pub(super) fn fit_into(
        &mut self,
        img: &RgbImage,
        m: &ModelManifest,
        target: (u32, u32),
        out: &mut Vec<u8>,
    ) -> Geometry {
        let (tw, th) = target;
        let (sw, sh) = img.dimensions();
        let p = &m.preprocess;
        let alg = algorithm(p.filter);
        match (p.resize, p.crop) {
            (ResizeMode::ShorterSide, Crop::Center) => {
                let (x0, y0, w, h) = center_window((sw, sh), (tw, th), p.resize_to);
                self.resize(img, (x0, y0, w, h), (tw, th), alg, out);
                Geometry {
                    scale_x: w as f32 / tw as f32,
                    scale_y: h as f32 / th as f32,
                    offset_x: x0 as f32,
                    offset_y: y0 as f32,
                    source_width: sw,
                    source_height: sh,
                }
            }
            (ResizeMode::Letterbox, _) => {
                let s = (tw as f32 / sw as f32).min(th as f32 / sh as f32);
                let rw = ((sw as f32 * s).round() as u32).clamp(1, tw);
                let rh = ((sh as f32 * s).round() as u32).clamp(1, th);
                let mut resized = std::mem::take(&mut self.scratch);
                self.resize(img, (0, 0, sw, sh), (rw, rh), alg, &mut resized);
                let (dx, dy) = ((tw - rw) / 2, (th - rh) / 2);
                paste(&resized, (rw, rh), out, (tw, th), (dx, dy), p.pad_value);
                self.scratch = resized;
                Geometry {
                    scale_x: sw as f32 / rw as f32,
                    scale_y: sh as f32 / rh as f32,
                    offset_x: -(dx as f32) * sw as f32 / rw as f32,
                    offset_y: -(dy as f32) * sh as f32 / rh as f32,
                    source_width: sw,
                    source_height: sh,
                }
            }
            // Stretch, and shorter-side without a crop (which can only end in
            // the input size by stretching).
            _ => {
                self.resize(img, (0, 0, sw, sh), (tw, th), alg, out);
                Geometry {
                    scale_x: sw as f32 / tw as f32,
                    scale_y: sh as f32 / th as f32,
                    offset_x: 0.0,
                    offset_y: 0.0,
                    source_width: sw,
                    source_height: sh,
                }
            }
        }
    }

    /// Resizes the `window` of `img` to `size` into `out` (resized to fit).
    fn resize(
        &mut self,
        img: &RgbImage,
        window: Window,
        size: (u32, u32),
        alg: fr::ResizeAlg,
        out: &mut Vec<u8>,
    ) {
        let (x0, y0, w, h) = window;
        out.clear();
        out.resize(size.0 as usize * size.1 as usize * 3, 0);
        if (w, h) == size {
            // Same size: a plain copy of the window's rows.
            let stride = img.width() as usize * 3;
            let raw = img.as_raw();
            for (row, dst) in out.chunks_exact_mut(w as usize * 3).enumerate() {
                let start = (y0 as usize + row) * stride + x0 as usize * 3;
                dst.copy_from_slice(&raw[start..start + dst.len()]);
            }
            return;
        }
        let (sw, sh) = img.dimensions();
        let src = fr::images::ImageRef::new(sw, sh, img.as_raw(), fr::PixelType::U8x3)
            .expect("an RgbImage buffer has width * height * 3 bytes");
        let mut dst = fr::images::Image::from_slice_u8(
            size.0,
            size.1,
            out.as_mut_slice(),
            fr::PixelType::U8x3,
        )
        .expect("sized above");
        let options = fr::ResizeOptions::new()
            .resize_alg(alg)
            .crop(x0 as f64, y0 as f64, w as f64, h as f64);
        self.inner
            .resize(&src, &mut dst, &options)
            .expect("same pixel type and non-empty images");
    }
}

/// Model pixels per source pixel at which an image of `source` size maps
/// onto the input (below 1 when the image is larger than needed).
pub(super) fn needed_scale(m: &ModelManifest, source: (u32, u32)) -> f32 {
    let (tw, th) = (m.input.width as f32, m.input.height as f32);
    let (sw, sh) = (source.0.max(1) as f32, source.1.max(1) as f32);
    let p = &m.preprocess;
    match (p.resize, p.crop) {
        (ResizeMode::ShorterSide, Crop::Center) => {
            p.resize_to.map_or(tw.min(th), |r| r as f32) / sw.min(sh)
        }
        (ResizeMode::Letterbox, _) => (tw / sw).min(th / sh),
        // Fed at its own size: every source pixel is needed (no draft decode).
        (ResizeMode::None, _) => 1.0,
        _ => (tw / sw).max(th / sh),
    }
}

/// The source window that a shorter-side resize to `resize_to` (default: the
/// smaller input side) followed by a centre crop keeps. Resizing the whole
/// image and then cropping wastes work on pixels that are thrown away;
/// resizing only this window is equivalent up to sub-pixel rounding.
fn center_window(source: (u32, u32), target: (u32, u32), resize_to: Option<u32>) -> Window {
    let ((sw, sh), (tw, th)) = (source, target);
    let t = resize_to.unwrap_or(tw.min(th)) as f32;
    let s = t / sw.min(sh) as f32;
    let (rw, rh) = ((sw as f32 * s).round(), (sh as f32 * s).round());
    let cx = ((rw - tw as f32) / 2.0).floor().max(0.0) / s;
    let cy = ((rh - th as f32) / 2.0).floor().max(0.0) / s;
    let cw = (tw as f32 / s).min(sw as f32);
    let ch = (th as f32 / s).min(sh as f32);
    let (x0, y0) = (cx.round() as u32, cy.round() as u32);
    let w = (cw.round() as u32).clamp(1, sw - x0.min(sw - 1));
    let h = (ch.round() as u32).clamp(1, sh - y0.min(sh - 1));
    (x0, y0, w, h)
}

/// Fills `canvas` (`size`, RGB) with `pad` and copies `img` (`img_size`)
/// into it at `at`.
fn paste(
    img: &[u8],
    img_size: (u32, u32),
    canvas: &mut Vec<u8>,
    size: (u32, u32),
    at: (u32, u32),
    pad: u8,
) {
    canvas.clear();
    canvas.resize(size.0 as usize * size.1 as usize * 3, pad);
    let row = img_size.0 as usize * 3;
    let stride = size.0 as usize * 3;
    for (y, src) in img.chunks_exact(row).enumerate() {
        let start = (at.1 as usize + y) * stride + at.0 as usize * 3;
        canvas[start..start + row].copy_from_slice(src);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_manifest::manifest;
    use super::super::{Geometry, fit};
    use image::RgbImage;

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
    fn the_crop_window_is_what_gets_resized() {
        // Left and right quarters differ from the middle; a centre crop of a
        // 4:1 image must see only the middle colour.
        let m = manifest(
            "dtype = \"uint8\"",
            "resize = \"shorter_side\"\ncrop = \"center\"\nfilter = \"bilinear\"",
        );
        let img = RgbImage::from_fn(64, 16, |x, _| {
            if (24..40).contains(&x) {
                image::Rgb([0, 200, 0])
            } else {
                image::Rgb([255, 0, 0])
            }
        });
        let (out, g) = fit(&img, &m);
        assert_eq!((g.offset_x, g.scale_x), (24.0, 8.0));
        // Mostly the middle colour (a wide kernel may blend in a little of
        // the neighbours, as resizing first and cropping after would).
        assert!(out.pixels().all(|p| p.0[1] > 150 && p.0[0] < 80), "{out:?}");
    }

    #[test]
    fn bilinear_downscale_averages() {
        // A 1-pixel checkerboard shrunk 8x is mid grey everywhere with an
        // averaging (antialiased) filter; point sampling would give 0 or 255.
        let m = manifest(
            "dtype = \"uint8\"",
            "resize = \"stretch\"\nfilter = \"bilinear\"",
        );
        let img = RgbImage::from_fn(16, 16, |x, y| {
            let v = if (x + y) % 2 == 0 { 255 } else { 0 };
            image::Rgb([v, v, v])
        });
        let (out, _) = fit(&img, &m);
        assert_eq!(out.dimensions(), (2, 2));
        assert!(
            out.pixels().all(|p| (p.0[0] as i32 - 128).abs() <= 8),
            "{out:?}"
        );
    }

    #[test]
    fn letterbox_pads_the_short_axis() {
        let m = manifest(
            "dtype = \"uint8\"\nlayout = \"nhwc\"",
            "resize = \"letterbox\"\nfilter = \"nearest\"\npad_value = 7",
        );
        let img = RgbImage::from_pixel(4, 2, image::Rgb([200, 200, 200]));
        let (out, g) = fit(&img, &m);
        // 4x2 -> 2x1 placed at row 0 (dy = 0), row 1 padded.
        assert_eq!(out.get_pixel(0, 0).0, [200, 200, 200]);
        assert_eq!(out.get_pixel(1, 1).0, [7, 7, 7]);
        assert_eq!((g.scale_x, g.offset_y), (2.0, 0.0));
    }

    #[test]
    fn same_size_is_a_copy() {
        let m = manifest("dtype = \"uint8\"", "resize = \"stretch\"");
        let img = RgbImage::from_raw(2, 2, (0..12).collect()).unwrap();
        let (out, _) = fit(&img, &m);
        assert_eq!(out, img);
    }
}
