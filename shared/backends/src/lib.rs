//! The services InferQ's processes talk to, each behind a small interface
//! with a networked and an in-memory implementation side by side:
//!
//! - [`broker`]: the job queue (RabbitMQ quorum queue, or in-process);
//! - [`store`]: job records, results, admission counts, blobs, dead letters,
//!   due-sets and batch documents (Redis, or in-process);
//! - [`fetch`]: reading and writing storage references (`gs://`, `s3://`,
//!   `https://`, `file://`) under one SSRF policy;
//! - [`webhook`]: the outbox dispatcher that delivers completion webhooks;
//! - [`repository`]: the model directory on disk, rescanned on change;
//! - [`tenant`]: what an API key entry grants its tenant (storage prefixes,
//!   webhook secrets), read by the API and the worker alike.
//!
//! Everything here speaks the vocabulary of [`inferq_core`]; nothing here
//! decodes an image or runs a model.

pub mod broker;
pub mod fetch;
pub mod repository;
pub mod store;
pub mod tenant;
pub mod webhook;
