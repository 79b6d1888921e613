//! Reading a video's container header with `ffprobe`, and the plan a job
//! runs by: which size the frames come at, how many are sampled, and
//! whether the video is refused before a single frame is decoded.
//!
//! [`parse`] and [`plan`] are pure (unit-tested on ffprobe's JSON); [`run`]
//! is the subprocess. The header can lie (a hostile file may declare one
//! second and hold an hour): the decode loop checks the same limits again
//! on the frames that actually arrive.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use inferq_core::job::JobError;
use inferq_core::video::{VideoFormat, VideoParams};
use serde::Deserialize;

use super::{VideoSettings, decode_failed, demuxer, too_large, too_long};

/// What the container header says about the first video stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Frame size as displayed (a 90° rotation already applied).
    pub width: u32,
    pub height: u32,
    /// Seconds, when the container says.
    pub duration: Option<f64>,
    /// Frames per second of the source (average, else nominal).
    pub fps: f64,
}

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    streams: Vec<Stream>,
    format: Option<Format>,
}

#[derive(Deserialize)]
struct Stream {
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    duration: Option<String>,
    nb_frames: Option<String>,
    #[serde(default)]
    side_data_list: Vec<SideData>,
    #[serde(default)]
    tags: HashMap<String, String>,
}

#[derive(Deserialize)]
struct SideData {
    rotation: Option<f64>,
}

#[derive(Deserialize)]
struct Format {
    duration: Option<String>,
}

/// `"30000/1001"` or `"25"` as a positive finite rate; `None` for `0/0`.
fn rate(text: &str) -> Option<f64> {
    let value = match text.split_once('/') {
        Some((n, d)) => n.trim().parse::<f64>().ok()? / d.trim().parse::<f64>().ok()?,
        None => text.trim().parse().ok()?,
    };
    (value.is_finite() && value > 0.0).then_some(value)
}

fn seconds(text: Option<&String>) -> Option<f64> {
    text.and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
}

/// Reads ffprobe's JSON (`-show_streams -show_format -select_streams v:0`).
pub fn parse(json: &[u8]) -> Result<Probe, JobError> {
    let doc: Doc = serde_json::from_slice(json)
        .map_err(|e| decode_failed(format!("unreadable ffprobe answer: {e}")))?;
    let stream = doc
        .streams
        .into_iter()
        .next()
        .ok_or_else(|| decode_failed("the file has no video stream"))?;
    let (width, height) = match (stream.width, stream.height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => return Err(decode_failed("the video stream has no frame size")),
    };
    let duration = seconds(stream.duration.as_ref())
        .or_else(|| seconds(doc.format.as_ref().and_then(|f| f.duration.as_ref())));
    let frames = stream
        .nb_frames
        .as_deref()
        .and_then(|n| n.trim().parse::<u64>().ok())
        .filter(|n| *n > 0);
    let fps = stream
        .avg_frame_rate
        .as_deref()
        .and_then(rate)
        .or_else(|| stream.r_frame_rate.as_deref().and_then(rate))
        .or_else(|| Some(frames? as f64 / duration?))
        .filter(|f| f.is_finite() && *f > 0.0)
        .ok_or_else(|| decode_failed("the video stream has no frame rate"))?;
    // A phone video stored sideways: FFmpeg turns it upright while decoding.
    let rotation = stream
        .side_data_list
        .iter()
        .find_map(|s| s.rotation)
        .or_else(|| stream.tags.get("rotate").and_then(|r| r.parse().ok()))
        .unwrap_or(0.0);
    let quarter = (rotation / 90.0).round() as i64;
    let (width, height) = if quarter.rem_euclid(2) == 1 {
        (height, width)
    } else {
        (width, height)
    };
    Ok(Probe {
        width,
        height,
        duration,
        fps,
    })
}

/// How a job's video is decoded and sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub width: u32,
    pub height: u32,
    /// Frames per second sampled (at most the source's rate).
    pub fps: f64,
    /// The most frames decoded (the job's `max_frames` or the default).
    pub max_frames: u64,
    /// The frames expected: `max_frames`, or fewer for a short video.
    pub frames_total: u64,
    /// Bytes of one decoded RGB frame.
    pub frame_bytes: u64,
}

