//! Fuzz harness bodies for the parsers in this crate, one function per
//! target of the `fuzz/` package.
//!
//! They live here, not in the fuzz package, so that the same code runs in
//! two places: under libFuzzer (`make fuzz`, feature `fuzzing`) and in the
//! ordinary unit tests below, which replay every committed seed-corpus file
//! and every crash input that was fixed. The fuzz package is built only with
//! instrumentation and is not part of `make test`; the corpus replay is.
//!
//! Each function must not panic for any input; beyond that it asserts the
//! properties that are cheap to check (sizes agree, round trips are exact).
//! A failed assertion is a finding, exactly like a crash.

use std::path::Path;
use std::sync::OnceLock;

use bytes::Bytes;
use image::metadata::Orientation;

use crate::preprocess::{self, TensorData};
use inferq_core::manifest::ModelManifest;
use inferq_core::message::JobMessage;
use inferq_core::sniff::{self, ImageFormat, SniffError};

/// Pixel limit of the `decode` target: small, so every execution stays in
/// the millisecond range and the fuzzer explores formats instead of waiting
/// for large images to decode.
pub const DECODE_MAX_PIXELS: u64 = 1 << 16;

/// `sniff`: header inspection never panics and agrees with itself.
pub fn sniff(data: &[u8]) {
    let small = 1 << 12;
    let unlimited = sniff::inspect(data, u64::MAX);
    let limited = sniff::inspect(data, small);
    match unlimited {
        Ok(h) => {
            assert_eq!(Some(h.format), ImageFormat::sniff(data));
            assert!(h.width > 0 && h.height > 0);
            if h.pixels() > small {
                assert!(
                    matches!(limited, Err(SniffError::TooManyPixels { pixels, .. }) if pixels == h.pixels())
                );
            } else {
                assert_eq!(limited, Ok(h));
            }
        }
        Err(e) => assert_eq!(limited, Err(e)),
    }
}

/// The manifests the `decode` target fits images to: each resize mode,
/// dtype and layout once, including the default model's real settings.
fn decode_manifests() -> &'static [ModelManifest] {
    static MANIFESTS: OnceLock<Vec<ModelManifest>> = OnceLock::new();
    MANIFESTS.get_or_init(|| {
        [
            (
                "dtype = \"float32\"\nlayout = \"nchw\"\nwidth = 224\nheight = 224",
                "resize = \"shorter_side\"\nresize_to = 256\ncrop = \"center\"\n\
                 mean = [127.0, 127.0, 127.0]\nstd = [128.0, 128.0, 128.0]",
            ),
            (
                "dtype = \"uint8\"\nlayout = \"nhwc\"\nwidth = 40\nheight = 24",
                "resize = \"letterbox\"\nfilter = \"bicubic\"\npad_value = 114",
            ),
            (
                "dtype = \"int32\"\nlayout = \"nhwc\"\ncolor = \"bgr\"\nwidth = 24\nheight = 40",
                "resize = \"stretch\"\nfilter = \"nearest\"",
            ),
        ]
        .iter()
        .map(|(input, pre)| {
            let text = format!(
                "kind = \"classification\"\n[input]\nname = \"x\"\n{input}\n\
                 [preprocess]\n{pre}\n[output]\nname = \"y\"\n"
            );
            ModelManifest::parse(&text, Path::new("fuzz.toml")).expect("fuzz manifest")
        })
        .collect()
    })
}

