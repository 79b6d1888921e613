//! One video job, from the fetched bytes to the stored results.
//!
//! The bytes go to a temporary file (FFmpeg needs to seek in an MP4),
//! `ffprobe` reads the header and [`probe::plan`] refuses what is over the
//! limits. Then `ffmpeg` streams the sampled frames; each is sent to the
//! engine as a decoded frame ([`WorkInput::Frame`]) with at most a few in
//! flight, answers are taken in frame order, written as one JSON Lines
//! document and, for image models, fed to the encoder of the output video.
//! Every [`PROGRESS_EVERY`] the record's `progress` is saved; the store
//! refuses to overwrite a final record, which is how a cancel is noticed:
//! the decoder is killed and the remaining frames are never run.
//!
//! A delivery of a video job is settled exactly like an image's: the frames
//! and the output video are stored before the final record, and the record
//! before the ack. A worker killed mid-video leaves the message unacked; the
//! next worker runs the video again from its first frame and overwrites the
//! stored frames and video (same keys), so nothing is duplicated.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use image::RgbImage;
use inferq_backends::fetch::fence::StorageFence;
use inferq_backends::repository::ModelEntry;
use inferq_backends::store::Saved;
use inferq_core::ErrorCode;
use inferq_core::job::{JobError, JobRecord, Timings};
use inferq_core::manifest::ModelKind;
use inferq_core::message::JobMessage;
use inferq_core::prediction::Prediction;
use inferq_core::video::{FRAMES_VIEW, FrameResult, Progress, VideoFormat, VideoOutput};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::annotate;
use super::decode::FrameReader;
use super::encode::{self, Encoder};
use super::probe::{self, Plan};
use super::{TempPath, decode_failed, too_large, too_long};
use crate::consumer::{Processor, Settle};
use crate::engine::{InferError, Outcome, WorkInput};
use crate::storage;

/// The most often a running video job's progress is written.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Frames of one job in flight at most (decoded, waiting for or in
/// inference): the model's largest batch, at least 2 so the inference
/// threads never wait for the decoder, at most this — and at most
/// [`IN_FLIGHT_BYTES`] of frames (but always 2).
const MAX_IN_FLIGHT: usize = 8;

/// Bytes of decoded frames one job keeps in flight (beyond the minimum of
/// two frames): eight 1080p frames, two 4K ones.
const IN_FLIGHT_BYTES: u64 = 64 << 20;

/// Why a video job stopped before its end.
enum Stop {
    Failed(JobError),
    /// The record turned final meanwhile (canceled): nothing to store.
    Final,
    /// The engine is stopping or the store failed: run it again later.
    Requeue,
}

impl From<JobError> for Stop {
    fn from(e: JobError) -> Self {
        Stop::Failed(e)
    }
}

/// What a finished run produced.
struct Done {
    plan: Plan,
    frames: u64,
    lines: Vec<u8>,
    /// The output video and its size (image models).
    video: Option<(Vec<u8>, u32, u32)>,
}

/// A frame with the engine: its index, the inference task and, when the
/// answer is to be drawn on it, a copy of the picture.
type Pending = (
    u64,
    JoinHandle<Result<Outcome, InferError>>,
    Option<RgbImage>,
);

/// The subprocesses and inference tasks of a run, stopped together on any
/// early exit.
#[derive(Default)]
struct Running {
    reader: Option<FrameReader>,
    encoder: Option<Encoder>,
    /// Frames with the engine, in order.
    pending: VecDeque<Pending>,
}

