//! Pixel-type conversion to 8-bit RGB inside the buffer the decoder wrote.
//!
//! `image`'s `into_rgb8()` allocates a second image; a 40-megapixel 16-bit
//! RGBA decode (320 MB) plus its RGB copy (120 MB) is what made two uploads
//! take a worker past 1 GiB. Here every pixel type is converted where it
//! lies: types wider than RGB8 are compacted front to back (pixel `i` is
//! written at `3i`, never past what is still to be read), narrower ones
//! (grey, grey + alpha) are expanded back to front in the same vector.
//! Alpha is dropped, as `into_rgb8` does. 16-bit samples are rounded the
//! way `image` rounds them (`(v + 128) / 257`).

use image::ColorType;

use super::decoded::DecodeError;

/// 16-bit sample to 8 bits, rounded (as the `image` crate does).
pub(crate) fn to8(v: u16) -> u8 {
    ((v as u32 + 128) / 257) as u8
}

/// Converts `buf`, holding `pixels` pixels of `color` as the `image`
/// decoders write them (native-endian samples), to RGB8 in place; `buf`
/// ends up exactly `pixels * 3` bytes long.
pub(crate) fn to_rgb8_in_place(
    buf: &mut Vec<u8>,
    color: ColorType,
    pixels: usize,
) -> Result<(), DecodeError> {
    let bpp = color.bytes_per_pixel() as usize;
    if buf.len() < pixels * bpp {
        return Err(DecodeError::Corrupt(
            "decoder wrote fewer pixels than its header says".into(),
        ));
    }
    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    let f32_at = |b: &[u8], i: usize| f32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let from_f32 = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    match color {
        ColorType::Rgb8 => {}
        // Narrower than RGB: grow, then fill from the back.
        ColorType::L8 | ColorType::La8 | ColorType::L16 => {
            buf.resize(pixels * 3, 0);
            for i in (0..pixels).rev() {
                let v = match color {
                    ColorType::L16 => to8(u16_at(buf, i * 2)),
                    _ => buf[i * bpp],
                };
                buf[i * 3..i * 3 + 3].fill(v);
            }
        }
        // Wider: compact from the front.
        ColorType::Rgba8 => {
            for i in 0..pixels {
                buf.copy_within(i * 4..i * 4 + 3, i * 3);
            }
        }
        ColorType::La16 => {
            for i in 0..pixels {
                let v = to8(u16_at(buf, i * 4));
                buf[i * 3..i * 3 + 3].fill(v);
            }
        }
        ColorType::Rgb16 | ColorType::Rgba16 => {
            for i in 0..pixels {
                let rgb = [0, 1, 2].map(|c| to8(u16_at(buf, i * bpp + c * 2)));
                buf[i * 3..i * 3 + 3].copy_from_slice(&rgb);
            }
        }
        ColorType::Rgb32F | ColorType::Rgba32F => {
            for i in 0..pixels {
                let rgb = [0, 1, 2].map(|c| from_f32(f32_at(buf, i * bpp + c * 4)));
                buf[i * 3..i * 3 + 3].copy_from_slice(&rgb);
            }
        }
        other => {
            return Err(DecodeError::Corrupt(format!(
                "unsupported pixel type {other:?}"
            )));
        }
    }
    buf.truncate(pixels * 3);
    Ok(())
}

/// Converts one decoded row of `channels` samples per pixel (1 grey,
/// 2 grey + alpha, 3 RGB, 4 RGBA), 8-bit or big-endian 16-bit (as PNG
/// stores them), into an RGB8 row.
pub(crate) fn row_to_rgb8(src: &[u8], channels: usize, sixteen: bool, dst: &mut [u8]) {
    let width = if sixteen { 2 } else { 1 };
    let sample = |px: &[u8], c: usize| {
        if sixteen {
            to8(u16::from_be_bytes([px[c * 2], px[c * 2 + 1]]))
        } else {
            px[c]
        }
    };
    for (px, out) in src
        .chunks_exact(channels * width)
        .zip(dst.chunks_exact_mut(3))
    {
        if channels >= 3 {
            out.copy_from_slice(&[sample(px, 0), sample(px, 1), sample(px, 2)]);
        } else {
            out.fill(sample(px, 0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::DynamicImage;

    /// Every pixel type converts in place to what `into_rgb8` gives.
    #[test]
    fn in_place_conversion_matches_into_rgb8() {
        let base = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(7, 5, |x, y| {
            image::Rgb([
                (x * 9000) as u16,
                (y * 13_000 + 127) as u16,
                (65_535 - x * y * 1500) as u16,
            ])
        });
        let base = DynamicImage::ImageRgb16(base);
        let variants = [
            DynamicImage::ImageRgb8(base.to_rgb8()),
            DynamicImage::ImageRgba8(base.to_rgba8()),
            DynamicImage::ImageLuma8(base.to_luma8()),
            DynamicImage::ImageLumaA8(base.to_luma_alpha8()),
            DynamicImage::ImageLuma16(base.to_luma16()),
            DynamicImage::ImageLumaA16(base.to_luma_alpha16()),
            base.clone(),
            DynamicImage::ImageRgba16(base.to_rgba16()),
            DynamicImage::ImageRgb32F(base.to_rgb32f()),
            DynamicImage::ImageRgba32F(base.to_rgba32f()),
        ];
        for img in variants {
            let color = img.color();
            let want = img.to_rgb8();
            let mut buf = img.as_bytes().to_vec();
            to_rgb8_in_place(&mut buf, color, 35).unwrap();
            assert_eq!(buf, want.into_raw(), "{color:?}");
        }
    }

    #[test]
    fn sixteen_bit_rounds_to_the_nearest_eight_bit_value() {
        assert_eq!(to8(0), 0);
        assert_eq!(to8(65_535), 255);
        assert_eq!(to8(257 * 100), 100);
        assert_eq!(to8(40_000), 156); // 155.6
        assert_eq!(to8(0x7FFF), 127); // 127.498
        assert_eq!(to8(0x8080), 128);
        let row = [0x9C, 0x40, 0x00, 0x00, 0xFF, 0xFF, 0x12, 0x34]; // 40000, 0, 65535, alpha
        let mut out = [0u8; 3];
        row_to_rgb8(&row, 4, true, &mut out);
        assert_eq!(out, [156, 0, 255]);
        let mut grey = [0u8; 6];
        row_to_rgb8(&[10, 99, 20, 99], 2, false, &mut grey);
        assert_eq!(grey, [10, 10, 10, 20, 20, 20]);
    }
}
