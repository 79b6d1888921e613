//! Output tensors that are images, encoded as PNG.
//!
//! The manifest declares the value range of the output (e.g. `[-1, 1]` for a
//! tanh generator); it is mapped onto 0..255 exactly once, here.

use std::io::Cursor;

use super::{Artifact, OutputError, Prediction, RawOutput};
use inferq_core::manifest::{ColorOrder, Layout, OutputSpec};

/// Encodes a `[1, C, H, W]` or `[1, H, W, C]` tensor (C = 1 or 3) as PNG.
pub(super) fn to_png(
    out: &RawOutput,
    spec: &OutputSpec,
) -> Result<(Prediction, Artifact), OutputError> {
    let dims: Vec<usize> = out
        .shape
        .iter()
        .map(|d| usize::try_from(*d).map_err(|_| OutputError(format!("bad dimension {d}"))))
        .collect::<Result<_, _>>()?;
    let dims: &[usize] = match dims.as_slice() {
        [1, rest @ ..] if rest.len() == 3 => rest,
        [_, _, _] => &dims,
        _ => {
            return Err(OutputError(format!(
                "image output has shape {:?}",
                out.shape
            )));
        }
    };
    let layout = spec.layout.unwrap_or(Layout::Nchw);
    let (c, h, w) = match layout {
        Layout::Nchw => (dims[0], dims[1], dims[2]),
        Layout::Nhwc => (dims[2], dims[0], dims[1]),
    };
    if !(c == 1 || c == 3) || h == 0 || w == 0 || c * h * w != out.data.len() {
        return Err(OutputError(format!(
            "image output {:?} is not 1 or 3 channels of {} values",
            out.shape,
            out.data.len()
        )));
    }
    let [lo, hi] = spec.range.unwrap_or([0.0, 1.0]);
    let scale = 255.0 / (hi - lo);
    let to_u8 = |v: f32| ((v - lo) * scale).round().clamp(0.0, 255.0) as u8;
    let at = |ch: usize, y: usize, x: usize| match layout {
        Layout::Nchw => out.data[(ch * h + y) * w + x],
        Layout::Nhwc => out.data[(y * w + x) * c + ch],
    };
    let bgr = spec.color == Some(ColorOrder::Bgr);
    let mut png = Vec::new();
    let encoded = if c == 1 {
        let img = image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
            image::Luma([to_u8(at(0, y as usize, x as usize))])
        });
        img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
    } else {
        let img = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let px = |ch| to_u8(at(ch, y as usize, x as usize));
            if bgr {
                image::Rgb([px(2), px(1), px(0)])
            } else {
                image::Rgb([px(0), px(1), px(2)])
            }
        });
        img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
    };
    encoded.map_err(|e| OutputError(format!("PNG encoding failed: {e}")))?;
    let prediction = Prediction::Image {
        width: w as u32,
        height: h as u32,
        content_type: "image/png".into(),
        href: String::new(),
    };
    Ok((
        prediction,
        Artifact {
            content_type: "image/png",
            bytes: png,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(range: Option<[f32; 2]>, layout: Layout) -> OutputSpec {
        OutputSpec {
            name: Some("image".into()),
            range,
            layout: Some(layout),
            ..OutputSpec::default()
        }
    }

    #[test]
    fn maps_range_once_and_reads_layouts() {
        // 1x3x1x2 NCHW in [-1, 1]: pixel 0 = (-1, 0, 1), pixel 1 = (1, 1, -1).
        let out = RawOutput {
            name: "image".into(),
            shape: vec![1, 3, 1, 2],
            data: vec![-1.0, 1.0, 0.0, 1.0, 1.0, -1.0],
        };
        let (p, art) = to_png(&out, &spec(Some([-1.0, 1.0]), Layout::Nchw)).unwrap();
        assert!(matches!(
            p,
            Prediction::Image {
                width: 2,
                height: 1,
                ..
            }
        ));
        let img = image::load_from_memory(&art.bytes).unwrap().to_rgb8();
        assert_eq!(img.get_pixel(0, 0).0, [0, 128, 255]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 0]);

        // The same picture as NHWC in [0, 1], out-of-range values clamped.
        let out = RawOutput {
            name: "image".into(),
            shape: vec![1, 1, 2, 3],
            data: vec![0.0, 0.5, 1.0, 2.0, 1.0, -3.0],
        };
        let (_, art) = to_png(&out, &spec(None, Layout::Nhwc)).unwrap();
        let img = image::load_from_memory(&art.bytes).unwrap().to_rgb8();
        assert_eq!(img.get_pixel(0, 0).0, [0, 128, 255]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 0]);
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let out = RawOutput {
            name: "image".into(),
            shape: vec![1, 2, 2, 2],
            data: vec![0.0; 8],
        };
        assert!(to_png(&out, &spec(None, Layout::Nchw)).is_err());
    }
}
