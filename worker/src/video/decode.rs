//! The decoder: an `ffmpeg` subprocess that writes the sampled frames as
//! raw RGB to a pipe, read one frame at a time.
//!
//! Memory is bounded by construction: the pipe holds at most the kernel's
//! buffer and [`FrameReader::next`] allocates one frame. The frame size is
//! pinned with a `scale` filter to the probed (upright) size, so the byte
//! stream can always be cut into frames, whatever the file claims later.
//! The process is killed and reaped by [`FrameReader::kill`] on every early
//! exit (cancel, limit, timeout, a failed frame); `kill_on_drop` backs that
//! up if the task itself is dropped, so no decoder outlives its job.

use std::path::Path;
use std::process::Stdio;

use image::RgbImage;
use inferq_core::job::JobError;
use inferq_core::video::VideoFormat;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdout};

use super::probe::Plan;
use super::{StderrTail, decode_failed, demuxer};

/// A running decoder.
pub struct FrameReader {
    child: Child,
    stdout: ChildStdout,
    stderr: StderrTail,
    width: u32,
    height: u32,
}

impl FrameReader {
    /// Starts `ffmpeg` on `input` (read as `format`, from the file only)
    /// with the plan's sampling: `fps` frames per second, at most
    /// `max_frames`, every frame `width`×`height` RGB. One decoding thread
    /// and one filter thread, so the decoder does not crowd out the pinned
    /// inference threads.
    pub fn spawn(
        ffmpeg: &Path,
        input: &Path,
        format: VideoFormat,
        plan: &Plan,
    ) -> Result<Self, JobError> {
        let filter = format!(
            "fps={:.6},scale={}:{}:flags=bilinear",
            plan.fps, plan.width, plan.height
        );
        let mut cmd = tokio::process::Command::new(ffmpeg);
        cmd.args(["-nostdin", "-hide_banner", "-v", "error"])
            .args(["-threads", "1", "-filter_threads", "1"])
            .args(["-protocol_whitelist", "file", "-f"])
            .arg(demuxer(format))
            .arg("-i")
            .arg(input)
            .args(["-map", "0:v:0", "-an", "-sn", "-dn", "-vf"])
            .arg(filter)
            .arg("-frames:v")
            .arg(plan.max_frames.to_string())
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            decode_failed(format!(
                "cannot run {} ({e}); the worker needs FFmpeg (apt-get install ffmpeg)",
                ffmpeg.display()
            ))
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = StderrTail::drain(child.stderr.take().expect("stderr is piped"));
        Ok(FrameReader {
            child,
            stdout,
            stderr,
            width: plan.width,
            height: plan.height,
        })
    }

    /// The next frame, or `None` at the end of the stream (a partial frame
    /// at the very end, from a decoder that died mid-write, is dropped).
    pub async fn next(&mut self) -> Result<Option<RgbImage>, JobError> {
        let len = self.width as usize * self.height as usize * 3;
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            let n = self
                .stdout
                .read(&mut buf[filled..])
                .await
                .map_err(|e| decode_failed(format!("reading decoded frames failed: {e}")))?;
            if n == 0 {
                return Ok(None);
            }
            filled += n;
        }
        Ok(RgbImage::from_raw(self.width, self.height, buf))
    }

    /// Waits for the decoder to exit after the last frame; a failure
    /// status becomes `video_decode_failed` with the end of its messages.
    pub async fn finish(mut self) -> Result<(), JobError> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| decode_failed(format!("waiting for ffmpeg failed: {e}")))?;
        let messages = self.stderr.text().await;
        if status.success() {
            if !messages.is_empty() {
                tracing::debug!(messages = %messages, "ffmpeg reported problems while decoding");
            }
            Ok(())
        } else {
            Err(decode_failed(format!(
                "the video could not be decoded: {}",
                if messages.is_empty() {
                    status.to_string()
                } else {
                    messages
                }
            )))
        }
    }

    /// Kills the decoder and reaps it (no zombie is left behind).
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
