//! Video jobs: a clip in, the model's answer for every sampled frame out.
//!
//! The decoding is FFmpeg's, driven as a subprocess ([`probe`] reads the
//! header with `ffprobe`, [`decode`] streams raw RGB frames out of
//! `ffmpeg`, [`encode`] turns an image model's output frames — or, for pose
//! and detection models, the input frames with the answer drawn on them by
//! [`annotate`] — back into an MP4), so the worker links no codec and a
//! decoder crash on a hostile file is a failed job, not a dead worker.
//! [`job`] is the loop: each frame goes
//! through the same engine, the same pinned inference threads and the same
//! preprocessing and postprocessing as a still image, a few frames in
//! flight at a time (they form micro-batches when the model batches).
//!
//! Limits (duration, frames, pixels per frame, decoded bytes, wall time)
//! are [`VideoSettings`], from `inferq_runtime::config::VideoConfig`.

mod annotate;
pub mod decode;
pub mod encode;
mod job;
pub mod probe;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use inferq_core::ErrorCode;
use inferq_core::job::JobError;
use inferq_core::video::VideoFormat;
use inferq_runtime::config::{LimitConfig, VideoConfig};
use tokio::io::AsyncReadExt;
use tokio::process::ChildStderr;

/// The worker's video limits and tools.
#[derive(Debug, Clone)]
pub struct VideoSettings {
    pub max_duration_secs: f64,
    /// The most frames a job may ask for.
    pub max_frames: u64,
    /// The frames a job runs when it does not say.
    pub default_max_frames: u64,
    pub max_frame_pixels: u64,
    pub max_decoded_bytes: u64,
    /// Wall time of one video job (probe, decode, inference).
    pub timeout: Duration,
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    /// Largest video read from `input.uri` (the upload limit of videos).
    pub max_video_bytes: usize,
}

impl VideoSettings {
    pub fn new(video: &VideoConfig, limits: &LimitConfig) -> Self {
        VideoSettings {
            max_duration_secs: video.video_max_duration_secs,
            max_frames: limits.video_max_frames.max(1),
            default_max_frames: video.video_default_max_frames.max(1),
            max_frame_pixels: video.video_max_frame_pixels,
            max_decoded_bytes: video.video_max_decoded_bytes,
            timeout: Duration::from_secs_f64(video.video_timeout_secs.max(1.0)),
            ffmpeg: video.ffmpeg.clone(),
            ffprobe: video.ffprobe.clone(),
            max_video_bytes: limits.video_limit(),
        }
    }
}

impl Default for VideoSettings {
    fn default() -> Self {
        let limits = LimitConfig {
            max_body_bytes: 20 << 20,
            max_video_bytes: 64 << 20,
            video_max_frames: 3000,
            max_pixels: 40_000_000,
            inline_max_bytes: 20 << 20,
            max_json_bytes: None,
            max_json_depth: 32,
            max_uri_bytes: 2048,
            max_instances: 64,
        };
        VideoSettings::new(&VideoConfig::default(), &limits)
    }
}

pub(crate) fn decode_failed(msg: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::VideoDecodeFailed, msg)
}

pub(crate) fn too_long(msg: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::VideoTooLong, msg)
}

pub(crate) fn too_large(msg: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::VideoTooLarge, msg)
}

/// The FFmpeg demuxer for a sniffed container: the file is read as what
/// the API and worker recognised, never as whatever FFmpeg's own probing
/// would guess (a playlist or a concat script could name other files).
pub(crate) fn demuxer(format: VideoFormat) -> &'static str {
    match format {
        VideoFormat::Mp4 | VideoFormat::Mov => "mov",
        VideoFormat::Webm | VideoFormat::Matroska => "matroska",
        VideoFormat::Gif => "gif",
    }
}

/// The last `max` characters of `text` (error messages end with the cause).
pub(crate) fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    &text[start..]
}

/// A file in the temporary directory, removed when dropped.
pub struct TempPath(PathBuf);

impl TempPath {
    /// A fresh, unused name for job `id` with this suffix.
    pub fn new(id: &impl std::fmt::Display, suffix: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        TempPath(std::env::temp_dir().join(format!("inferq-video-{id}-{pid}-{n}.{suffix}")))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads a subprocess's stderr to its end (so it never blocks on a full
/// pipe), keeping only the last few KB for error messages.
pub(crate) struct StderrTail {
    task: Option<tokio::task::JoinHandle<String>>,
    text: String,
}

/// Bytes of a subprocess's messages kept.
const STDERR_KEEP: usize = 2048;

impl StderrTail {
    pub(crate) fn drain(mut stderr: ChildStderr) -> Self {
        let task = tokio::spawn(async move {
            let mut kept: Vec<u8> = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * STDERR_KEEP {
                    kept.drain(..kept.len() - STDERR_KEEP);
                }
            }
            let text = String::from_utf8_lossy(&kept);
            tail(text.trim(), STDERR_KEEP).to_owned()
        });
        StderrTail {
            task: Some(task),
            text: String::new(),
        }
    }

    /// What was kept (waits for the stream to end: call once the process
    /// exited or was killed).
    pub(crate) async fn text(&mut self) -> String {
        if let Some(task) = self.task.take() {
            self.text = task.await.unwrap_or_default();
        }
        self.text.clone()
    }
}