impl Running {
    /// Kills and reaps what still runs; frames already with the engine
    /// finish there and their answers are dropped.
    async fn stop(&mut self) {
        if let Some(r) = self.reader.take() {
            r.kill().await;
        }
        if let Some(e) = self.encoder.take() {
            e.kill().await;
        }
        for (_, task, _) in self.pending.drain(..) {
            task.abort();
        }
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

impl Processor {
    /// Runs a video job to its final record and says how to settle it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn process_video(
        &self,
        msg: &JobMessage,
        mut record: JobRecord,
        entry: Arc<ModelEntry>,
        bytes: Bytes,
        format: VideoFormat,
        mut timings: Timings,
        fence: Option<&StorageFence>,
    ) -> Settle {
        tracing::info!(format = format.as_str(), bytes = bytes.len(), "video job");
        let mut running = Running::default();
        let result = self
            .run_video(
                msg,
                &mut record,
                &entry,
                bytes,
                format,
                &mut timings,
                &mut running,
            )
            .await;
        running.stop().await;
        let now = Utc::now();
        timings.total_ms = record.ms_since_created(now);
        match result {
            Ok(done) => {
                return self
                    .store_video(msg, record, &entry, done, timings, fence)
                    .await;
            }
            Err(Stop::Failed(err)) => {
                tracing::info!(code = %err.code, error = %err.message, "video job failed");
                let _ = record.fail(err, Some(timings), now);
            }
            Err(Stop::Final) => {
                tracing::info!("video job ended elsewhere (canceled); remaining frames dropped");
                self.drop_blob(msg).await;
                return Settle::Ack;
            }
            Err(Stop::Requeue) => return Settle::Requeue,
        }
        self.finish(msg, &record).await
    }

    /// Probes, decodes and runs every sampled frame.
    #[allow(clippy::too_many_arguments)]
    async fn run_video(
        &self,
        msg: &JobMessage,
        record: &mut JobRecord,
        entry: &Arc<ModelEntry>,
        bytes: Bytes,
        format: VideoFormat,
        timings: &mut Timings,
        running: &mut Running,
    ) -> Result<Done, Stop> {
        let s = &self.video;
        let deadline = tokio::time::Instant::now() + s.timeout;
        let timed_out = || {
            Stop::Failed(too_long(format!(
                "the job took longer than the video time limit of {} s",
                s.timeout.as_secs()
            )))
        };
        let input = TempPath::new(&msg.id, format.as_str());
        tokio::fs::write(input.path(), &bytes).await.map_err(|e| {
            JobError::new(
                ErrorCode::Internal,
                format!("cannot write the video to a temporary file: {e}"),
            )
        })?;
        drop(bytes);
        let t0 = Instant::now();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let header = probe::run(&s.ffprobe, input.path(), format, left).await?;
        let plan = probe::plan(&header, msg.video.unwrap_or_default(), s)?;
        timings.decode_ms += ms(t0);
        tracing::info!(width = plan.width, height = plan.height, fps = plan.fps,
            frames = plan.frames_total, duration = ?header.duration, "video probed");
        record.progress = Some(Progress {
            frames_done: 0,
            frames_total: plan.frames_total,
        });
        self.save_progress(record).await?;

        running.reader = Some(FrameReader::spawn(&s.ffmpeg, input.path(), format, &plan)?);
        let m = &entry.manifest;
        let by_memory = (IN_FLIGHT_BYTES / plan.frame_bytes.max(1)) as usize;
        let window = m
            .batching
            .max_batch
            .clamp(2, MAX_IN_FLIGHT)
            .min(by_memory.max(2));
        let output_href = format!("/v1/jobs/{}/output", msg.id);
        // Pose and detection answers are drawn on a copy of their frame,
        // which doubles the frames in flight's memory (bounded by the window).
        let annotated = matches!(m.kind, ModelKind::Keypoints | ModelKind::Detection);
        let (mut index, mut done, mut decoded) = (0u64, 0u64, 0u64);
        let mut eof = false;
        let mut lines = Vec::new();
        let mut last_progress = Instant::now();
        loop {
            while !eof && running.pending.len() < window {
                let reader = running.reader.as_mut().expect("decoder running");
                let t = Instant::now();
                let next = tokio::time::timeout_at(deadline, reader.next())
                    .await
                    .map_err(|_| timed_out())??;
                timings.decode_ms += ms(t);
                let Some(frame) = next else {
                    eof = true;
                    break;
                };
                // The header may have lied: the limits hold for what arrives.
                decoded += plan.frame_bytes;
                if decoded > s.max_decoded_bytes {
                    return Err(too_large(format!(
                        "the decoded frames passed the limit of {} bytes",
                        s.max_decoded_bytes
                    ))
                    .into());
                }
                let time = index as f64 / plan.fps;
                if time > s.max_duration_secs {
                    return Err(too_long(format!(
                        "the video runs past the limit of {} s",
                        s.max_duration_secs
                    ))
                    .into());
                }
                let copy = annotated.then(|| frame.clone());
                let (inference, entry, id, top_k) =
                    (self.inference.clone(), entry.clone(), msg.id, msg.top_k);
                let task = tokio::spawn(
                    async move {
                        inference
                            .infer(id, entry, WorkInput::Frame(frame), top_k)
                            .await
                    }
                    .instrument(tracing::Span::current()),
                );
                running.pending.push_back((index, task, copy));
                index += 1;
            }
            let Some((i, task, copy)) = running.pending.pop_front() else {
                break;
            };
            let outcome = match tokio::time::timeout_at(deadline, task).await {
                Err(_) => return Err(timed_out()),
                Ok(Err(e)) => {
                    return Err(JobError::new(
                        ErrorCode::Internal,
                        format!("frame {i}: inference task ended: {e}"),
                    )
                    .into());
                }
                Ok(Ok(Err(InferError::Stopped))) => return Err(Stop::Requeue),
                Ok(Ok(Err(InferError::Job(e)))) => {
                    return Err(JobError::new(e.code, format!("frame {i}: {}", e.message)).into());
                }
                Ok(Ok(Ok(o))) => o,
            };
            timings.preprocess_ms += outcome.preprocess_ms;
            timings.inference_ms += outcome.inference_ms;
            timings.batch_size = timings.batch_size.max(outcome.batch_size as u32);
            timings.rss_before_bytes = timings.rss_before_bytes.max(outcome.memory.rss_before);
            timings.rss_after_bytes = outcome.memory.rss_after;
            timings.decoded_bytes = plan.frame_bytes;
            timings.input_tensor_bytes = outcome.memory.input_tensor;
            timings.model_bytes = outcome.memory.model;
            if let Some(artifact) = &outcome.artifact {
                let img = image::load_from_memory(&artifact.bytes)
                    .map_err(|e| JobError::new(ErrorCode::Internal, format!("output frame: {e}")))?
                    .to_rgb8();
                self.encode_frame(msg, &plan, running, img).await?;
            } else if let Some(mut picture) = copy {
                annotate::draw(&mut picture, &outcome.prediction);
                self.encode_frame(msg, &plan, running, picture).await?;
            }
            let mut result = outcome.prediction;
            if let Prediction::Image { href, views, .. } = &mut result {
                // The frame's picture is frame `i` of the output video.
                href.clone_from(&output_href);
                views.clear();
            }
            let line = FrameResult {
                frame: i,
                time: i as f64 / plan.fps,
                result,
            };
            serde_json::to_writer(&mut lines, &line)
                .map_err(|e| JobError::new(ErrorCode::Internal, format!("frame {i}: {e}")))?;
            lines.push(b'\n');
            done += 1;
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                record.progress = Some(Progress {
                    frames_done: done,
                    frames_total: plan.frames_total.max(done),
                });
                self.save_progress(record).await?;
            }
        }
        let reader = running.reader.take().expect("decoder running");
        tokio::time::timeout_at(deadline, reader.finish())
            .await
            .map_err(|_| timed_out())??;
        if done == 0 {
            return Err(decode_failed("the video has no frame that could be decoded").into());
        }
        let video = match running.encoder.take() {
            Some(encoder) => {
                // The encoder pads an odd size by one pixel.
                let even = |n: u32| n + (n & 1);
                let size = (even(encoder.width), even(encoder.height));
                let bytes = encoder.finish().await?;
                Some((bytes, size.0, size.1))
            }
            None => None,
        };
        tracing::info!(frames = done, "video frames done");
        Ok(Done {
            plan,
            frames: done,
            lines,
            video,
        })
    }

