//! PNG decoded row by row straight into one 8-bit RGB image.
//!
//! Through `image`, a 16-bit RGBA PNG is decoded whole at 8 bytes per
//! pixel and then copied to RGB: 11 bytes per pixel at the peak, 440 MB
//! for 40 megapixels. Here the `png` crate expands palettes and low bit
//! depths (`Transformations::EXPAND`), hands out one row at a time, and
//! each row is converted (16 → 8 bits rounded, alpha dropped, grey spread
//! to RGB) into the final image: the only full-size allocation is the RGB
//! result, 3 bytes per pixel. Interlaced (Adam7) images arrive as pass
//! rows, which are converted the same way and scattered into place.
//!
//! The EXIF orientation of an `eXIf` chunk before the image data is
//! reported, not applied (see [`super::orient`]).

use std::io::Cursor;

use image::RgbImage;
use image::metadata::Orientation;

use super::budget::MemoryBudget;
use super::decoded::{DecodeError, Decoded, check_pixels};
use super::pixels::row_to_rgb8;

/// Bytes the `png` crate may allocate for itself (chunks, row buffers):
/// its own default. A row wider than this allows is refused as a limit.
const PNG_OWN_LIMIT: usize = 64 << 20;

fn corrupt(e: png::DecodingError) -> DecodeError {
    match e {
        png::DecodingError::LimitsExceeded => {
            DecodeError::Limits("PNG rows or metadata above the decoder's limit".into())
        }
        other => DecodeError::Corrupt(other.to_string()),
    }
}

/// Decodes a PNG (its first frame) to RGB8, taking the image's bytes from
/// `budget` before allocating them.
pub(super) fn decode(
    bytes: &[u8],
    max_pixels: u64,
    budget: Option<&std::sync::Arc<MemoryBudget>>,
) -> Result<Decoded, DecodeError> {
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits {
            bytes: PNG_OWN_LIMIT,
        },
    );
    decoder.set_transformations(png::Transformations::EXPAND);
    let header = decoder.read_header_info().map_err(corrupt)?;
    let (w, h) = (header.width, header.height);
    check_pixels(w, h, max_pixels)?;
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let orientation = reader
        .info()
        .exif_metadata
        .as_deref()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let (color, depth) = reader.output_color_type();
    let channels = color.samples();
    let sixteen = depth == png::BitDepth::Sixteen;
    let len = w as usize * h as usize * 3;
    let permit = budget.map(|b| b.acquire(len as u64));
    let mut rgb = Vec::new();
    rgb.try_reserve_exact(len)
        .map_err(|_| DecodeError::Limits(format!("cannot allocate {len} bytes for {w}x{h}")))?;
    rgb.resize(len, 0);
    let stride = w as usize * 3;
    let mut line = Vec::new();
    let mut y = 0usize;
    while let Some(row) = reader.next_interlaced_row().map_err(corrupt)? {
        match row.interlace() {
            png::InterlaceInfo::Null(_) => {
                let Some(dst) = rgb.get_mut(y * stride..(y + 1) * stride) else {
                    return Err(DecodeError::Corrupt(
                        "PNG has more rows than its header".into(),
                    ));
                };
                row_to_rgb8(row.data(), channels, sixteen, dst);
                y += 1;
            }
            png::InterlaceInfo::Adam7(info) => {
                let samples = row.data().len() / (channels * if sixteen { 2 } else { 1 });
                line.clear();
                line.resize(samples * 3, 0);
                row_to_rgb8(row.data(), channels, sixteen, &mut line);
                png::expand_interlaced_row(&mut rgb, stride, &line, info, 24);
            }
        }
    }
    let image = RgbImage::from_raw(w, h, rgb).expect("sized from the header");
    Ok(Decoded::new(image, (w, h), orientation, permit))
}
