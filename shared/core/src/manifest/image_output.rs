//! The parts of a manifest that only image-output models use: native-size
//! input (`resize = "none"`), tiling, output scale and channels, and how a
//! one-channel output (a heatmap) is rendered.
//!
//! Kept apart from the general manifest because its rules hang together:
//! a model fed at the image's own size cannot batch (every job has its own
//! size), tiles only make sense for such a model, and the colour map and
//! peaks only for a one-channel output.

use serde::{Deserialize, Serialize};

use super::{ModelKind, ModelManifest, ResizeMode};

/// `[tiling]`: how an image larger than one tile is run.
///
/// The input is cut into `tile` x `tile` pieces; each runs with `overlap`
/// extra pixels of real image context on every side where the image has
/// them, and only the tile's own part of the output is kept. Memory then
/// depends on the tile, not on the photo: the activations of a
/// super-resolution net grow with the square of the side it is fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TilingSpec {
    /// Side of a tile in input pixels.
    pub tile: u32,
    /// Context on each side of a tile, in input pixels; at least the
    /// model's receptive-field radius makes tiles seamless.
    #[serde(default)]
    pub overlap: u32,
}

/// Colour map for rendering a one-channel output for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Colormap {
    /// The grey values as they are.
    Gray,
    /// Black through red and orange to pale yellow; perceptually uniform
    /// and readable in grey print (matplotlib's "inferno").
    #[default]
    Inferno,
}

/// Largest output scale a manifest may declare.
pub(super) const MAX_OUTPUT_SCALE: u32 = 8;

impl ModelManifest {
    /// True when images are fed at their own size (`resize = "none"`).
    pub fn native_size(&self) -> bool {
        self.preprocess.resize == ResizeMode::None
    }

    /// Output pixels per input pixel along each axis (1 unless declared).
    pub fn output_scale(&self) -> u32 {
        self.output.scale.unwrap_or(1)
    }

    pub(super) fn validate_image_output(&self) -> Result<(), String> {
        let o = &self.output;
        if o.range
            .is_some_and(|[lo, hi]| !(hi > lo && lo.is_finite() && hi.is_finite()))
        {
            return Err("output.range must be [low, high] with high > low".into());
        }
        if o.scale
            .is_some_and(|s| !(1..=MAX_OUTPUT_SCALE).contains(&s))
        {
            return Err(format!(
                "output.scale must be within 1..={MAX_OUTPUT_SCALE}"
            ));
        }
        if o.channels.is_some_and(|c| c != 1 && c != 3) {
            return Err("output.channels must be 1 or 3".into());
        }
        let one_channel = o.channels == Some(1);
        if o.colormap.is_some() && !one_channel {
            return Err("output.colormap needs output.channels = 1".into());
        }
        if let Some(t) = o.peak_threshold {
            if !one_channel {
                return Err("output.peak_threshold needs output.channels = 1".into());
            }
            if !(0.0..=1.0).contains(&t) {
                return Err("output.peak_threshold must be within 0..=1".into());
            }
        }
        Ok(())
    }

    pub(super) fn validate_native(&self) -> Result<(), String> {
        if !self.native_size() {
            if self.tiling.is_some() {
                return Err("[tiling] needs preprocess.resize = \"none\"".into());
            }
            return Ok(());
        }
        if self.kind != ModelKind::Image {
            return Err(
                "preprocess.resize = \"none\" is for image models (pixel-aligned outputs)".into(),
            );
        }
        if self.batching.enabled() {
            return Err(
                "a resize = \"none\" model cannot batch: every image has its own size".into(),
            );
        }
        if let Some(t) = self.tiling {
            let side = self.input.width.min(self.input.height);
            if t.tile == 0 || t.tile > side {
                return Err(format!(
                    "tiling.tile {} must be within 1..={side} (the input size)",
                    t.tile
                ));
            }
            if t.overlap >= t.tile {
                return Err("tiling.overlap must be smaller than tiling.tile".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const ESRGAN: &str = include_str!("../../../../models/esrgan-psnr-small/1/model.toml");
    const HEATMAP: &str = include_str!("../../../../models/heatmap-bright/1/model.toml");

    fn parse(text: &str) -> Result<ModelManifest, String> {
        ModelManifest::parse(text, Path::new("m.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_shipped_image_manifests_parse() {
        let m = parse(ESRGAN).unwrap();
        assert!(m.native_size());
        assert_eq!(m.output_scale(), 2);
        assert_eq!(m.output.channels, Some(3));
        assert_eq!(
            m.tiling,
            Some(TilingSpec {
                tile: 128,
                overlap: 12
            })
        );
        let h = parse(HEATMAP).unwrap();
        assert_eq!(h.output.channels, Some(1));
        assert_eq!(h.output.colormap, Some(Colormap::Inferno));
        assert_eq!(h.output_scale(), 1);
    }

    #[test]
    fn native_size_rules() {
        let batching = format!("{HEATMAP}\n[batching]\nmax_batch = 4\n");
        assert!(parse(&batching).unwrap_err().contains("cannot batch"));
        let classifier = HEATMAP.replace("kind = \"image\"", "kind = \"classification\"");
        assert!(parse(&classifier).is_err());
        let big_tile = HEATMAP.replace("tile = 512", "tile = 1024");
        assert!(parse(&big_tile).unwrap_err().contains("tiling.tile"));
        let overlap = HEATMAP.replace("overlap = 9", "overlap = 512");
        assert!(parse(&overlap).unwrap_err().contains("overlap"));
        let resized = HEATMAP.replace("resize = \"none\"", "resize = \"stretch\"");
        assert!(parse(&resized).unwrap_err().contains("[tiling]"));
    }

    #[test]
    fn output_rules() {
        let scale = ESRGAN.replace("scale = 2", "scale = 9");
        assert!(parse(&scale).unwrap_err().contains("output.scale"));
        let channels = ESRGAN.replace("channels = 3", "channels = 2");
        assert!(parse(&channels).unwrap_err().contains("channels"));
        let colormap = ESRGAN.replace("channels = 3", "channels = 3\ncolormap = \"gray\"");
        assert!(parse(&colormap).unwrap_err().contains("colormap"));
        let peaks = HEATMAP.replace("scale = 1", "scale = 1\npeak_threshold = 1.5");
        assert!(parse(&peaks).unwrap_err().contains("peak_threshold"));
    }
}
