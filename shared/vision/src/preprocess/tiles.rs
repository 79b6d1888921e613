//! Cutting an image into tiles for a model fed at the image's own size.
//!
//! A super-resolution or heatmap net is fully convolutional: it takes any
//! size, but its activations grow with the pixels it is fed (RDN x2 needs
//! about 7 KB per input pixel, so a 1024x768 photo whole takes 5.9 GB).
//! Fed tile by tile, memory depends on the tile. Each tile is run with
//! `overlap` pixels of real image context around it where the image has
//! them, and only the tile's own part of the output is kept, so a net
//! whose receptive field fits in the overlap gives the same pixels as the
//! whole image would.

use image::RgbImage;

use super::{InputTensor, Preprocessor, tensor};
use inferq_core::manifest::{ModelManifest, TilingSpec};

/// A rectangle in input pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// One tile: the part of the output it owns, and the larger part of the
/// input it is run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub own: Rect,
    pub context: Rect,
}

/// The tiles that cover a `width` x `height` image, row by row. Without
/// tiling, or when the image fits in one tile, the one tile is the image.
pub fn plan(width: u32, height: u32, tiling: Option<TilingSpec>) -> Vec<Tile> {
    let whole = Rect {
        x: 0,
        y: 0,
        width,
        height,
    };
    let Some(t) = tiling.filter(|t| width > t.tile || height > t.tile) else {
        return vec![Tile {
            own: whole,
            context: whole,
        }];
    };
    let span = |start: u32, len: u32, total: u32| {
        let lo = start.saturating_sub(t.overlap);
        let hi = (start + len + t.overlap).min(total);
        (lo, hi - lo)
    };
    let mut tiles = Vec::new();
    for y in (0..height).step_by(t.tile as usize) {
        for x in (0..width).step_by(t.tile as usize) {
            let (w, h) = (t.tile.min(width - x), t.tile.min(height - y));
            let (cx, cw) = span(x, w, width);
            let (cy, ch) = span(y, h, height);
            tiles.push(Tile {
                own: Rect {
                    x,
                    y,
                    width: w,
                    height: h,
                },
                context: Rect {
                    x: cx,
                    y: cy,
                    width: cw,
                    height: ch,
                },
            });
        }
    }
    tiles
}

/// `len` rounded up to a multiple of `k` (the sides a network with strided
/// layers accepts).
pub fn padded(len: u32, k: Option<u32>) -> u32 {
    match k {
        Some(k) if k > 1 => len.div_ceil(k) * k,
        _ => len,
    }
}

impl Preprocessor {
    /// Lays out `region` of `img` as the model's input tensor at its own
    /// size, padded on the right and bottom to the manifest's
    /// `size_multiple` by repeating the edge pixels.
    pub fn prepare_region(
        &mut self,
        img: &RgbImage,
        region: Rect,
        m: &ModelManifest,
    ) -> &InputTensor {
        let k = m.input.size_multiple;
        let (pw, ph) = (padded(region.width, k), padded(region.height, k));
        let stride = img.width() as usize * 3;
        let raw = img.as_raw();
        self.fitted.clear();
        self.fitted.reserve(pw as usize * ph as usize * 3);
        for row in 0..ph {
            let y = (region.y + row.min(region.height - 1)) as usize;
            let start = y * stride + region.x as usize * 3;
            let line = &raw[start..start + region.width as usize * 3];
            self.fitted.extend_from_slice(line);
            let last = &line[line.len() - 3..];
            for _ in region.width..pw {
                self.fitted.extend_from_slice(last);
            }
        }
        tensor::fill_sized(&self.fitted, (pw, ph), m, &mut self.tensor);
        &self.tensor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_images_are_one_tile() {
        let t = Some(TilingSpec {
            tile: 128,
            overlap: 12,
        });
        let tiles = plan(100, 128, t);
        assert_eq!(tiles.len(), 1);
        assert_eq!(tiles[0].own, tiles[0].context);
        assert_eq!(plan(5000, 3000, None).len(), 1);
    }

    #[test]
    fn tiles_cover_the_image_once_with_clamped_context() {
        let t = Some(TilingSpec {
            tile: 100,
            overlap: 10,
        });
        let (w, h) = (250, 120);
        let tiles = plan(w, h, t);
        assert_eq!(tiles.len(), 3 * 2);
        let mut covered = vec![0u8; (w * h) as usize];
        for tile in &tiles {
            let (o, c) = (tile.own, tile.context);
            assert!(c.x <= o.x && c.y <= o.y);
            assert!(c.x + c.width >= o.x + o.width && c.y + c.height >= o.y + o.height);
            assert!(c.x + c.width <= w && c.y + c.height <= h);
            assert!(c.width <= o.width + 20 && c.height <= o.height + 20);
            for y in o.y..o.y + o.height {
                for x in o.x..o.x + o.width {
                    covered[(y * w + x) as usize] += 1;
                }
            }
        }
        assert!(covered.iter().all(|c| *c == 1));
        // The middle tile of the top row has context on both sides.
        assert_eq!(tiles[1].context.x, 90);
        assert_eq!(tiles[1].context.width, 120);
        // The last column is narrower and clamped at the border.
        assert_eq!(tiles[2].own.width, 50);
        assert_eq!(tiles[2].context.x + tiles[2].context.width, 250);
    }

    #[test]
    fn regions_are_padded_to_the_size_multiple_with_edge_pixels() {
        let m = crate::preprocess::test_manifest::manifest(
            "dtype = \"float32\"\nlayout = \"nhwc\"\nsize_multiple = 2",
            "resize = \"stretch\"",
        );
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut prep = Preprocessor::new();
        let region = Rect {
            x: 1,
            y: 1,
            width: 3,
            height: 1,
        };
        let t = prep.prepare_region(&img, region, &m);
        assert_eq!(t.shape, [1, 2, 4, 3]);
        let crate::preprocess::TensorData::F32(v) = &t.data else {
            panic!("float input")
        };
        let xs: Vec<f32> = v.chunks(3).map(|p| p[0]).collect();
        let ys: Vec<f32> = v.chunks(3).map(|p| p[1]).collect();
        assert_eq!(xs, [1.0, 2.0, 3.0, 3.0, 1.0, 2.0, 3.0, 3.0]);
        assert_eq!(ys, [1.0; 8]);
    }
}
