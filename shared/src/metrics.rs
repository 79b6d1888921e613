//! Metric names, defined in one place.
//!
//! Every metric InferQ exports is named here so dashboards and alerts have a
//! single list to check against. Conventions: prefix `inferq_`, base units
//! (`_seconds`, `_bytes`), counters end in `_total`, labels are bounded
//! (model, version, stage, outcome, code) and never carry a job id.

/// Jobs accepted by the API (counter; labels: model).
pub const JOBS_SUBMITTED_TOTAL: &str = "inferq_jobs_submitted_total";
/// Submissions refused (counter; labels: code).
pub const JOBS_REJECTED_TOTAL: &str = "inferq_jobs_rejected_total";
/// Jobs finished by a worker (counter; labels: model, outcome).
pub const JOBS_COMPLETED_TOTAL: &str = "inferq_jobs_completed_total";
/// Duration of each job stage (histogram; labels: model, stage).
pub const STAGE_DURATION_SECONDS: &str = "inferq_stage_duration_seconds";
/// Jobs a worker holds right now, queued to or running on its threads (gauge).
pub const WORKER_IN_FLIGHT: &str = "inferq_worker_in_flight_jobs";
/// Time to load one model session (histogram; labels: model).
pub const MODEL_LOAD_SECONDS: &str = "inferq_model_load_seconds";

/// Stage label values.
pub mod stage {
    pub const QUEUE: &str = "queue";
    pub const FETCH: &str = "fetch";
    pub const DECODE: &str = "decode";
    pub const PREPROCESS: &str = "preprocess";
    pub const INFERENCE: &str = "inference";
    pub const TOTAL: &str = "total";
}
