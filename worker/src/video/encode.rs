//! The encoder of an image model's output video: an `ffmpeg` subprocess fed
//! raw RGB frames on its stdin, writing H.264 in an MP4 file (Debian's
//! FFmpeg has libx264), read back once the last frame is in.
//!
//! The MP4 is written to a file rather than a pipe so that its index can
//! go first (`+faststart`: browsers play it while it downloads). Odd frame
//! sizes are padded by one pixel (H.264 in 4:2:0 needs even sizes).

use std::path::Path;
use std::process::Stdio;

use inferq_core::job::JobError;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};

use super::{StderrTail, TempPath};
use inferq_core::ErrorCode;

/// What the output video is served as.
pub const CONTENT_TYPE: &str = "video/mp4";

fn failed(msg: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::InferenceFailed, msg)
}

/// A running encoder.
pub struct Encoder {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: StderrTail,
    out: TempPath,
    pub width: u32,
    pub height: u32,
}

impl Encoder {
    /// Starts an encoder of `width`×`height` RGB frames at `fps` into `out`.
    pub fn spawn(
        ffmpeg: &Path,
        out: TempPath,
        (width, height): (u32, u32),
        fps: f64,
    ) -> Result<Self, JobError> {
        let mut cmd = tokio::process::Command::new(ffmpeg);
        cmd.args(["-hide_banner", "-v", "error", "-y"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s"])
            .arg(format!("{width}x{height}"))
            .arg("-framerate")
            .arg(format!("{fps:.6}"))
            .args(["-i", "pipe:0", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"])
            .args(["-c:v", "libx264", "-preset", "veryfast", "-crf", "20"])
            .args(["-pix_fmt", "yuv420p", "-threads", "1"])
            .args(["-movflags", "+faststart", "-f", "mp4"])
            .arg(out.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| failed(format!("cannot run {} ({e})", ffmpeg.display())))?;
        let stdin = child.stdin.take();
        let stderr = StderrTail::drain(child.stderr.take().expect("stderr is piped"));
        Ok(Encoder {
            child,
            stdin,
            stderr,
            out,
            width,
            height,
        })
    }

    /// Feeds one frame (`width × height × 3` bytes).
    pub async fn push(&mut self, rgb: &[u8]) -> Result<(), JobError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| failed("the encoder is closed"))?;
        if let Err(e) = stdin.write_all(rgb).await {
            let why = self.stderr.text().await;
            return Err(failed(format!(
                "encoding the output video failed: {e} {why}"
            )));
        }
        Ok(())
    }

    /// Closes the input, waits for the encoder and returns the MP4 bytes.
    pub async fn finish(mut self) -> Result<Vec<u8>, JobError> {
        drop(self.stdin.take());
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| failed(format!("waiting for the encoder failed: {e}")))?;
        if !status.success() {
            let why = self.stderr.text().await;
            return Err(failed(format!("encoding the output video failed: {why}")));
        }
        tokio::fs::read(self.out.path())
            .await
            .map_err(|e| failed(format!("reading the output video failed: {e}")))
    }

    /// Kills the encoder and reaps it.
    pub async fn kill(mut self) {
        drop(self.stdin.take());
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
