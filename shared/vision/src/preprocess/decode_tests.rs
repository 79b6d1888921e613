//! Tests of the bounded decode paths: PNG rows (16-bit, alpha, Adam7),
//! EXIF orientation for all eight values, and geometry through an
//! orientation applied after fitting.

use std::borrow::Cow;

use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};

use super::decode::tests::jpeg_with_orientation;
use super::{Preprocessor, decode, decode_with};

const ALL: [Orientation; 8] = [
    Orientation::NoTransforms,
    Orientation::FlipHorizontal,
    Orientation::Rotate180,
    Orientation::FlipVertical,
    Orientation::Rotate90FlipH,
    Orientation::Rotate90,
    Orientation::Rotate270FlipH,
    Orientation::Rotate270,
];

/// A big-endian TIFF/EXIF block declaring `orientation` (1..8).
fn exif(orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&0x0112u16.to_be_bytes());
    tiff.extend_from_slice(&3u16.to_be_bytes());
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    tiff
}

/// A 16-bit RGBA PNG of `px` (RGBA u16 per pixel) with an `eXIf` chunk.
fn png16(w: u32, h: u32, px: &[[u16; 4]], orientation: u16) -> Vec<u8> {
    let mut info = png::Info::with_size(w, h);
    info.color_type = png::ColorType::Rgba;
    info.bit_depth = png::BitDepth::Sixteen;
    info.exif_metadata = Some(Cow::Owned(exif(orientation)));
    let mut out = Vec::new();
    let mut writer = png::Encoder::with_info(&mut out, info)
        .unwrap()
        .write_header()
        .unwrap();
    let data: Vec<u8> = px.iter().flatten().flat_map(|v| v.to_be_bytes()).collect();
    writer.write_image_data(&data).unwrap();
    writer.finish().unwrap();
    out
}

fn numbered(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 20, y as u8 * 30, 7]))
}

/// The `image` crate's copying orientation, as the reference.
fn upright(img: &RgbImage, o: Orientation) -> RgbImage {
    let mut d = DynamicImage::ImageRgb8(img.clone());
    d.apply_orientation(o);
    d.into_rgb8()
}

#[test]
fn png_16_bit_rgba_becomes_rounded_8_bit_rgb() {
    let px = [[0, 65_535, 40_000, 0], [0x7FFF, 0x8080, 257 * 100, 65_535]];
    let d = decode_with(&png16(2, 1, &px, 1), 1 << 20, |_, _| 1).unwrap();
    assert_eq!(d.image.as_raw(), &[0, 255, 156, 127, 128, 100]);
    assert_eq!(
        d.image.as_raw().capacity(),
        6,
        "one RGB buffer, nothing more"
    );
}

#[test]
fn all_eight_exif_orientations_come_out_upright() {
    let img = numbered(6, 4);
    for (i, o) in ALL.into_iter().enumerate() {
        let tag = i as u16 + 1;
        let want = upright(&img, o);
        // PNG: lossless, so exact.
        let px: Vec<[u16; 4]> = img
            .pixels()
            .map(|p| {
                [
                    p.0[0] as u16 * 257,
                    p.0[1] as u16 * 257,
                    p.0[2] as u16 * 257,
                    65_535,
                ]
            })
            .collect();
        let png = png16(6, 4, &px, tag);
        let d = decode_with(&png, 1 << 20, |_, _| 1).unwrap();
        assert_eq!(d.orientation, o, "tag {tag}");
        assert_eq!(
            (d.full_width, d.full_height),
            want.dimensions(),
            "tag {tag}"
        );
        assert_eq!(decode(&png, 1 << 20).unwrap(), want, "png tag {tag}");
        // JPEG (full size and 1/8 scale): lossy, so compare quadrants of a
        // larger image with one red quadrant.
        let big = RgbImage::from_fn(64, 32, |x, y| {
            if x < 32 && y < 16 {
                image::Rgb([250, 10, 10])
            } else {
                image::Rgb([10, 10, 250])
            }
        });
        let want = upright(&big, o);
        let jpeg = jpeg_with_orientation(&big, tag);
        let full = decode(&jpeg, 1 << 20).unwrap();
        assert_eq!(full.dimensions(), want.dimensions(), "jpeg tag {tag}");
        for (x, y) in [(4, 4), (want.width() - 4, 4), (4, want.height() - 4)] {
            let red = want.get_pixel(x, y).0[0] > 200;
            assert_eq!(
                full.get_pixel(x, y).0[0] > 200,
                red,
                "jpeg tag {tag} at {x},{y}"
            );
        }
        let small = decode_with(&jpeg, 1 << 20, |_, _| 8)
            .unwrap()
            .into_upright();
        assert_eq!(
            small.image.dimensions(),
            (want.width() / 8, want.height() / 8)
        );
    }
}