    /// Feeds a frame of the output video — an image model's output frame,
    /// or the input frame with the pose or detections drawn on it — to the
    /// encoder, starting it at the first frame.
    async fn encode_frame(
        &self,
        msg: &JobMessage,
        plan: &Plan,
        running: &mut Running,
        img: RgbImage,
    ) -> Result<(), Stop> {
        if running.encoder.is_none() {
            let out = TempPath::new(&msg.id, "mp4");
            running.encoder = Some(Encoder::spawn(
                &self.video.ffmpeg,
                out,
                img.dimensions(),
                plan.fps,
            )?);
        }
        let encoder = running.encoder.as_mut().expect("encoder started");
        if (encoder.width, encoder.height) != img.dimensions() {
            return Err(JobError::new(
                ErrorCode::InferenceFailed,
                "the model's output frames changed size within the video",
            )
            .into());
        }
        encoder.push(img.as_raw()).await?;
        Ok(())
    }

    /// Saves the running record with its progress; a record that turned
    /// final meanwhile (a cancel) stops the job. A store hiccup only skips
    /// this update.
    async fn save_progress(&self, record: &JobRecord) -> Result<(), Stop> {
        match self.store.save(record, self.result_ttl).await {
            Ok(Saved::Written) => Ok(()),
            Ok(Saved::AlreadyFinished) => Err(Stop::Final),
            Err(e) => {
                tracing::warn!(error = %e, "progress not saved");
                Ok(())
            }
        }
    }

