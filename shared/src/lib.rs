//! Everything the InferQ API and worker processes agree on.
//!
//! The API and the workers are separate processes that only meet through the
//! broker and the result store, so the vocabulary they share lives here: job
//! and result types ([`job`]), the wire format of a queued job ([`message`]),
//! model manifests ([`manifest`]), cheap header-only image validation
//! ([`sniff`]), full decoding and manifest-driven preprocessing
//! ([`preprocess`]), turning raw model outputs into answers ([`postprocess`]),
//! configuration ([`config`]), API keys and scopes ([`auth`]), metric names ([`metrics`]), reading and
//! writing storage references such as `gs://` and `s3://` ([`fetch`]) and the two
//! abstractions every deployment plugs into: the job [`broker`] and the result
//! [`store`], each with an in-memory and a networked implementation.

pub mod auth;
pub mod batch;
pub mod broker;
pub mod config;
pub mod error;
pub mod fetch;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod job;
pub mod manifest;
pub mod message;
pub mod metrics;
pub mod postprocess;
pub mod preprocess;
pub mod repository;
pub mod sniff;
pub mod store;
pub mod telemetry;
pub mod trace;
pub mod webhook;

pub use error::ErrorCode;
pub use job::{JobId, JobRecord, JobStatus};
