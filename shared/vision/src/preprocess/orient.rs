//! EXIF orientation without a second copy of the image.
//!
//! Phones store portraits sideways and say so in EXIF. Rotating a
//! 40-megapixel decode the usual way allocates a second full image; here
//! the decoded image stays as stored and the orientation is applied where
//! it is cheap:
//! - for models fed at a fixed size, the stored image is cropped/resized to
//!   the input size *with the axes swapped* when the orientation transposes
//!   them, the small result is turned upright ([`orient_small`]), and the
//!   [`super::Geometry`] is composed so model pixels still map to pixels of
//!   the image as displayed ([`compose`]); resizing and centre-cropping
//!   commute with flips and quarter turns, up to sub-pixel rounding;
//! - where the whole upright image is needed (models fed at the image's own
//!   size, [`super::decode`]), it is turned in place ([`apply_in_place`]):
//!   flips swap pixels, quarter turns are an in-place transpose by cycle
//!   following (one bit of bookkeeping per pixel) followed by a flip.

use image::RgbImage;
use image::metadata::Orientation;

/// Whether the orientation swaps width and height.
pub(crate) fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// The upright size of a stored `size`.
pub(crate) fn upright_size(o: Orientation, size: (u32, u32)) -> (u32, u32) {
    if swaps_axes(o) {
        (size.1, size.0)
    } else {
        size
    }
}

/// Maps a point of the stored image (`size` = its width and height) to the
/// upright image. Works on continuous coordinates (`w - x` flips the edges
/// of a `w` wide box) and, with `size` reduced by one, on pixel indices.
fn to_upright<T>(o: Orientation, size: (T, T), p: (T, T)) -> (T, T)
where
    T: Copy + std::ops::Sub<Output = T>,
{
    let ((w, h), (x, y)) = (size, p);
    match o {
        Orientation::NoTransforms => (x, y),
        Orientation::FlipHorizontal => (w - x, y),
        Orientation::Rotate180 => (w - x, h - y),
        Orientation::FlipVertical => (x, h - y),
        Orientation::Rotate90FlipH => (y, x),
        Orientation::Rotate90 => (h - y, x),
        Orientation::Rotate270FlipH => (h - y, w - x),
        Orientation::Rotate270 => (y, w - x),
    }
}

/// The inverse of [`to_upright`]: an upright point back to the stored image
/// (`size` is the stored size).
fn to_stored(o: Orientation, size: (f32, f32), p: (f32, f32)) -> (f32, f32) {
    let ((w, h), (u, v)) = (size, p);
    match o {
        Orientation::NoTransforms => (u, v),
        Orientation::FlipHorizontal => (w - u, v),
        Orientation::Rotate180 => (w - u, h - v),
        Orientation::FlipVertical => (u, h - v),
        Orientation::Rotate90FlipH => (v, u),
        Orientation::Rotate90 => (v, h - u),
        Orientation::Rotate270FlipH => (w - v, h - u),
        Orientation::Rotate270 => (w - v, u),
    }
}

/// Turns a small RGB image (`size` as stored) upright into `out` (resized
/// to fit).
pub(crate) fn orient_small(src: &[u8], size: (u32, u32), o: Orientation, out: &mut Vec<u8>) {
    let (w, h) = size;
    let (uw, _) = upright_size(o, size);
    out.clear();
    out.resize(src.len(), 0);
    let last = (w.saturating_sub(1), h.saturating_sub(1));
    for y in 0..h {
        for x in 0..w {
            let (u, v) = to_upright(o, last, (x, y));
            let from = (y as usize * w as usize + x as usize) * 3;
            let to = (v as usize * uw as usize + u as usize) * 3;
            out[to..to + 3].copy_from_slice(&src[from..from + 3]);
        }
    }
}

/// The mapping of an upright model pixel to the upright full-size image,
/// given how the stored image was fitted.
///
/// `fitted` is the size the stored image was fitted to (the model's input
/// size, axes swapped if `o` swaps them); `to_stored_source` maps a point
/// of that stored-orientation model input to the full-size stored image,
/// whose size is `stored`. Every orientation maps each axis to one axis, so
/// the composition is again a scale and an offset per axis: evaluating it
/// at (0, 0) and (1, 1) gives both.
pub(crate) fn compose(
    o: Orientation,
    fitted: (u32, u32),
    stored: (u32, u32),
    to_stored_source: impl Fn(f32, f32) -> (f32, f32),
) -> ((f32, f32), (f32, f32)) {
    let fitted = (fitted.0 as f32, fitted.1 as f32);
    let stored = (stored.0 as f32, stored.1 as f32);
    let map = |mx: f32, my: f32| {
        let (a, b) = to_stored(o, fitted, (mx, my));
        let s = to_stored_source(a, b);
        to_upright(o, stored, s)
    };
    let (x0, y0) = map(0.0, 0.0);
    let (x1, y1) = map(1.0, 1.0);
    ((x0, y0), (x1 - x0, y1 - y0))
}