/// A manifest with a `w`×`h` uint8 NHWC input and the given preprocessing.
fn manifest(w: u32, h: u32, preprocess: &str) -> inferq_core::manifest::ModelManifest {
    let text = format!(
        "kind = \"classification\"\n[input]\nname = \"x\"\nwidth = {w}\nheight = {h}\n\
         dtype = \"uint8\"\nlayout = \"nhwc\"\n[preprocess]\n{preprocess}\n[output]\nname = \"y\"\n"
    );
    inferq_core::manifest::ModelManifest::parse(&text, std::path::Path::new("t.toml")).unwrap()
}

#[test]
fn orientation_after_fitting_matches_fitting_the_upright_image() {
    // A smooth stored image; sizes chosen so crops and pads are symmetric.
    let stored = RgbImage::from_fn(48, 24, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 10) as u8, ((x + y) * 3) as u8])
    });
    let manifests = [
        manifest(8, 6, "resize = \"stretch\"\nfilter = \"bilinear\""),
        manifest(
            8,
            6,
            "resize = \"shorter_side\"\ncrop = \"center\"\nfilter = \"bilinear\"",
        ),
        manifest(
            8,
            8,
            "resize = \"letterbox\"\nfilter = \"bilinear\"\npad_value = 9",
        ),
    ];
    for (i, o) in ALL.into_iter().enumerate() {
        let px: Vec<[u16; 4]> = stored
            .pixels()
            .map(|p| {
                [
                    p.0[0] as u16 * 257,
                    p.0[1] as u16 * 257,
                    p.0[2] as u16 * 257,
                    65_535,
                ]
            })
            .collect();
        let png = png16(48, 24, &px, i as u16 + 1);
        let reference = upright(&stored, o);
        for m in &manifests {
            let mut prep = Preprocessor::new();
            let d = prep.decode(&png, 1 << 20, m).unwrap();
            assert_eq!(d.image.dimensions(), (48, 24), "decoded as stored");
            let (t, g) = prep.prepare_decoded(&d, m);
            let (t, g) = (t.clone(), g);
            let mut reference_prep = Preprocessor::new();
            let (want_t, want_g) = reference_prep.prepare(&reference, m);
            let (super::TensorData::U8(a), super::TensorData::U8(b)) = (&t.data, &want_t.data)
            else {
                panic!("uint8 input")
            };
            assert_eq!(t.shape, want_t.shape);
            let worst = a.iter().zip(b).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
            assert!(
                worst <= 3,
                "{o:?} {:?}: pixels differ by {worst}",
                m.preprocess.resize
            );
            for (got, want) in [
                (g.scale_x, want_g.scale_x),
                (g.scale_y, want_g.scale_y),
                (g.offset_x, want_g.offset_x),
                (g.offset_y, want_g.offset_y),
            ] {
                assert!((got - want).abs() < 1e-3, "{o:?}: {g:?} vs {want_g:?}");
            }
            assert_eq!((g.source_width, g.source_height), reference.dimensions());
        }
    }
}

/// CRC-32 (PNG) of `bytes`.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An interlaced (Adam7) 8-bit grey + alpha PNG, written by hand (the `png`
/// encoder writes only progressive images): zlib with stored blocks.
fn interlaced_grey_alpha(w: u32, h: u32, grey: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    let passes = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];
    let mut raw = Vec::new();
    for (x0, y0, dx, dy) in passes {
        let xs: Vec<u32> = (x0..w).step_by(dx).collect();
        if xs.is_empty() {
            continue;
        }
        for y in (y0..h).step_by(dy) {
            raw.push(0); // filter: none
            for &x in &xs {
                raw.extend_from_slice(&[grey(x, y), 200]);
            }
        }
    }
    let mut z = vec![0x78, 0x01];
    for (i, block) in raw.chunks(65_535).enumerate() {
        let last = (i + 1) * 65_535 >= raw.len();
        z.push(last as u8);
        z.extend_from_slice(&(block.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(block.len() as u16)).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &v in &raw {
        a = (a + v as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 4, 0, 0, 1]); // 8-bit grey+alpha, Adam7
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &z);
    chunk(b"IEND", &[]);
    out
}

#[test]
fn interlaced_png_rows_land_in_place() {
    let (w, h) = (13, 11);
    let grey = |x: u32, y: u32| (x * 17 + y * 3) as u8;
    let png = interlaced_grey_alpha(w, h, grey);
    // The reference decoder agrees the file is what it says.
    let reference = image::load_from_memory(&png).unwrap().into_rgb8();
    let img = decode(&png, 1 << 20).unwrap();
    assert_eq!(img, reference);
    assert_eq!(img.get_pixel(12, 10).0, [grey(12, 10); 3]);
}
