//! Pixels in, answers out: decoding and preprocessing images for a model
//! ([`preprocess`]), and turning its output tensors into results
//! ([`postprocess`]).
//!
//! Only the worker (and the benchmarks) link this crate: the API validates
//! images from their headers ([`inferq_core::sniff`]) and never decodes
//! pixels, which the crate graph now enforces. No network, no ONNX Runtime
//! types: everything is testable with plain byte slices.

pub mod postprocess;
pub mod preprocess;

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
