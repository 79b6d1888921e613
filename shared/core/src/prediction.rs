//! What a model answered for one image, as clients see it in a job's `result`.
//!
//! These are the result *types*; computing them from output tensors is the
//! vision crate's postprocessing. They live in the vocabulary because the
//! job record carries them and the API serves them without running a model.
//! Coordinates are in the submitted image's pixels.

use serde::{Deserialize, Serialize};

/// One output tensor as read from the model, batch dimension included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RawOutput {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
}

/// A model's answer for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Prediction {
    /// The `k` most likely classes, most likely first.
    Classification { top_k: Vec<ClassScore> },
    /// Named points in original-image pixels, and the edges between them.
    ///
    /// A multi-person model also lists every person found in `persons`
    /// (best first, each with its own points, score and box); `keypoints`
    /// then repeats the best person's points, so a client written for one
    /// person keeps working.
    Keypoints {
        keypoints: Vec<Keypoint>,
        skeleton: Vec<[usize; 2]>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        persons: Option<Vec<Person>>,
    },
    /// Boxes in original-image pixels, best first.
    Detection { detections: Vec<Detection> },
    /// An output image, served at `href` (`GET /v1/jobs/{id}/output`).
    ///
    /// A one-channel output (a heatmap) is the grey PNG of its values;
    /// `views` names the other renderings served at `href?view=NAME`
    /// (`colormap`, `overlay` on the input) and `peaks` lists its local
    /// maxima in the submitted image's pixels, strongest first.
    Image {
        width: u32,
        height: u32,
        content_type: String,
        href: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        views: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        peaks: Vec<Peak>,
    },
    /// A feature vector.
    Embedding {
        dimensions: usize,
        normalized: bool,
        values: Vec<f32>,
    },
    /// Raw output tensors.
    Tensor { outputs: Vec<RawOutput> },
    /// A video job's summary: the model ran on `frames` sampled frames
    /// (`fps` per second of video); each frame's result is one line of
    /// `frames_href` (JSON Lines). Image models also give an `output` video.
    Video {
        frames: u64,
        fps: f64,
        /// Seconds of video the sampled frames cover.
        duration: f64,
        width: u32,
        height: u32,
        /// What each frame's result is (`classification`, `keypoints`, …).
        frame_kind: String,
        frames_href: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<VideoOutput>,
    },
}

/// A local maximum of a heatmap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Peak {
    /// Position in the submitted image's pixels (the centre of the output
    /// pixel, mapped back through the output scale).
    pub x: f32,
    pub y: f32,
    /// The heatmap's value there, mapped onto 0..1 of the output range.
    pub value: f32,
}

/// One class of a classification result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClassScore {
    pub index: usize,
    pub label: String,
    pub probability: f32,
}

/// A named point in original-image pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Keypoint {
    pub name: String,
    pub x: f32,
    pub y: f32,
    pub score: f32,
}

/// One person found by a multi-person pose model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Person {
    /// The model's confidence that this is a person.
    pub score: f32,
    /// Where the person is, in original-image pixels (when the model gives
    /// a box).
    #[serde(rename = "box", default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<BoundingBox>,
    /// The person's points at or above the manifest's `score_threshold`.
    pub keypoints: Vec<Keypoint>,
}

/// A box in original-image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BoundingBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BoundingBox {
    pub fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    /// Intersection over union.
    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let inter = BoundingBox {
            x1: self.x1.max(other.x1),
            y1: self.y1.max(other.y1),
            x2: self.x2.min(other.x2),
            y2: self.y2.min(other.y2),
        }
        .area();
        let union = self.area() + other.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

/// One detected object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Detection {
    pub class: usize,
    pub label: String,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: BoundingBox,
}

/// The output video of a video job (image-to-image models).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VideoOutput {
    /// `GET` this for the video (`/v1/jobs/{id}/output`).
    pub href: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
}
