//! The handlers, one module per resource. The router that mounts them is
//! [`crate::app`], so every path and its scope are read in one place.
//!
//! - [`submit`], [`jobs`]: `POST /v1/jobs` and reading, waiting for and
//!   canceling jobs; [`frames`]: a video job's per-frame results; [`accept`]: the all-or-nothing step every new job
//!   takes (also from batches and storage events);
//! - [`batch_prediction`]: bulk batch prediction over a prefix or a JSONL
//!   file (not the inference micro-batches the worker forms);
//! - [`events`]: storage notifications that become jobs;
//! - [`predict`], [`tf_metadata`], [`kserve`]: the TF Serving and KServe
//!   v2 protocols;
//! - [`models`], [`register`]: listing and registering model versions;
//! - [`dead_letters`]: the operator's view of parked jobs;
//! - [`stats`], [`health`], [`openapi`], [`console`]: numbers, probes, the
//!   API document and the web console.

pub mod accept;
pub mod batch_prediction;
pub mod console;
pub mod dead_letters;
pub mod events;
pub mod frames;
pub mod health;
pub mod jobs;
pub mod kserve;
pub mod models;
pub mod openapi;
pub mod predict;
pub mod register;
pub mod stats;
pub mod submit;
pub mod tf_metadata;
