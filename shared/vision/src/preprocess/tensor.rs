//! Laying out a model-size RGB image as the model's input tensor.
//!
//! One pass over the pixels per layout and dtype, written as straight loops
//! over split output planes so the compiler vectorises them; the output
//! vector is reused (cleared and refilled, never shrunk), so a steady stream
//! of jobs for one model allocates nothing here.

use super::{InputTensor, TensorData};
use inferq_core::manifest::{ColorOrder, DType, Layout, ModelManifest};

/// Fills `out` from `raw` (RGB8, exactly the manifest's input size).
pub(super) fn fill(raw: &[u8], m: &ModelManifest, out: &mut InputTensor) {
    fill_sized(raw, (m.input.width, m.input.height), m, out);
}

/// [`fill`] for an image of any size (a model fed at the image's own size).
pub(super) fn fill_sized(raw: &[u8], size: (u32, u32), m: &ModelManifest, out: &mut InputTensor) {
    let (w, h) = (size.0 as usize, size.1 as usize);
    debug_assert_eq!(raw.len(), w * h * 3);
    let order: [usize; 3] = match m.input.color {
        ColorOrder::Rgb => [0, 1, 2],
        ColorOrder::Bgr => [2, 1, 0],
    };
    out.shape = match m.input.layout {
        Layout::Nchw => [1, 3, h, w],
        Layout::Nhwc => [1, h, w, 3],
    };
    let layout = m.input.layout;
    match m.input.dtype {
        DType::Float32 => {
            let p = &m.preprocess;
            // Multiply by the reciprocal: one division per channel, not per pixel.
            let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / p.std[order[c]]);
            let shift: [f32; 3] = std::array::from_fn(|c| p.mean[order[c]]);
            let data = reuse_f32(&mut out.data, raw.len());
            lay_out(raw, order, layout, data, |c, v| {
                (v as f32 - shift[c]) * scale[c]
            });
        }
        DType::Uint8 => {
            let data = reuse(&mut out.data, raw.len(), |d| match d {
                TensorData::U8(v) => Some(v),
                _ => None,
            });
            lay_out(raw, order, layout, data, |_, v| v);
        }
        DType::Int32 => {
            let data = reuse(&mut out.data, raw.len(), |d| match d {
                TensorData::I32(v) => Some(v),
                _ => None,
            });
            lay_out(raw, order, layout, data, |_, v| v as i32);
        }
    }
}

fn reuse_f32(data: &mut TensorData, len: usize) -> &mut [f32] {
    reuse(data, len, |d| match d {
        TensorData::F32(v) => Some(v),
        _ => None,
    })
}

/// The vector of the wanted variant, sized `len`, reusing its allocation
/// when `data` already is that variant.
fn reuse<T: Default + Clone>(
    data: &mut TensorData,
    len: usize,
    pick: impl Fn(&mut TensorData) -> Option<&mut Vec<T>>,
) -> &mut [T]
where
    Vec<T>: Into<TensorData>,
{
    if pick(data).is_none() {
        *data = Vec::<T>::new().into();
    }
    let v = pick(data).expect("variant set above");
    v.clear();
    v.resize(len, T::default());
    v.as_mut_slice()
}

impl From<Vec<f32>> for TensorData {
    fn from(v: Vec<f32>) -> Self {
        TensorData::F32(v)
    }
}

impl From<Vec<u8>> for TensorData {
    fn from(v: Vec<u8>) -> Self {
        TensorData::U8(v)
    }
}

impl From<Vec<i32>> for TensorData {
    fn from(v: Vec<i32>) -> Self {
        TensorData::I32(v)
    }
}

/// Writes `convert(channel, value)` of every pixel in the wanted layout and
/// channel order. `out.len() == raw.len()`.
fn lay_out<T: Copy>(
    raw: &[u8],
    order: [usize; 3],
    layout: Layout,
    out: &mut [T],
    convert: impl Fn(usize, u8) -> T,
) {
    match layout {
        Layout::Nchw => {
            let plane = raw.len() / 3;
            let (p0, rest) = out.split_at_mut(plane);
            let (p1, p2) = rest.split_at_mut(plane);
            for (((px, a), b), c) in raw.chunks_exact(3).zip(p0).zip(p1).zip(p2) {
                *a = convert(0, px[order[0]]);
                *b = convert(1, px[order[1]]);
                *c = convert(2, px[order[2]]);
            }
        }
        Layout::Nhwc => {
            for (px, o) in raw.chunks_exact(3).zip(out.chunks_exact_mut(3)) {
                o[0] = convert(0, px[order[0]]);
                o[1] = convert(1, px[order[1]]);
                o[2] = convert(2, px[order[2]]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_manifest::manifest;
    use super::super::to_tensor;
    use super::*;
    use image::RgbImage;

    /// 2x2 image: red, green / blue, white.
    fn tiny() -> RgbImage {
        RgbImage::from_raw(2, 2, vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]).unwrap()
    }

    #[test]
    fn byte_len_counts_the_shape_in_the_dtype() {
        let pre = "resize = \"stretch\"\nmean = [0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0]";
        let f32_in = to_tensor(&tiny(), &manifest("dtype = \"float32\"", pre));
        assert_eq!(f32_in.shape, [1, 3, 2, 2]);
        assert_eq!(f32_in.byte_len(), 12 * 4);
        let int_in = to_tensor(&tiny(), &manifest("dtype = \"int32\"", pre));
        assert_eq!(int_in.byte_len(), 12 * 4);
        let u8_in = to_tensor(&tiny(), &manifest("dtype = \"uint8\"", pre));
        assert_eq!(u8_in.byte_len(), 12);
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
    fn nchw_uint8_bgr_planes() {
        let m = manifest(
            "dtype = \"uint8\"\nlayout = \"nchw\"\ncolor = \"bgr\"",
            "resize = \"stretch\"",
        );
        let t = to_tensor(&tiny(), &m);
        #[rustfmt::skip]
        let expected = vec![
            0, 0, 255, 255,   // B plane
            0, 255, 0, 255,   // G plane
            255, 0, 0, 255,   // R plane
        ];
        assert_eq!(t.data, TensorData::U8(expected));
    }

    #[test]
    fn the_buffer_is_reused_and_switches_dtype() {
        let f = manifest("dtype = \"float32\"", "resize = \"stretch\"");
        let u = manifest("dtype = \"uint8\"", "resize = \"stretch\"");
        let raw = tiny().into_raw();
        let mut t = InputTensor {
            shape: [0; 4],
            data: TensorData::F32(Vec::with_capacity(64)),
        };
        fill(&raw, &f, &mut t);
        let TensorData::F32(v) = &t.data else {
            panic!("f32")
        };
        let (ptr, cap) = (v.as_ptr(), v.capacity());
        fill(&raw, &f, &mut t);
        let TensorData::F32(v) = &t.data else {
            panic!("f32")
        };
        assert_eq!((v.as_ptr(), v.capacity()), (ptr, cap), "reallocated");
        fill(&raw, &u, &mut t);
        assert!(matches!(&t.data, TensorData::U8(v) if v.len() == 12));
    }
}
