//! Jobs of models fed at the image's own size (`resize = "none"`):
//! super-resolution and heatmap nets, whose output is pixel-aligned with
//! the input.
//!
//! The image is decoded at full resolution (a draft decode would throw
//! away exactly the detail these models exist for), cut into the tiles of
//! the manifest's `[tiling]`, and each tile's own part of the output is
//! pasted into one 8-bit canvas. Peak memory is the decoded image, the
//! canvas and one tile's activations, whatever the photo's size.

use std::time::Instant;

use bytes::Bytes;
use image::RgbImage;
use inferq_core::ErrorCode;
use inferq_core::job::JobError;
use inferq_vision::postprocess::{self, Canvas, Interpreted};
use inferq_vision::preprocess::{self, Preprocessor};

use super::compute::{Sessions, decode, ms, run, session};
use super::{JobMemory, Outcome, Work};

/// Largest output image, in pixels: a x2 upscale of a 12-megapixel phone
/// photo (48 MP, 144 MB as RGB) fits; anything larger is refused before
/// any work rather than risking the worker's memory.
pub const MAX_OUTPUT_PIXELS: u64 = 64_000_000;

fn failed(e: impl std::fmt::Display) -> JobError {
    JobError::new(ErrorCode::InferenceFailed, e.to_string())
}

/// Runs one job of a native-size model, tile by tile.
pub(super) fn process_native(
    sessions: &mut Sessions,
    prep: &mut Preprocessor,
    work: &Work,
    bytes: &Bytes,
    max_pixels: u64,
) -> Result<Outcome, JobError> {
    let t0 = Instant::now();
    // The whole upright image is fed: an EXIF rotation is applied in the
    // decoded buffer itself (no second copy); see inferq_vision's `orient`.
    let decoded = decode(prep, bytes, max_pixels, &work.model)?.into_upright();
    let decode_ms = ms(t0, Instant::now());
    let full = (decoded.full_width, decoded.full_height);
    let mut outcome = run_tiled(sessions, prep, work, &decoded.image, full)?;
    outcome.decode_ms = decode_ms;
    Ok(outcome)
}

/// Runs one decoded video frame (upright RGB) of a native-size model.
pub(super) fn process_frame(
    sessions: &mut Sessions,
    prep: &mut Preprocessor,
    work: &Work,
    frame: &RgbImage,
) -> Result<Outcome, JobError> {
    run_tiled(sessions, prep, work, frame, frame.dimensions())
}

/// Runs an upright image tile by tile; `full` is the size of the original
/// as displayed (for the peaks' coordinates).
fn run_tiled(
    sessions: &mut Sessions,
    prep: &mut Preprocessor,
    work: &Work,
    img: &RgbImage,
    full: (u32, u32),
) -> Result<Outcome, JobError> {
    let entry = &work.model;
    let m = &entry.manifest;
    let session = session(sessions, entry)?;
    let (w, h) = img.dimensions();
    let s = m.output_scale();
    let out_pixels = u64::from(w * s) * u64::from(h * s);
    if out_pixels > MAX_OUTPUT_PIXELS {
        return Err(JobError::new(
            ErrorCode::TooManyPixels,
            format!(
                "a {w}x{h} image gives a {}x{} output ({out_pixels} pixels), above the limit of \
                 {MAX_OUTPUT_PIXELS}",
                w * s,
                h * s
            ),
        ));
    }
    let name = m.output.name.as_deref().unwrap_or_default();
    let mut canvas: Option<Canvas> = None;
    let (mut prep_ms, mut infer_ms) = (0.0, 0.0);
    // The largest tile's tensor: one is alive at a time.
    let mut memory = JobMemory {
        decoded: img.as_raw().len() as u64,
        ..JobMemory::default()
    };
    let tiles = preprocess::plan_tiles(w, h, m.tiling);
    for tile in &tiles {
        let (own, ctx) = (tile.own, tile.context);
        let ta = Instant::now();
        let tensor = prep.prepare_region(img, ctx, m);
        let tb = Instant::now();
        memory.input_tensor = memory.input_tensor.max(tensor.byte_len());
        let outputs = run(session, entry, tensor).map_err(failed)?;
        let tc = Instant::now();
        prep_ms += ms(ta, tb);
        infer_ms += ms(tb, tc);
        let out = outputs
            .iter()
            .find(|o| o.name == name)
            .ok_or_else(|| failed(format!("no output named `{name}`")))?;
        let (ow, oh, channels) = Canvas::dimensions(out, &m.output).map_err(failed)?;
        let k = m.input.size_multiple;
        let expected = (
            preprocess::padded(ctx.width, k) * s,
            preprocess::padded(ctx.height, k) * s,
        );
        if (ow, oh) != expected {
            return Err(failed(format!(
                "model output: a {}x{} input gave a {ow}x{oh} output, not {}x{} (output.scale = {s})",
                ctx.width, ctx.height, expected.0, expected.1
            )));
        }
        let canvas = canvas.get_or_insert_with(|| Canvas::new(w * s, h * s, channels));
        canvas
            .paste(
                out,
                &m.output,
                ((own.x - ctx.x) * s, (own.y - ctx.y) * s),
                (own.width * s, own.height * s),
                (own.x * s, own.y * s),
            )
            .map_err(failed)?;
    }
    let canvas = canvas.ok_or_else(|| failed("the image has no pixels"))?;
    let (fw, fh) = (full.0 as f32, full.1 as f32);
    let photo = (s == 1).then_some(img);
    let Interpreted {
        prediction,
        artifact,
        views,
    } = postprocess::render_image(&canvas, &m.output, |fx, fy| (fx * fw, fy * fh), photo)
        .map_err(failed)?;
    tracing::debug!(tiles = tiles.len(), width = w, height = h, "ran tiled");
    Ok(Outcome {
        prediction,
        artifact,
        views,
        decode_ms: 0.0,
        preprocess_ms: prep_ms,
        inference_ms: infer_ms,
        batch_size: 1,
        memory,
    })
}
