//! One-channel outputs (heatmaps): their peaks, and colour renderings for
//! people.
//!
//! The grey PNG is the answer a program reads; a colour map makes the same
//! values visible to a person, and an overlay shows them where they are on
//! the photo. The peaks are what most heatmap clients want in the end (the
//! brightest spot, the joint, the defect), so the worker computes them once
//! instead of every client decoding the PNG.

use image::RgbImage;
use inferq_core::manifest::Colormap;
use inferq_core::prediction::Peak;

use super::canvas::Canvas;

/// Most peaks a result lists.
pub const MAX_PEAKS: usize = 16;

/// Inferno at nine evenly spaced points (0, 1/8, ..., 1), linearly
/// interpolated between them: within a few levels of the full table.
const INFERNO: [[u8; 3]; 9] = [
    [0, 0, 4],
    [31, 12, 72],
    [85, 15, 109],
    [136, 34, 106],
    [186, 54, 85],
    [227, 89, 51],
    [249, 140, 10],
    [249, 201, 50],
    [252, 255, 164],
];

/// The colour of grey level `v` under `map`.
pub(super) fn color(map: Colormap, v: u8) -> [u8; 3] {
    match map {
        Colormap::Gray => [v; 3],
        Colormap::Inferno => {
            let t = v as u32 * 8;
            let (i, f) = ((t / 255) as usize, t % 255);
            let (a, b) = (INFERNO[i], INFERNO[(i + 1).min(8)]);
            std::array::from_fn(|c| ((a[c] as u32 * (255 - f) + b[c] as u32 * f + 127) / 255) as u8)
        }
    }
}

/// The heatmap through a colour map.
pub(super) fn colorize(heat: &Canvas, map: Colormap) -> RgbImage {
    let lut: Vec<[u8; 3]> = (0..=255).map(|v| color(map, v)).collect();
    let mut img = RgbImage::new(heat.width, heat.height);
    for (px, v) in img.pixels_mut().zip(&heat.data) {
        px.0 = lut[*v as usize];
    }
    img
}

/// The coloured heatmap over `photo` (same size): each pixel is blended in
/// proportion to its heat, so cold areas show the photo and hot ones the
/// map; at least a fifth of the photo always shows through.
pub(super) fn overlay(heat: &Canvas, map: Colormap, photo: &RgbImage) -> Option<RgbImage> {
    if photo.dimensions() != (heat.width, heat.height) || heat.channels != 1 {
        return None;
    }
    let lut: Vec<[u8; 3]> = (0..=255).map(|v| color(map, v)).collect();
    let mut img = photo.clone();
    for (px, v) in img.pixels_mut().zip(&heat.data) {
        let a = (*v as u32 * 4) / 5;
        let c = lut[*v as usize];
        for (p, c) in px.0.iter_mut().zip(c) {
            *p = ((*p as u32 * (255 - a) + c as u32 * a + 127) / 255) as u8;
        }
    }
    Some(img)
}

/// Running maximum over a window of `2r + 1` along rows (`horizontal`) or
/// columns: one pass of a separable dilation.
fn dilate(src: &[u8], w: usize, h: usize, r: usize, horizontal: bool) -> Vec<u8> {
    let mut out = vec![0u8; src.len()];
    let (lines, len) = if horizontal { (h, w) } else { (w, h) };
    let idx = |line: usize, i: usize| {
        if horizontal {
            line * w + i
        } else {
            i * w + line
        }
    };
    for line in 0..lines {
        for i in 0..len {
            let (lo, hi) = (i.saturating_sub(r), (i + r).min(len - 1));
            out[idx(line, i)] = (lo..=hi).map(|j| src[idx(line, j)]).max().unwrap_or(0);
        }
    }
    out
}