/// Checks the header against the limits and plans the sampling; refuses
/// (`video_too_long`, `video_too_large`) before anything is decoded.
pub fn plan(probe: &Probe, params: VideoParams, s: &VideoSettings) -> Result<Plan, JobError> {
    if let Some(d) = probe.duration
        && d > s.max_duration_secs
    {
        return Err(too_long(format!(
            "the video lasts {d:.1} s, above the limit of {} s",
            s.max_duration_secs
        )));
    }
    let pixels = u64::from(probe.width) * u64::from(probe.height);
    if pixels > s.max_frame_pixels {
        return Err(too_large(format!(
            "frames of {}x{} = {pixels} pixels are above the limit of {}",
            probe.width, probe.height, s.max_frame_pixels
        )));
    }
    // The default never asks for more than the cap: a worker whose cap was
    // lowered below the default still runs a job that names no number.
    let max_frames = params
        .max_frames
        .unwrap_or(s.default_max_frames.min(s.max_frames));
    if max_frames > s.max_frames {
        return Err(too_large(format!(
            "max_frames = {max_frames} is above this worker's limit of {}",
            s.max_frames
        )));
    }
    let fps = params.fps.map_or(probe.fps, |f| f.min(probe.fps));
    let frames_total = match probe.duration {
        Some(d) => ((d * fps).round() as u64).clamp(1, max_frames),
        None => max_frames,
    };
    let frame_bytes = pixels * 3;
    let decoded = frame_bytes.saturating_mul(frames_total);
    if decoded > s.max_decoded_bytes {
        return Err(too_large(format!(
            "{frames_total} frames of {}x{} decode to {decoded} bytes, above the limit of {} \
             (sample fewer: fps= or max_frames=)",
            probe.width, probe.height, s.max_decoded_bytes
        )));
    }
    Ok(Plan {
        width: probe.width,
        height: probe.height,
        fps,
        max_frames,
        frames_total,
        frame_bytes,
    })
}

