//! The output image of an image model, assembled in 8-bit pixels.
//!
//! A model's output tensor (float, either layout, in its declared value
//! range) is mapped onto 0..255 exactly once, here, as it is copied into a
//! canvas: the whole output for a model run once, or tile by tile for a
//! model run on pieces of a large image. Keeping 8 bits rather than floats
//! makes a x2 upscale of a 12-megapixel photo 144 MB instead of 576.

use inferq_core::manifest::{ColorOrder, Layout, OutputSpec};

use super::{OutputError, RawOutput};

/// An 8-bit image of 1 or 3 interleaved channels (RGB order).
#[derive(Debug, Clone, PartialEq)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

/// An output tensor read as `channels` planes of `height` x `width`.
struct Planes<'a> {
    out: &'a RawOutput,
    layout: Layout,
    channels: usize,
    height: usize,
    width: usize,
}

impl<'a> Planes<'a> {
    fn new(out: &'a RawOutput, spec: &OutputSpec) -> Result<Self, OutputError> {
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
        let (channels, height, width) = match layout {
            Layout::Nchw => (dims[0], dims[1], dims[2]),
            Layout::Nhwc => (dims[2], dims[0], dims[1]),
        };
        let wanted = spec.channels.map(usize::from);
        if !(channels == 1 || channels == 3)
            || wanted.is_some_and(|c| c != channels)
            || height == 0
            || width == 0
            || channels * height * width != out.data.len()
        {
            return Err(OutputError(format!(
                "image output {:?} is not {} channels of {} values",
                out.shape,
                wanted.map_or("1 or 3".to_string(), |c| c.to_string()),
                out.data.len()
            )));
        }
        Ok(Planes {
            out,
            layout,
            channels,
            height,
            width,
        })
    }

    fn at(&self, ch: usize, y: usize, x: usize) -> f32 {
        let (h, w, c) = (self.height, self.width, self.channels);
        match self.layout {
            Layout::Nchw => self.out.data[(ch * h + y) * w + x],
            Layout::Nhwc => self.out.data[(y * w + x) * c + ch],
        }
    }
}

/// Maps the declared range onto 0..255, clamping what lies outside.
fn quantizer(spec: &OutputSpec) -> impl Fn(f32) -> u8 {
    let [lo, hi] = spec.range.unwrap_or([0.0, 1.0]);
    let scale = 255.0 / (hi - lo);
    move |v: f32| ((v - lo) * scale).round().clamp(0.0, 255.0) as u8
}

impl Canvas {
    /// Width, height and channels of an output tensor, checked against the
    /// manifest the way [`Canvas::from_output`] would read it.
    pub fn dimensions(out: &RawOutput, spec: &OutputSpec) -> Result<(u32, u32, u8), OutputError> {
        let p = Planes::new(out, spec)?;
        Ok((p.width as u32, p.height as u32, p.channels as u8))
    }

    /// A black canvas.
    pub fn new(width: u32, height: u32, channels: u8) -> Self {
        Canvas {
            width,
            height,
            channels,
            data: vec![0; width as usize * height as usize * channels as usize],
        }
    }

    /// The whole output tensor as a canvas.
    pub fn from_output(out: &RawOutput, spec: &OutputSpec) -> Result<Self, OutputError> {
        let planes = Planes::new(out, spec)?;
        let mut canvas = Canvas::new(
            planes.width as u32,
            planes.height as u32,
            planes.channels as u8,
        );
        canvas.copy(&planes, spec, (0, 0), (planes.width, planes.height), (0, 0));
        Ok(canvas)
    }

    /// Copies the `size` block at `from` of a tile's output tensor to `to`
    /// on this canvas (all in output pixels).
    pub fn paste(
        &mut self,
        out: &RawOutput,
        spec: &OutputSpec,
        from: (u32, u32),
        size: (u32, u32),
        to: (u32, u32),
    ) -> Result<(), OutputError> {
        let planes = Planes::new(out, spec)?;
        let fits = |a: u32, len: u32, limit: usize| (a + len) as usize <= limit;
        if planes.channels != self.channels as usize
            || !fits(from.0, size.0, planes.width)
            || !fits(from.1, size.1, planes.height)
            || !fits(to.0, size.0, self.width as usize)
            || !fits(to.1, size.1, self.height as usize)
        {
            return Err(OutputError(format!(
                "tile output {:?} does not hold the expected {}x{} block at {from:?}",
                out.shape, size.0, size.1
            )));
        }
        let cast = |p: (u32, u32)| (p.0 as usize, p.1 as usize);
        self.copy(&planes, spec, cast(from), cast(size), cast(to));
        Ok(())
    }

    fn copy(
        &mut self,
        planes: &Planes<'_>,
        spec: &OutputSpec,
        from: (usize, usize),
        size: (usize, usize),
        to: (usize, usize),
    ) {
        let q = quantizer(spec);
        let c = planes.channels;
        // A BGR network's output is stored in RGB order.
        let order: [usize; 3] = if spec.color == Some(ColorOrder::Bgr) {
            [2, 1, 0]
        } else {
            [0, 1, 2]
        };
        let stride = self.width as usize * c;
        for y in 0..size.1 {
            let row = (to.1 + y) * stride + to.0 * c;
            for x in 0..size.0 {
                for (ch, src) in order.iter().take(c).enumerate() {
                    let src = if c == 1 { 0 } else { *src };
                    self.data[row + x * c + ch] = q(planes.at(src, from.1 + y, from.0 + x));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(layout: Layout) -> OutputSpec {
        OutputSpec {
            name: Some("y".into()),
            layout: Some(layout),
            ..OutputSpec::default()
        }
    }

    #[test]
    fn pastes_a_block_of_a_tile() {
        // 1x4x4x1 NHWC tile output with values (10 * y + x) / 255.
        let data = (0..16)
            .map(|i| ((i / 4) * 10 + i % 4) as f32 / 255.0)
            .collect();
        let out = RawOutput {
            name: "y".into(),
            shape: vec![1, 4, 4, 1],
            data,
        };
        let mut canvas = Canvas::new(3, 3, 1);
        canvas
            .paste(&out, &spec(Layout::Nhwc), (1, 2), (2, 2), (1, 0))
            .unwrap();
        assert_eq!(canvas.data, [0, 21, 22, 0, 31, 32, 0, 0, 0]);
        // Blocks outside the tile or the canvas are errors, not panics.
        let s = spec(Layout::Nhwc);
        assert!(canvas.paste(&out, &s, (3, 0), (2, 1), (0, 0)).is_err());
        assert!(canvas.paste(&out, &s, (0, 0), (2, 2), (2, 2)).is_err());
    }

    #[test]
    fn declared_channels_are_checked() {
        let out = RawOutput {
            name: "y".into(),
            shape: vec![1, 3, 2, 2],
            data: vec![0.0; 12],
        };
        let mut s = spec(Layout::Nchw);
        assert_eq!(Canvas::from_output(&out, &s).unwrap().channels, 3);
        s.channels = Some(1);
        assert!(Canvas::from_output(&out, &s).is_err());
    }
}
