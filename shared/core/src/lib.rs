//! InferQ's vocabulary: what the API, the workers and the backends agree on.
//!
//! The API and the workers are separate processes that only meet through the
//! broker and the result store, so the words they both use live here and
//! nowhere else: the job record and its state machine ([`job`]), the wire
//! format of a queued job ([`message`]), model manifests ([`manifest`]), the
//! answers a model gives ([`prediction`]), error codes ([`error`]), trace
//! context ([`trace`]), the webhook and batch records ([`webhook`],
//! [`batch_prediction`]), cheap header-only image identification ([`sniff`])
//! and video recognition, sampling and per-frame results ([`video`]).
//!
//! Nothing here does I/O, decodes pixels or runs a model: the crate is
//! plain data, parsing and pure rules, so every other crate can depend on
//! it without pulling in a network stack or an image decoder.

pub mod batch_prediction;
pub mod error;
pub mod job;
pub mod manifest;
pub mod message;
pub mod prediction;
pub mod sniff;
pub mod trace;
pub mod video;
pub mod webhook;

pub use error::ErrorCode;
pub use job::{JobId, JobRecord, JobStatus};
