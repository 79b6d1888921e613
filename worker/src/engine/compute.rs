//! What an inference thread does with its jobs: decode, preprocess, run the
//! session and interpret the outputs — for one job, or for several jobs of
//! the same model stacked into one batch.
//!
//! Errors are per job: an image that cannot be decoded fails its own job and
//! leaves the rest of its batch running. If a batched run itself fails, each
//! image is run again on its own so that one bad input cannot fail the
//! others.

use std::collections::HashMap;
use std::time::Instant;

use inferq_backends::repository::ModelEntry;
use inferq_core::ErrorCode;
use inferq_core::job::JobError;
use inferq_vision::postprocess::{self, Interpreted, RawOutput};
use inferq_vision::preprocess::{
    self, BatchTensor, DecodeError, Decoded, Geometry, InputTensor, Preprocessor, TensorData,
};
use ort::session::{Session, SessionInputValue};
use ort::value::TensorRef;

use super::{JobMemory, Outcome, Work, WorkInput};

/// A thread's loaded sessions, keyed by `name:version`, with the
/// fingerprint of the entry each was built from.
pub(super) type Sessions = HashMap<String, (u64, Session)>;

/// One zero-filled run so the first real job does not pay for lazy
/// allocations inside ONNX Runtime. A model that batches is also run once
/// at its largest batch, so that the memory a full batch needs is taken at
/// start (and shows in the worker's RSS from the beginning).
pub fn warm_up(session: &mut Session, entry: &ModelEntry) -> Result<(), String> {
    let m = &entry.manifest;
    let blank = image::RgbImage::new(m.input.width, m.input.height);
    let tensor = preprocess::to_tensor(&blank, m);
    let fail = |e: ort::Error| format!("{}: warm-up run failed: {e}", entry.model_path().display());
    run(session, entry, &tensor).map_err(fail)?;
    if m.batching.enabled() {
        let mut batch = BatchTensor::new();
        for _ in 0..m.batching.max_batch {
            batch.push(&tensor);
        }
        let outputs = run(session, entry, batch.tensor()).map_err(fail)?;
        split(outputs, m.batching.max_batch).map_err(|e| {
            format!(
                "{}: batching is declared but {e}",
                entry.model_path().display()
            )
        })?;
    }
    Ok(())
}

