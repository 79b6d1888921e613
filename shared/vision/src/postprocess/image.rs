//! Image outputs as PNG: the answer of an image-to-image net, or a heatmap
//! with its peaks and its renderings for people.

use std::io::Cursor;

use image::{ExtendedColorType, ImageEncoder, RgbImage};
use inferq_core::manifest::OutputSpec;

use super::canvas::Canvas;
use super::heatmap;
use super::{Artifact, Interpreted, OutputError, Prediction, View};

/// Default peak threshold (fraction of the output range).
const PEAK_THRESHOLD: f32 = 0.5;

fn png(
    data: &[u8],
    width: u32,
    height: u32,
    color: ExtendedColorType,
) -> Result<Artifact, OutputError> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(Cursor::new(&mut bytes))
        .write_image(data, width, height, color)
        .map_err(|e| OutputError(format!("PNG encoding failed: {e}")))?;
    Ok(Artifact {
        content_type: "image/png",
        bytes,
    })
}

fn rgb_png(img: &RgbImage) -> Result<Artifact, OutputError> {
    png(
        img.as_raw(),
        img.width(),
        img.height(),
        ExtendedColorType::Rgb8,
    )
}

/// The result of an image model from its assembled output.
///
/// `to_source` maps a position given as fractions of the output's width
/// and height to the submitted image's pixels (for the peaks); `photo` is
/// the submitted image at the output's size when the model is
/// pixel-aligned with it, for the overlay view.
pub fn render(
    canvas: &Canvas,
    spec: &OutputSpec,
    to_source: impl Fn(f32, f32) -> (f32, f32),
    photo: Option<&RgbImage>,
) -> Result<Interpreted, OutputError> {
    let (w, h) = (canvas.width, canvas.height);
    let mut views = Vec::new();
    let mut peaks = Vec::new();
    let artifact = if canvas.channels == 1 {
        let map = spec.colormap.unwrap_or_default();
        views.push(View {
            name: "colormap",
            artifact: rgb_png(&heatmap::colorize(canvas, map))?,
        });
        if let Some(over) = photo.and_then(|p| heatmap::overlay(canvas, map, p)) {
            views.push(View {
                name: "overlay",
                artifact: rgb_png(&over)?,
            });
        }
        let threshold = spec.peak_threshold.unwrap_or(PEAK_THRESHOLD);
        peaks = heatmap::peaks(canvas, threshold, to_source);
        png(&canvas.data, w, h, ExtendedColorType::L8)?
    } else {
        png(&canvas.data, w, h, ExtendedColorType::Rgb8)?
    };
    Ok(Interpreted {
        prediction: Prediction::Image {
            width: w,
            height: h,
            content_type: artifact.content_type.into(),
            href: String::new(),
            views: views.iter().map(|v| v.name.to_string()).collect(),
            peaks,
        },
        artifact: Some(artifact),
        views,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postprocess::RawOutput;
    use inferq_core::manifest::Layout;

    fn spec(range: Option<[f32; 2]>, layout: Layout) -> OutputSpec {
        OutputSpec {
            name: Some("image".into()),
            range,
            layout: Some(layout),
            ..OutputSpec::default()
        }
    }

    fn to_png(out: &RawOutput, spec: &OutputSpec) -> Result<Interpreted, OutputError> {
        render(&Canvas::from_output(out, spec)?, spec, |x, y| (x, y), None)
    }

    #[test]
    fn maps_range_once_and_reads_layouts() {
        // 1x3x1x2 NCHW in [-1, 1]: pixel 0 = (-1, 0, 1), pixel 1 = (1, 1, -1).
        let out = RawOutput {
            name: "image".into(),
            shape: vec![1, 3, 1, 2],
            data: vec![-1.0, 1.0, 0.0, 1.0, 1.0, -1.0],
        };
        let done = to_png(&out, &spec(Some([-1.0, 1.0]), Layout::Nchw)).unwrap();
        assert!(matches!(
            done.prediction,
            Prediction::Image {
                width: 2,
                height: 1,
                ..
            }
        ));
        assert!(done.views.is_empty());
        let bytes = &done.artifact.unwrap().bytes;
        let img = image::load_from_memory(bytes).unwrap().to_rgb8();
        assert_eq!(img.get_pixel(0, 0).0, [0, 128, 255]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 0]);

        // The same picture as NHWC in [0, 1], out-of-range values clamped.
        let out = RawOutput {
            name: "image".into(),
            shape: vec![1, 1, 2, 3],
            data: vec![0.0, 0.5, 1.0, 2.0, 1.0, -3.0],
        };
        let done = to_png(&out, &spec(None, Layout::Nhwc)).unwrap();
        let img = image::load_from_memory(&done.artifact.unwrap().bytes)
            .unwrap()
            .to_rgb8();
        assert_eq!(img.get_pixel(0, 0).0, [0, 128, 255]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 0]);
    }

    #[test]
    fn one_channel_outputs_get_views_and_peaks() {
        let mut data = vec![0.0f32; 64];
        data[5 * 8 + 6] = 0.9;
        let out = RawOutput {
            name: "image".into(),
            shape: vec![1, 8, 8, 1],
            data,
        };
        let s = spec(None, Layout::Nhwc);
        let canvas = Canvas::from_output(&out, &s).unwrap();
        let photo = RgbImage::new(8, 8);
        let done = render(&canvas, &s, |x, y| (x * 16.0, y * 16.0), Some(&photo)).unwrap();
        let Prediction::Image { views, peaks, .. } = &done.prediction else {
            panic!("an image result")
        };
        assert_eq!(views, &["colormap", "overlay"]);
        assert_eq!(peaks.len(), 1);
        assert_eq!((peaks[0].x, peaks[0].y), (13.0, 11.0));
        let grey = image::load_from_memory(&done.artifact.unwrap().bytes).unwrap();
        assert_eq!(grey.color(), image::ColorType::L8);
        assert_eq!(grey.to_luma8().get_pixel(6, 5).0, [230]);
        let colored = image::load_from_memory(&done.views[0].artifact.bytes).unwrap();
        assert_eq!(colored.color(), image::ColorType::Rgb8);
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