/// Turns a full-size image upright in its own buffer.
pub(crate) fn apply_in_place(img: RgbImage, o: Orientation) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut raw = img.into_raw();
    let (w, h) = match o {
        Orientation::NoTransforms => (w, h),
        Orientation::FlipHorizontal => {
            flip_h(&mut raw, w);
            (w, h)
        }
        Orientation::FlipVertical => {
            flip_v(&mut raw, w);
            (w, h)
        }
        Orientation::Rotate180 => {
            reverse_pixels(&mut raw);
            (w, h)
        }
        // A transpose, then: nothing (5), a horizontal flip (6: a quarter
        // turn clockwise), a half turn (7), a vertical flip (8).
        _ => {
            transpose(&mut raw, w, h);
            match o {
                Orientation::Rotate90 => flip_h(&mut raw, h),
                Orientation::Rotate270FlipH => reverse_pixels(&mut raw),
                Orientation::Rotate270 => flip_v(&mut raw, h),
                _ => {}
            }
            (h, w)
        }
    };
    RgbImage::from_raw(w, h, raw).expect("orientation keeps the pixel count")
}

fn flip_h(raw: &mut [u8], w: u32) {
    for row in raw.chunks_exact_mut(w as usize * 3) {
        reverse_pixels(row);
    }
}

fn flip_v(raw: &mut [u8], w: u32) {
    let stride = w as usize * 3;
    let rows = raw.len() / stride.max(1);
    for y in 0..rows / 2 {
        let (top, bottom) = raw.split_at_mut((rows - 1 - y) * stride);
        top[y * stride..(y + 1) * stride].swap_with_slice(&mut bottom[..stride]);
    }
}

fn reverse_pixels(raw: &mut [u8]) {
    let n = raw.len() / 3;
    for i in 0..n / 2 {
        let j = n - 1 - i;
        for c in 0..3 {
            raw.swap(i * 3 + c, j * 3 + c);
        }
    }
}

/// Transposes an `h`-row, `w`-column image of 3-byte pixels in place: the
/// pixel at index `p` (row-major) moves to `p * h mod (n - 1)`; each cycle
/// of that permutation is walked once, a bitset marking the visited ones.
fn transpose(raw: &mut [u8], w: u32, h: u32) {
    let n = w as u64 * h as u64;
    if w <= 1 || h <= 1 {
        return; // a single row or column: the bytes are already in order
    }
    let mut visited = vec![0u64; n.div_ceil(64) as usize];
    let get = |raw: &[u8], i: u64| -> [u8; 3] {
        let at = i as usize * 3;
        [raw[at], raw[at + 1], raw[at + 2]]
    };
    for start in 1..n - 1 {
        if visited[(start / 64) as usize] & (1 << (start % 64)) != 0 {
            continue;
        }
        let mut p = start;
        let mut carry = get(raw, p);
        loop {
            let q = p * h as u64 % (n - 1);
            let displaced = get(raw, q);
            raw[q as usize * 3..q as usize * 3 + 3].copy_from_slice(&carry);
            visited[(q / 64) as usize] |= 1 << (q % 64);
            carry = displaced;
            p = q;
            if p == start {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::DynamicImage;

    pub(super) const ALL: [Orientation; 8] = [
        Orientation::NoTransforms,
        Orientation::FlipHorizontal,
        Orientation::Rotate180,
        Orientation::FlipVertical,
        Orientation::Rotate90FlipH,
        Orientation::Rotate90,
        Orientation::Rotate270FlipH,
        Orientation::Rotate270,
    ];

    fn numbered(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([x as u8, y as u8, (x * 7 + y) as u8])
        })
    }

    /// The `image` crate's own (copying) orientation, as the reference.
    fn reference(img: &RgbImage, o: Orientation) -> RgbImage {
        let mut d = DynamicImage::ImageRgb8(img.clone());
        d.apply_orientation(o);
        d.into_rgb8()
    }

    #[test]
    fn in_place_and_small_orientation_match_the_image_crate() {
        for (w, h) in [(5, 3), (3, 5), (1, 4), (4, 1), (6, 6), (17, 9)] {
            let img = numbered(w, h);
            for o in ALL {
                let want = reference(&img, o);
                assert_eq!(apply_in_place(img.clone(), o), want, "{o:?} {w}x{h}");
                let mut out = Vec::new();
                orient_small(img.as_raw(), (w, h), o, &mut out);
                assert_eq!(out, want.as_raw().clone(), "small {o:?} {w}x{h}");
                assert_eq!(upright_size(o, (w, h)), want.dimensions());
            }
        }
    }

    #[test]
    fn composed_geometry_follows_each_pixel() {
        // Identity fit (model input = the stored image): every upright model
        // pixel centre must land on the centre of the same upright pixel.
        let (w, h) = (5u32, 3u32);
        for o in ALL {
            let ((ox, oy), (sx, sy)) = compose(o, (w, h), (w, h), |a, b| (a, b));
            assert!(sx > 0.0 && sy > 0.0, "{o:?}");
            let (uw, uh) = upright_size(o, (w, h));
            for v in 0..uh {
                for u in 0..uw {
                    let (x, y) = (ox + (u as f32 + 0.5) * sx, oy + (v as f32 + 0.5) * sy);
                    assert_eq!((x - 0.5, y - 0.5), (u as f32, v as f32), "{o:?}");
                }
            }
        }
    }
}
