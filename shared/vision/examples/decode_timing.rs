//! Prints decode timings: the bounded decode path (`Preprocessor::decode` +
//! `prepare_decoded`, as the worker runs it) next to the `image` crate's
//! whole-image path that InferQ used before (`DynamicImage::from_decoder`,
//! `apply_orientation`, `into_rgb8`, then the same preprocessing).
//!
//! `cargo run -p inferq-vision --example decode_timing -- MODEL.toml [IMAGE...]`
//! (without images: tests/images/photo-640x480.jpg and a 12 MP JPEG made
//! from it). Median of several runs; numbers only, no assertions.

use std::io::Cursor;
use std::path::Path;
use std::time::Instant;

use image::{DynamicImage, ImageDecoder, ImageReader};
use inferq_core::manifest::ModelManifest;
use inferq_vision::preprocess::Preprocessor;

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

/// The previous full-size path: decode whole in the decoder's pixel type,
/// orient by copying, convert by copying.
fn whole_image(bytes: &[u8]) -> image::RgbImage {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .unwrap();
    let mut decoder = reader.into_decoder().unwrap();
    let o = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).unwrap();
    if let Some(o) = o {
        img.apply_orientation(o);
    }
    img.into_rgb8()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let manifest_path = args
        .first()
        .expect("usage: decode_timing MODEL.toml [IMAGE...]");
    let text = std::fs::read_to_string(manifest_path).unwrap();
    let mut m = ModelManifest::parse(&text, Path::new(manifest_path)).unwrap();
    let mut images: Vec<(String, Vec<u8>)> = args[1..]
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    if images.is_empty() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let photo = std::fs::read(root.join("tests/images/photo-640x480.jpg")).unwrap();
        let big = image::load_from_memory(&photo).unwrap().resize_exact(
            4000,
            3000,
            image::imageops::FilterType::Triangle,
        );
        let mut jpeg = Vec::new();
        big.write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        images.push(("photo-640x480.jpg".into(), photo));
        images.push(("12MP 4000x3000 jpeg".into(), jpeg));
    }
    let max_pixels = 40_000_000;
    let draft = m.preprocess.jpeg_draft;
    for (name, bytes) in &images {
        let runs = if bytes.len() > 2_000_000 || name.contains("12MP") {
            5
        } else {
            30
        };
        let mut prep = Preprocessor::new();
        let mut line = format!("{name:<28}");
        for (label, jpeg_draft) in [("draft", draft), ("full", 0.0)] {
            m.preprocess.jpeg_draft = jpeg_draft;
            let bounded = median_ms(runs, || {
                let d = prep.decode(bytes, max_pixels, &m).unwrap();
                std::hint::black_box(prep.prepare_decoded(&d, &m));
            });
            line += &format!("  bounded[{label}] {bounded:>8.2} ms");
        }
        let before = median_ms(runs, || {
            let img = whole_image(bytes);
            std::hint::black_box(prep.prepare(&img, &m));
        });
        line += &format!("  whole-image[full] {before:>8.2} ms");
        println!("{line}");
    }
}