/// `decode`: the worker's path (decode under a pixel limit, fit, lay out as
/// a tensor) never panics, never exceeds the limit and yields the manifest's
/// shape.
pub fn decode(data: &[u8]) {
    let Ok(img) = preprocess::decode(data, DECODE_MAX_PIXELS) else {
        return;
    };
    let (w, h) = img.dimensions();
    assert!(w > 0 && h > 0);
    assert!(w as u64 * h as u64 <= DECODE_MAX_PIXELS, "{w}x{h}");
    for m in decode_manifests() {
        let (fitted, geometry) = preprocess::fit(&img, m);
        assert_eq!(fitted.dimensions(), (m.input.width, m.input.height));
        assert_eq!((geometry.source_width, geometry.source_height), (w, h));
        let tensor = preprocess::to_tensor(&fitted, m);
        let n = (m.input.width * m.input.height * 3) as usize;
        assert_eq!(tensor.shape.iter().product::<usize>(), n);
        match tensor.data {
            TensorData::F32(v) => {
                assert_eq!(v.len(), n);
                assert!(v.iter().all(|f| f.is_finite()));
            }
            TensorData::U8(v) => assert_eq!(v.len(), n),
            TensorData::I32(v) => assert_eq!(v.len(), n),
        }
    }
}

/// The manifests of the `jpeg_reduced` target: a small input, so that
/// most JPEGs qualify for a reduced-scale decode, once cropped (the real
/// default `jpeg_draft = 1`) and once stretched with a laxer 0.5.
fn jpeg_manifests() -> &'static [ModelManifest] {
    static MANIFESTS: OnceLock<Vec<ModelManifest>> = OnceLock::new();
    MANIFESTS.get_or_init(|| {
        [
            "[input]\nname = \"x\"\ndtype = \"float32\"\nlayout = \"nchw\"\nwidth = 16\nheight = 16\n\
             [preprocess]\nresize = \"shorter_side\"\ncrop = \"center\"\n",
            "[input]\nname = \"x\"\ndtype = \"uint8\"\nlayout = \"nhwc\"\nwidth = 24\nheight = 8\n\
             [preprocess]\nresize = \"stretch\"\njpeg_draft = 0.5\n",
        ]
        .iter()
        .map(|body| {
            let text = format!("kind = \"classification\"\n{body}[output]\nname = \"y\"\n");
            ModelManifest::parse(&text, Path::new("fuzz.toml")).expect("fuzz manifest")
        })
        .collect()
    })
}

/// Whether EXIF orientation `o` turns the image by a quarter.
fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// `jpeg_reduced`: decoding a JPEG at 1/2, 1/4 and 1/8 scale (the DCT
/// scaling of `jpeg-decoder`, with the full-size fallback for JPEGs it
/// does not take) never panics, stays within the pixel limit, yields an
/// image between the requested scale and full size, and agrees across
/// the scales that decode on the original's size and orientation; the worker's use of it
/// (`Preprocessor::decode` with `jpeg_draft`, then `prepare_decoded`)
/// gives the manifest's tensor and a finite geometry. Returns whether the
/// JPEG decoded.
pub fn jpeg_reduced(data: &[u8]) -> bool {
    if ImageFormat::sniff(data) != Some(ImageFormat::Jpeg) {
        return false;
    }
    let mut seen: Option<(u32, u32, Orientation)> = None;
    for denom in [2u32, 4, 8] {
        // A scale the scaling decoder cannot honour falls back to the
        // full-size decoder, which may refuse a corrupt JPEG the other
        // read: failing at one scale only is allowed.
        let Ok(d) = preprocess::decode_with(data, DECODE_MAX_PIXELS, |_, _| denom) else {
            continue;
        };
        let (fw, fh, o) = (d.full_width, d.full_height, d.orientation);
        assert!(fw as u64 * fh as u64 <= DECODE_MAX_PIXELS, "{fw}x{fh}");
        if let Some(first) = seen {
            assert_eq!(first, (fw, fh, o), "1/{denom}");
        }
        seen = Some((fw, fh, o));
        // The stored (not yet upright) full size, and the decoded one.
        let (sw, sh) = if swaps_axes(o) { (fh, fw) } else { (fw, fh) };
        let (w, h) = d.image.dimensions();
        assert!(w <= sw && h <= sh, "{w}x{h} of {sw}x{sh}");
        assert!(
            w >= sw.div_ceil(denom) && h >= sh.div_ceil(denom),
            "{w}x{h} of {sw}x{sh} at 1/{denom}"
        );
        let up = d.into_upright();
        let expected = if swaps_axes(o) { (h, w) } else { (w, h) };
        assert_eq!(up.image.dimensions(), expected);
    }
    let mut prep = preprocess::Preprocessor::new();
    for m in jpeg_manifests() {
        // At the scale the model picks, possibly full size (another
        // decoder, which may refuse what the scaling one read).
        let Ok(d) = prep.decode(data, DECODE_MAX_PIXELS, m) else {
            continue;
        };
        let (tensor, g) = prep.prepare_decoded(&d, m);
        let n = (m.input.width * m.input.height * 3) as usize;
        assert_eq!(tensor.shape.iter().product::<usize>(), n);
        if let TensorData::F32(v) = &tensor.data {
            assert!(v.iter().all(|f| f.is_finite()));
        }
        assert_eq!(
            (g.source_width, g.source_height),
            (d.full_width, d.full_height)
        );
        let finite = [g.scale_x, g.scale_y, g.offset_x, g.offset_y];
        assert!(finite.iter().all(|v| v.is_finite()), "{g:?}");
        assert!(g.scale_x > 0.0 && g.scale_y > 0.0, "{g:?}");
    }
    seen.is_some()
}

