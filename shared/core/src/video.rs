//! Video inputs: recognising them from their first bytes, the per-job
//! sampling options, the progress figures and the per-frame results.
//!
//! A job's input is a video when its bytes are an ISO-BMFF container (MP4,
//! MOV: an `ftyp` box first), a Matroska/WebM file (the EBML magic) or a GIF
//! with more than one frame. The API recognises them here, without
//! decoding; the worker decodes them with FFmpeg (a subprocess) and runs the
//! model on every sampled frame. A still GIF stays an image, exactly as
//! before videos were accepted. The types the job record and the
//! `/v1/jobs/{id}/frames` document carry live here too, beside the rules.

use serde::{Deserialize, Serialize};

use crate::prediction::Prediction;
pub use crate::prediction::VideoOutput;

/// Video containers InferQ accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoFormat {
    Mp4,
    Mov,
    Webm,
    Matroska,
    /// A GIF with more than one frame.
    Gif,
}

impl VideoFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            VideoFormat::Mp4 => "mp4",
            VideoFormat::Mov => "mov",
            VideoFormat::Webm => "webm",
            VideoFormat::Matroska => "matroska",
            VideoFormat::Gif => "gif",
        }
    }
}

/// ISO-BMFF brands of still images (HEIF, AVIF): an `ftyp` box alone does
/// not make a video.
const IMAGE_BRANDS: [&[u8; 4]; 10] = [
    b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1",
];

/// Identifies a video container from its first bytes; `None` for anything
/// else (images included, a still GIF included).
pub fn sniff(data: &[u8]) -> Option<VideoFormat> {
    match data {
        [_, _, _, _, b'f', b't', b'y', b'p', brand @ ..] if brand.len() >= 4 => {
            let brand: &[u8; 4] = brand[..4].try_into().ok()?;
            if IMAGE_BRANDS.contains(&brand) {
                None
            } else if brand == b"qt  " {
                Some(VideoFormat::Mov)
            } else {
                Some(VideoFormat::Mp4)
            }
        }
        [0x1A, 0x45, 0xDF, 0xA3, ..] => {
            // The EBML header names the document type; WebM says so early.
            let head = &data[..data.len().min(64)];
            if head.windows(4).any(|w| w == b"webm") {
                Some(VideoFormat::Webm)
            } else {
                Some(VideoFormat::Matroska)
            }
        }
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] if gif_frames(data, 2) >= 2 => {
            Some(VideoFormat::Gif)
        }
        _ => None,
    }
}

/// Counts the image descriptors of a GIF, stopping at `stop_at`; a
/// truncated or corrupt file counts the frames seen so far. Walks the block
/// structure only (sub-block lengths), never the LZW data.
pub fn gif_frames(data: &[u8], stop_at: usize) -> usize {
    let Some(&flags) = data.get(10) else {
        return 0;
    };
    let table = |flags: u8| {
        if flags & 0x80 != 0 {
            3usize << ((flags & 0x07) + 1)
        } else {
            0
        }
    };
    let mut at = 13 + table(flags);
    let mut frames = 0;
    // Skips a run of data sub-blocks starting at `at`; the index after its
    // terminator, or None when truncated.
    let skip_blocks = |mut at: usize| -> Option<usize> {
        loop {
            let len = *data.get(at)? as usize;
            at += 1 + len;
            if len == 0 {
                return Some(at);
            }
        }
    };
    while frames < stop_at {
        match data.get(at) {
            Some(0x2C) => {
                let Some(&local) = data.get(at + 9) else {
                    return frames;
                };
                frames += 1;
                // Descriptor (10 bytes), local table, LZW code size, data.
                let Some(next) = skip_blocks(at + 10 + table(local) + 1) else {
                    return frames;
                };
                at = next;
            }
            Some(0x21) => {
                let Some(next) = skip_blocks(at + 2) else {
                    return frames;
                };
                at = next;
            }
            _ => return frames,
        }
    }
    frames
}

/// How a job samples its video: at most `fps` frames per second of video
/// (absent: every frame) and at most `max_frames` frames (absent: the
/// worker's default cap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VideoParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frames: Option<u64>,
}

/// The output view under which a video job's per-frame results are stored
/// beside the record (served at `/v1/jobs/{id}/frames`).
pub const FRAMES_VIEW: &str = "frames";

/// The media type of the per-frame results (JSON Lines).
pub const FRAMES_CONTENT_TYPE: &str = "application/x-ndjson";

/// Highest sampling rate a job may ask for, in frames per second.
pub const MAX_FPS: f64 = 240.0;

/// How far a running video job has got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub frames_done: u64,
    /// The frames the job will run (estimated from the container header
    /// and the sampling; a file that ends early finishes with fewer).
    pub frames_total: u64,
}

/// One line of `GET /v1/jobs/{id}/frames` (JSON Lines): the model's answer
/// for one sampled frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FrameResult {
    /// Index among the sampled frames, from 0.
    pub frame: u64,
    /// Position of the frame in the video, in seconds.
    pub time: f64,
    /// The model's result for the frame, as for a still image. For image
    /// models the picture itself is the frame `frame` of the output video.
    pub result: Prediction,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GIF with `n` 1x1 frames (each with a graphic control extension).
    fn gif(n: usize) -> Vec<u8> {
        let mut v = b"GIF89a".to_vec();
        v.extend_from_slice(&[1, 0, 1, 0, 0x80, 0, 0]); // 1x1, global table of 2
        v.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
        for _ in 0..n {
            v.extend_from_slice(&[0x21, 0xF9, 4, 0, 10, 0, 0, 0]);
            v.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
            v.extend_from_slice(&[2, 2, 0x4C, 0x01, 0]);
        }
        v.push(0x3B);
        v
    }

    #[test]
    fn still_gifs_are_images_and_animated_ones_videos() {
        assert_eq!(gif_frames(&gif(1), 10), 1);
        assert_eq!(gif_frames(&gif(3), 10), 3);
        assert_eq!(gif_frames(&gif(3), 2), 2);
        assert_eq!(sniff(&gif(1)), None);
        assert_eq!(sniff(&gif(2)), Some(VideoFormat::Gif));
        // Truncated inside the second frame: only one frame is certain.
        let g = gif(2);
        assert_eq!(gif_frames(&g[..g.len() - 8], 10), 1);
        assert_eq!(gif_frames(b"GIF89a", 10), 0);
    }

    #[test]
    fn containers_by_magic() {
        let mut mp4 = vec![0, 0, 0, 0x20];
        mp4.extend_from_slice(b"ftypisom\0\0\x02\0");
        assert_eq!(sniff(&mp4), Some(VideoFormat::Mp4));
        let mut mov = vec![0, 0, 0, 0x14];
        mov.extend_from_slice(b"ftypqt  \0\0\0\0");
        assert_eq!(sniff(&mov), Some(VideoFormat::Mov));
        let mut avif = vec![0, 0, 0, 0x1c];
        avif.extend_from_slice(b"ftypavif\0\0\0\0");
        assert_eq!(sniff(&avif), None);
        let mut webm = vec![0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x86, 0x81, 1];
        webm.extend_from_slice(b"\x42\x82\x84webm");
        assert_eq!(sniff(&webm), Some(VideoFormat::Webm));
        let mkv = [0x1A, 0x45, 0xDF, 0xA3, 0x42, 0x82, 0x88, b'm', b'a', b't'];
        assert_eq!(sniff(&mkv), Some(VideoFormat::Matroska));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n"), None);
        assert_eq!(sniff(b"ftyp"), None);
        assert_eq!(sniff(b""), None);
    }
}