/// Runs `ffprobe` on `input` (read as `format`, files only), at most
/// `timeout` long; the process is killed if it takes longer.
pub async fn run(
    ffprobe: &Path,
    input: &Path,
    format: VideoFormat,
    timeout: Duration,
) -> Result<Probe, JobError> {
    let mut cmd = tokio::process::Command::new(ffprobe);
    cmd.args(["-v", "error", "-protocol_whitelist", "file", "-f"])
        .arg(demuxer(format))
        .args(["-print_format", "json", "-show_format", "-show_streams"])
        .args(["-select_streams", "v:0"])
        .arg(input)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| {
        decode_failed(format!(
            "cannot run {} ({e}); the worker needs FFmpeg (apt-get install ffmpeg)",
            ffprobe.display()
        ))
    })?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| too_long("reading the video header took too long"))?
        .map_err(|e| decode_failed(format!("ffprobe failed: {e}")))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(decode_failed(format!(
            "not a readable video: {}",
            super::tail(why.trim(), 300)
        )));
    }
    parse(&out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> VideoSettings {
        VideoSettings {
            max_duration_secs: 10.0,
            max_frames: 100,
            default_max_frames: 20,
            max_frame_pixels: 1920 * 1080,
            max_decoded_bytes: 200 * 1920 * 1080 * 3,
            ..VideoSettings::default()
        }
    }

    fn probe(json: &str) -> Result<Probe, JobError> {
        parse(json.as_bytes())
    }

    #[test]
    fn reads_an_mp4_header() {
        let p = probe(
            r#"{"streams":[{"width":160,"height":120,"avg_frame_rate":"10/1","r_frame_rate":"10/1",
               "duration":"2.000000","nb_frames":"20"}],"format":{"duration":"2.0"}}"#,
        )
        .unwrap();
        assert_eq!(
            (p.width, p.height, p.duration, p.fps),
            (160, 120, Some(2.0), 10.0)
        );
    }

    #[test]
    fn webm_duration_comes_from_the_container_and_rotation_swaps_axes() {
        let p = probe(
            r#"{"streams":[{"width":64,"height":48,"avg_frame_rate":"0/0","r_frame_rate":"5/1",
               "side_data_list":[{"rotation":-90}]}],"format":{"duration":"2.000000"}}"#,
        )
        .unwrap();
        assert_eq!(
            (p.width, p.height, p.duration, p.fps),
            (48, 64, Some(2.0), 5.0)
        );
        // No rate at all, but frames and duration: their ratio.
        let p = probe(
            r#"{"streams":[{"width":8,"height":8,"avg_frame_rate":"0/0","nb_frames":"30",
               "duration":"3"}]}"#,
        )
        .unwrap();
        assert_eq!(p.fps, 10.0);
    }

    #[test]
    fn headers_without_a_usable_stream_are_decode_failures() {
        for bad in [
            r#"{"streams":[],"format":{}}"#,
            r#"{"streams":[{"width":0,"height":5,"avg_frame_rate":"5/1"}]}"#,
            r#"{"streams":[{"width":4,"height":5,"avg_frame_rate":"0/0"}]}"#,
            "not json",
        ] {
            let e = probe(bad).unwrap_err();
            assert_eq!(e.code.as_str(), "video_decode_failed", "{bad}: {e}");
        }
    }

    fn header(w: u32, h: u32, duration: Option<f64>, fps: f64) -> Probe {
        Probe {
            width: w,
            height: h,
            duration,
            fps,
        }
    }

    #[test]
    fn plans_sampling_within_the_caps() {
        let s = settings();
        let none = VideoParams::default();
        // 2 s at 10 fps: 20 frames, the default cap exactly.
        let p = plan(&header(160, 120, Some(2.0), 10.0), none, &s).unwrap();
        assert_eq!((p.fps, p.frames_total, p.max_frames), (10.0, 20, 20));
        assert_eq!(p.frame_bytes, 160 * 120 * 3);
        // Sampled at 2 fps: 4 frames; a higher rate than the source's is the source's.
        let two = VideoParams {
            fps: Some(2.0),
            max_frames: None,
        };
        assert_eq!(
            plan(&header(16, 16, Some(2.0), 10.0), two, &s)
                .unwrap()
                .frames_total,
            4
        );
        let fast = VideoParams {
            fps: Some(100.0),
            max_frames: Some(50),
        };
        let p = plan(&header(16, 16, Some(2.0), 10.0), fast, &s).unwrap();
        assert_eq!((p.fps, p.frames_total), (10.0, 20));
        // Unknown duration: plan for the cap; the decoder enforces the rest.
        assert_eq!(
            plan(&header(16, 16, None, 30.0), none, &s)
                .unwrap()
                .frames_total,
            20
        );
        // A default above the cap runs the cap, instead of failing every job
        // that names no number.
        let low = VideoSettings {
            max_frames: 8,
            ..settings()
        };
        let p = plan(&header(16, 16, Some(2.0), 10.0), none, &low).unwrap();
        assert_eq!((p.max_frames, p.frames_total), (8, 8));
    }

    #[test]
    fn refuses_over_the_limits_before_decoding() {
        let s = settings();
        let none = VideoParams::default();
        let code = |r: Result<Plan, JobError>| r.unwrap_err().code.as_str();
        assert_eq!(
            code(plan(&header(16, 16, Some(10.5), 10.0), none, &s)),
            "video_too_long"
        );
        assert_eq!(
            code(plan(&header(3840, 2160, Some(1.0), 10.0), none, &s)),
            "video_too_large"
        );
        let many = VideoParams {
            fps: None,
            max_frames: Some(101),
        };
        assert_eq!(
            code(plan(&header(16, 16, Some(1.0), 10.0), many, &s)),
            "video_too_large"
        );
        // 100 full-HD frames fit the byte limit of 200; a byte limit of 50 does not.
        let hundred = VideoParams {
            fps: None,
            max_frames: Some(100),
        };
        plan(&header(1920, 1080, Some(10.0), 10.0), hundred, &s).unwrap();
        let tight = VideoSettings {
            max_decoded_bytes: 50 * 1920 * 1080 * 3,
            ..settings()
        };
        assert_eq!(
            code(plan(&header(1920, 1080, Some(10.0), 10.0), hundred, &tight)),
            "video_too_large"
        );
    }
}