/// `manifest`: `model.toml` parsing and validation never panic, and a
/// manifest that validates survives a write and re-read unchanged.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/model.toml");
    let Ok(m) = ModelManifest::parse(text, path) else {
        return;
    };
    let written = toml::to_string(&m).expect("a valid manifest serialises");
    let back = ModelManifest::parse(&written, path)
        .unwrap_or_else(|e| panic!("re-reading a valid manifest failed: {e}\n{written}"));
    assert_eq!(back, m, "{written}");
}

/// `message`: decoding a queue message never panics, and what decodes
/// re-encodes to a message that decodes to the same job.
pub fn message(data: &[u8]) {
    let Ok(m) = JobMessage::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let again = JobMessage::decode(Bytes::from(m.encode())).expect("a re-encoded message decodes");
    assert_eq!(again, m);
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Every file of `fuzz/corpus/<target>/`, so the committed corpus (seeds
    /// and regression inputs of fixed crashes) is replayed by `make test`.
    pub(crate) fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{}: too few seeds", dir.display());
        files
            .into_iter()
            .map(|p| {
                let data = std::fs::read(&p).unwrap();
                (p, data)
            })
            .collect()
    }

    /// Runs `harness` over the corpus of `target`; `accepts` says whether
    /// the parser accepted an input, and the corpus must hold inputs of
    /// both kinds so that both paths stay covered.
    fn replay(target: &str, harness: fn(&[u8]), accepts: fn(&[u8]) -> bool) {
        let (mut yes, mut no) = (0, 0);
        for (path, data) in corpus(target) {
            let outcome = std::panic::catch_unwind(|| harness(&data));
            assert!(outcome.is_ok(), "{target}: {} panics", path.display());
            if accepts(&data) { yes += 1 } else { no += 1 }
        }
        assert!(yes > 0 && no > 0, "{target}: {yes} accepted, {no} rejected");
    }

    #[test]
    fn sniff_corpus() {
        replay("sniff", super::sniff, |d| {
            inferq_core::sniff::inspect(d, u64::MAX).is_ok()
        });
    }

    #[test]
    fn decode_corpus() {
        replay("decode", super::decode, |d| {
            crate::preprocess::decode(d, super::DECODE_MAX_PIXELS).is_ok()
        });
    }

    #[test]
    fn jpeg_reduced_corpus() {
        replay(
            "jpeg_reduced",
            |d| {
                super::jpeg_reduced(d);
            },
            super::jpeg_reduced,
        );
    }

    #[test]
    fn manifest_corpus() {
        replay("manifest", super::manifest, |d| {
            let text = String::from_utf8_lossy(d);
            inferq_core::manifest::ModelManifest::parse(&text, std::path::Path::new("m")).is_ok()
        });
    }

    #[test]
    fn message_corpus() {
        replay("message", super::message, |d| {
            inferq_core::message::JobMessage::decode(bytes::Bytes::copy_from_slice(d)).is_ok()
        });
    }
}
