//! The limits and tools of video jobs (docs/video.md).
//!
//! A video costs far more than its upload: a few MB of H.264 can declare
//! hours of 4K frames. The worker reads the container header with
//! `ffprobe` first and refuses a video over these limits before decoding
//! anything; while decoding it enforces them again on the frames that
//! actually arrive (headers can lie). The upload size itself is
//! `max_video_bytes`, with the other body limits ([`super::LimitConfig`]),
//! and so is the frame cap `video_max_frames`: the API refuses a job that
//! asks for more with `400` before it is queued, and the worker holds every
//! job to it again.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Options of video jobs: limits (checked from the container header, then
/// while decoding), the default frame cap and the FFmpeg tools.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct VideoConfig {
    /// Longest video accepted, in seconds (as its container header says);
    /// a longer one fails with `video_too_long` before any decoding.
    #[arg(long, env = "INFERQ_VIDEO_MAX_DURATION_SECS", default_value_t = 600.0)]
    #[serde(default = "default_duration")]
    pub video_max_duration_secs: f64,
    /// Frames a video job runs when it gives no `max_frames`: the first
    /// this many sampled frames (at most `video_max_frames`).
    #[arg(long, env = "INFERQ_VIDEO_DEFAULT_MAX_FRAMES", default_value_t = 300)]
    #[serde(default = "default_frames")]
    pub video_default_max_frames: u64,
    /// Largest frame, in pixels (width × height); 8 294 400 is 3840×2160.
    #[arg(
        long,
        env = "INFERQ_VIDEO_MAX_FRAME_PIXELS",
        default_value_t = 8_294_400
    )]
    #[serde(default = "default_frame_pixels")]
    pub video_max_frame_pixels: u64,
    /// Most bytes of decoded RGB frames one job may produce (frames ×
    /// width × height × 3), checked from the header and while decoding.
    /// Frames are streamed, so memory holds only a few of them at a time.
    #[arg(long, env = "INFERQ_VIDEO_MAX_DECODED_BYTES", default_value_t = 4 << 30)]
    #[serde(default = "default_decoded")]
    pub video_max_decoded_bytes: u64,
    /// Seconds a video job's decoding and inference may take; past it the
    /// decoder is killed and the job fails with `video_too_long`.
    #[arg(long, env = "INFERQ_VIDEO_TIMEOUT_SECS", default_value_t = 900.0)]
    #[serde(default = "default_timeout")]
    pub video_timeout_secs: f64,
    /// The `ffmpeg` executable (Debian: `apt-get install ffmpeg`).
    #[arg(long, env = "INFERQ_FFMPEG", default_value = "ffmpeg")]
    #[serde(default = "default_ffmpeg")]
    pub ffmpeg: PathBuf,
    /// The `ffprobe` executable (same package).
    #[arg(long, env = "INFERQ_FFPROBE", default_value = "ffprobe")]
    #[serde(default = "default_ffprobe")]
    pub ffprobe: PathBuf,
}

fn default_duration() -> f64 {
    600.0
}
fn default_frames() -> u64 {
    300
}
fn default_frame_pixels() -> u64 {
    8_294_400
}
fn default_decoded() -> u64 {
    4 << 30
}
fn default_timeout() -> f64 {
    900.0
}
fn default_ffmpeg() -> PathBuf {
    "ffmpeg".into()
}
fn default_ffprobe() -> PathBuf {
    "ffprobe".into()
}

impl Default for VideoConfig {
    /// The same values as the command-line defaults.
    fn default() -> Self {
        VideoConfig {
            video_max_duration_secs: default_duration(),
            video_default_max_frames: default_frames(),
            video_max_frame_pixels: default_frame_pixels(),
            video_max_decoded_bytes: default_decoded(),
            video_timeout_secs: default_timeout(),
            ffmpeg: default_ffmpeg(),
            ffprobe: default_ffprobe(),
        }
    }
}