/// Local maxima of `heat` at or above `threshold` (a fraction of the
/// range), strongest first, at most [`MAX_PEAKS`], no two closer than the
/// suppression radius (1/32 of the shorter side, 2..16 pixels). A flat top
/// (pixels of one value, joined) is one peak at its centre. `to_source`
/// maps a position given as fractions of the heatmap's width and height to
/// the submitted image's pixels.
pub(super) fn peaks(
    heat: &Canvas,
    threshold: f32,
    to_source: impl Fn(f32, f32) -> (f32, f32),
) -> Vec<Peak> {
    if heat.channels != 1 || heat.data.is_empty() {
        return Vec::new();
    }
    let (w, h) = (heat.width as usize, heat.height as usize);
    let r = (w.min(h) / 32).clamp(2, 16);
    let level = (threshold * 255.0).ceil().clamp(1.0, 255.0) as u8;
    let max = dilate(&dilate(&heat.data, w, h, r, true), w, h, r, false);
    // Pixels that are the maximum of their neighbourhood, grouped into
    // joined regions of equal value: (value, centre x, centre y).
    let mut is_max: Vec<bool> = heat
        .data
        .iter()
        .zip(&max)
        .map(|(v, m)| *v >= level && v == m)
        .collect();
    let mut regions: Vec<(u8, f32, f32)> = Vec::new();
    let mut stack = Vec::new();
    for start in 0..is_max.len() {
        if !is_max[start] {
            continue;
        }
        let v = heat.data[start];
        is_max[start] = false;
        stack.push(start);
        let (mut n, mut sx, mut sy) = (0usize, 0usize, 0usize);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            n += 1;
            sx += x;
            sy += y;
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let j = ny * w + nx;
                    if is_max[j] && heat.data[j] == v {
                        is_max[j] = false;
                        stack.push(j);
                    }
                }
            }
        }
        regions.push((v, sx as f32 / n as f32, sy as f32 / n as f32));
    }
    regions.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut kept: Vec<(f32, f32, u8)> = Vec::new();
    let r = r as f32;
    for (v, x, y) in regions {
        let near = kept
            .iter()
            .any(|(kx, ky, _)| (kx - x).abs() <= r && (ky - y).abs() <= r);
        if !near {
            kept.push((x, y, v));
            if kept.len() == MAX_PEAKS {
                break;
            }
        }
    }
    kept.into_iter()
        .map(|(x, y, v)| {
            let (sx, sy) = to_source((x + 0.5) / w as f32, (y + 0.5) / h as f32);
            Peak {
                x: sx,
                y: sy,
                value: v as f32 / 255.0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(w: u32, h: u32, spots: &[(f32, f32, f32)]) -> Canvas {
        let mut c = Canvas::new(w, h, 1);
        for y in 0..h {
            for x in 0..w {
                let v = spots
                    .iter()
                    .map(|(cx, cy, peak)| {
                        let d2 = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2);
                        peak * (-d2 / 50.0).exp()
                    })
                    .fold(0.0f32, f32::max);
                c.data[(y * w + x) as usize] = (v * 255.0) as u8;
            }
        }
        c
    }

    #[test]
    fn finds_each_blob_strongest_first_in_source_pixels() {
        let heat = blobs(
            200,
            100,
            &[(40.0, 30.0, 0.7), (150.0, 70.0, 0.95), (100.0, 10.0, 0.3)],
        );
        // The source image was twice the heatmap's size.
        let found = peaks(&heat, 0.5, |fx, fy| (fx * 400.0, fy * 200.0));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!((found[0].x - 301.0).abs() <= 2.0 && (found[0].y - 141.0).abs() <= 2.0);
        assert!((found[0].value - 0.95).abs() < 0.01);
        assert!((found[1].x - 81.0).abs() <= 2.0 && (found[1].y - 61.0).abs() <= 2.0);
        // A flat plateau is one peak, not one per pixel.
        let flat = Canvas {
            width: 50,
            height: 50,
            channels: 1,
            data: vec![200; 2500],
        };
        let one = peaks(&flat, 0.5, |x, y| (x * 50.0, y * 50.0));
        assert_eq!(one.len(), 1, "{one:?}");
        assert_eq!((one[0].x, one[0].y), (25.0, 25.0));
        assert!(peaks(&flat, 0.9, |x, y| (x, y)).is_empty());
    }

    #[test]
    fn colour_map_runs_dark_to_light_and_overlay_keeps_cold_pixels() {
        assert_eq!(color(Colormap::Inferno, 0), INFERNO[0]);
        assert_eq!(color(Colormap::Inferno, 255), INFERNO[8]);
        assert_eq!(color(Colormap::Gray, 77), [77; 3]);
        let luma = |c: [u8; 3]| 299 * c[0] as u32 + 587 * c[1] as u32 + 114 * c[2] as u32;
        let ramp: Vec<u32> = (0..=255)
            .step_by(32)
            .map(|v| luma(color(Colormap::Inferno, v as u8)))
            .collect();
        assert!(ramp.windows(2).all(|p| p[0] < p[1]), "{ramp:?}");
        let heat = Canvas {
            width: 2,
            height: 1,
            channels: 1,
            data: vec![0, 255],
        };
        let photo = RgbImage::from_pixel(2, 1, image::Rgb([10, 200, 30]));
        let over = overlay(&heat, Colormap::Inferno, &photo).unwrap();
        assert_eq!(over.get_pixel(0, 0).0, [10, 200, 30]);
        assert_ne!(over.get_pixel(1, 0).0, [10, 200, 30]);
        assert!(overlay(&heat, Colormap::Inferno, &RgbImage::new(3, 1)).is_none());
    }
}