/// Runs the session on one input and returns the wanted outputs as f32.
///
/// The input may hold a batch (`shape[0] > 1`) when the model's batch axis
/// is dynamic; public for `inferq-bench`, which times exactly this call.
pub fn run(
    session: &mut Session,
    entry: &ModelEntry,
    tensor: &InputTensor,
) -> Result<Vec<RawOutput>, ort::Error> {
    let shape = tensor.shape;
    let value: SessionInputValue = match &tensor.data {
        TensorData::F32(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
        TensorData::U8(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
        TensorData::I32(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
    };
    let m = &entry.manifest;
    let mut wanted = m.output.wanted();
    if wanted.is_empty() {
        wanted = session
            .outputs()
            .iter()
            .map(|o| o.name().to_owned())
            .collect();
    }
    let outputs = session.run(vec![(m.input.name.as_str(), value)])?;
    wanted
        .into_iter()
        .map(|name| {
            let value = &outputs[name.as_str()];
            let (shape, data) = extract_f32(value)?;
            Ok(RawOutput { name, shape, data })
        })
        .collect()
}

/// Reads a numeric output tensor as f32, whatever its element type.
fn extract_f32(value: &ort::value::DynValue) -> Result<(Vec<i64>, Vec<f32>), ort::Error> {
    macro_rules! try_as {
        ($($t:ty),*) => {
            $(if let Ok((shape, data)) = value.try_extract_tensor::<$t>() {
                return Ok((shape.to_vec(), data.iter().map(|v| *v as f32).collect()));
            })*
        };
    }
    try_as!(f32, f64, i64, i32, u8, i8);
    let (shape, data) = value.try_extract_tensor::<f32>()?;
    Ok((shape.to_vec(), data.to_vec()))
}

/// Splits a batched run's outputs into one set of outputs per image; each
/// output's first axis must be the batch axis.
pub(super) fn split(outputs: Vec<RawOutput>, n: usize) -> Result<Vec<Vec<RawOutput>>, String> {
    let mut per_item: Vec<Vec<RawOutput>> = (0..n).map(|_| Vec::new()).collect();
    for out in outputs {
        if out.shape.first().copied() != Some(n as i64) || out.data.len() % n != 0 {
            return Err(format!(
                "output `{}` has shape {:?}, not a batch of {n} on its first axis",
                out.name, out.shape
            ));
        }
        let mut shape = out.shape.clone();
        shape[0] = 1;
        let len = out.data.len() / n;
        for (item, chunk) in per_item.iter_mut().zip(out.data.chunks_exact(len)) {
            item.push(RawOutput {
                name: out.name.clone(),
                shape: shape.clone(),
                data: chunk.to_vec(),
            });
        }
    }
    Ok(per_item)
}

pub(super) fn ms(a: Instant, b: Instant) -> f64 {
    (b - a).as_secs_f64() * 1e3
}

pub(super) fn session<'s>(
    sessions: &'s mut Sessions,
    entry: &ModelEntry,
) -> Result<&'s mut Session, JobError> {
    sessions
        .get_mut(&entry.key())
        .map(|(_, s)| s)
        .ok_or_else(|| {
            JobError::new(
                ErrorCode::ModelNotFound,
                format!("model {} is not loaded", entry.key()),
            )
        })
}

pub(super) fn decode(
    prep: &Preprocessor,
    bytes: &[u8],
    max_pixels: u64,
    entry: &ModelEntry,
) -> Result<Decoded, JobError> {
    prep.decode(bytes, max_pixels, &entry.manifest)
        .map_err(|e| {
            let code = match e {
                DecodeError::UnknownFormat => ErrorCode::UnsupportedImageFormat,
                DecodeError::Limits(_) => ErrorCode::TooManyPixels,
                DecodeError::Corrupt(_) => ErrorCode::DecodeFailed,
            };
            JobError::new(code, e.to_string())
        })
}

fn interpret(
    outputs: &[RawOutput],
    work: &Work,
    geometry: &Geometry,
) -> Result<Interpreted, JobError> {
    let entry = &work.model;
    postprocess::interpret(
        outputs,
        &entry.manifest,
        &entry.labels,
        geometry,
        work.top_k,
    )
    .map_err(|e| JobError::new(ErrorCode::InferenceFailed, e.to_string()))
}

/// Runs one job on its own (a model fed at a fixed size, or a tensor).
pub(super) fn process(
    sessions: &mut Sessions,
    prep: &mut Preprocessor,
    work: &Work,
    max_pixels: u64,
) -> Result<Outcome, JobError> {
    let entry = &work.model;
    let session = session(sessions, entry)?;
    let t0 = Instant::now();
    let mut memory = JobMemory::default();
    let (tensor, geometry, t1) = match &work.input {
        WorkInput::Encoded(bytes) => {
            let img = decode(prep, bytes, max_pixels, entry)?;
            let t1 = Instant::now();
            memory.decoded = img.image.as_raw().len() as u64;
            let (tensor, geometry) = prep.prepare_decoded(&img, &entry.manifest);
            (tensor, geometry, t1)
        }
        WorkInput::Frame(frame) => {
            memory.decoded = frame.as_raw().len() as u64;
            let (tensor, geometry) = prep.prepare(frame, &entry.manifest);
            (tensor, geometry, t0)
        }
        WorkInput::Tensor(t) => {
            let m = &entry.manifest.input;
            let geometry = Geometry {
                scale_x: 1.0,
                scale_y: 1.0,
                offset_x: 0.0,
                offset_y: 0.0,
                source_width: m.width,
                source_height: m.height,
            };
            (t, geometry, t0)
        }
    };
    memory.input_tensor = tensor.byte_len();
    let t2 = Instant::now();
    let outputs = run(session, entry, tensor)
        .map_err(|e| JobError::new(ErrorCode::InferenceFailed, e.to_string()))?;
    let t3 = Instant::now();
    let Interpreted {
        prediction,
        artifact,
        views,
    } = interpret(&outputs, work, &geometry)?;
    Ok(Outcome {
        prediction,
        artifact,
        views,
        decode_ms: ms(t0, t1),
        preprocess_ms: ms(t1, t2),
        inference_ms: ms(t2, t3),
        batch_size: 1,
        memory,
    })
}

/// A job of a batch whose image is in the batch tensor.
struct Member {
    /// Index into the batch's jobs.
    job: usize,
    geometry: Geometry,
    decode_ms: f64,
    preprocess_ms: f64,
    /// Decoded image and input tensor bytes (the RSS figures come later).
    memory: JobMemory,
}

/// Runs several jobs of one model (encoded images or video frames) as one batch
/// and returns each job's result, in order.
pub(super) fn process_batch(
    sessions: &mut Sessions,
    prep: &mut Preprocessor,
    batch: &mut BatchTensor,
    works: &[Work],
    max_pixels: u64,
) -> Vec<Result<Outcome, JobError>> {
    let entry = &works[0].model;
    let mut results: Vec<Option<Result<Outcome, JobError>>> = works.iter().map(|_| None).collect();
    let mut members = Vec::with_capacity(works.len());
    batch.clear();
    for (i, work) in works.iter().enumerate() {
        let t0 = Instant::now();
        let (tensor, geometry, decoded_bytes, t1) = match &work.input {
            WorkInput::Encoded(bytes) => {
                let decoded = match decode(prep, bytes, max_pixels, entry) {
                    Ok(d) => d,
                    Err(e) => {
                        results[i] = Some(Err(e));
                        continue;
                    }
                };
                let t1 = Instant::now();
                let (tensor, geometry) = prep.prepare_decoded(&decoded, &entry.manifest);
                (tensor, geometry, decoded.image.as_raw().len() as u64, t1)
            }
            // A decoded video frame: straight to preprocessing.
            WorkInput::Frame(frame) => {
                let (tensor, geometry) = prep.prepare(frame, &entry.manifest);
                (tensor, geometry, frame.as_raw().len() as u64, t0)
            }
            WorkInput::Tensor(_) => {
                // The gatherer only batches images and frames; run anything else alone.
                results[i] = Some(process(sessions, prep, work, max_pixels));
                continue;
            }
        };
        let memory = JobMemory {
            decoded: decoded_bytes,
            input_tensor: tensor.byte_len(),
            ..JobMemory::default()
        };
        batch.push(tensor);
        members.push(Member {
            job: i,
            geometry,
            decode_ms: ms(t0, t1),
            preprocess_ms: ms(t1, Instant::now()),
            memory,
        });
    }
    if !members.is_empty() {
        let n = members.len();
        let ran = session(sessions, entry).and_then(|s| {
            let t2 = Instant::now();
            let outputs = run(s, entry, batch.tensor())
                .map_err(|e| JobError::new(ErrorCode::InferenceFailed, e.to_string()))?;
            let inference_ms = ms(t2, Instant::now());
            let per_item =
                split(outputs, n).map_err(|e| JobError::new(ErrorCode::InferenceFailed, e))?;
            Ok((per_item, inference_ms))
        });
        match ran {
            Ok((per_item, inference_ms)) => {
                for (member, outputs) in members.iter().zip(per_item) {
                    let work = &works[member.job];
                    results[member.job] = Some(interpret(&outputs, work, &member.geometry).map(
                        |i| Outcome {
                            prediction: i.prediction,
                            artifact: i.artifact,
                            views: i.views,
                            decode_ms: member.decode_ms,
                            preprocess_ms: member.preprocess_ms,
                            inference_ms,
                            batch_size: n,
                            memory: member.memory,
                        },
                    ));
                }
            }
            Err(e) if n == 1 => results[members[0].job] = Some(Err(e)),
            Err(e) => {
                tracing::warn!(error = %e.message, size = n, "batched run failed; running its jobs one by one");
                for member in &members {
                    results[member.job] =
                        Some(process(sessions, prep, &works[member.job], max_pixels));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(JobError::new(ErrorCode::Internal, "job was not run"))))
        .collect()
}