    /// Stores the frames and the output video, then the final record.
    async fn store_video(
        &self,
        msg: &JobMessage,
        mut record: JobRecord,
        entry: &ModelEntry,
        done: Done,
        timings: Timings,
        fence: Option<&StorageFence>,
    ) -> Settle {
        let id = msg.id;
        // The documents first: a record that names them must find them.
        let mut blobs = vec![(self.store.output_view_key(id, FRAMES_VIEW), &done.lines[..])];
        if let Some((video, _, _)) = &done.video {
            blobs.push((self.store.output_key(id), &video[..]));
        }
        for (key, bytes) in blobs {
            if let Err(e) = self.store.put_blob(&key, bytes, self.result_ttl).await {
                tracing::warn!(error = %e, "cannot store video results; requeueing");
                return Settle::Requeue;
            }
        }
        let frame_kind = serde_json::to_value(entry.manifest.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let prediction = Prediction::Video {
            frames: done.frames,
            fps: done.plan.fps,
            duration: done.frames as f64 / done.plan.fps,
            width: done.plan.width,
            height: done.plan.height,
            frame_kind,
            frames_href: format!("/v1/jobs/{id}/frames"),
            output: done.video.as_ref().map(|(_, w, h)| VideoOutput {
                href: format!("/v1/jobs/{id}/output"),
                content_type: encode::CONTENT_TYPE.into(),
                width: *w,
                height: *h,
            }),
        };
        record.progress = Some(Progress {
            frames_done: done.frames,
            frames_total: done.frames,
        });
        let _ = record.succeed(prediction, timings, Utc::now());
        if let Some(uri) = &msg.output_uri {
            let video = done.video.as_ref().map(|(v, _, _)| &v[..]);
            let delivery =
                storage::write_video_output(&self.fetcher, fence, uri, &record, video, &done.lines)
                    .await;
            record.output = Some(delivery);
        }
        self.finish(msg, &record).await
    }
}
