//! Process plumbing every InferQ binary shares: layered configuration
//! ([`config`]: defaults, then a file, then environment, then flags), the
//! container's memory limit ([`cgroup`]), the process's resident memory
//! ([`procmem`]),
//! logging ([`logging`]), signals and shutdown fan-out ([`signals`]) and the
//! Prometheus registry with the `/metrics` listener ([`metrics`]).
//!
//! It knows nothing about jobs, queues or images, so the API and the worker
//! can both stand on it without standing on each other.

pub mod cgroup;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod procmem;
pub mod signals;
