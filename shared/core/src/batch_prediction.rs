//! Batch prediction: the record of a batch and where its parts are stored.
//!
//! A batch runs a model over many inputs — every object under a storage
//! prefix, the lines of a JSONL file, or the URIs of a file list — by
//! fanning out ordinary jobs through the same queue and admission control
//! (the API's coordinator does that, see `inferq_api::batches`). What the
//! coordinator needs to survive a restart lives in the store, under the
//! store's `key` (`inferq_backends::store::Documents::key`) of:
//!
//! - `batch:{id}` — this [`BatchRecord`] (JSON);
//! - `batch:{id}:inputs` — index → input URI, for prefix and file-list
//!   inputs, written once when the input is listed, so a restart sees the
//!   same instances even if objects arrive under the prefix meanwhile;
//! - `batch:{id}:ok` / `batch:{id}:err` — index → the finished line of the
//!   results / errors file. Writing a line is idempotent, so a coordinator
//!   that takes over simply skips the indices present here.
//!
//! Every instance's job is submitted with the idempotency key
//! `batch:{id}:{index}`, so re-submitting after a crash finds the job made
//! the first time instead of running the image twice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::{JobError, JobId};
use crate::webhook::Webhook;

/// Where a batch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Accepted; no coordinator has started it yet.
    Queued,
    /// Jobs are being submitted and collected.
    Running,
    /// Every instance is finished; result files are being written.
    Writing,
    /// Result files written (instances may still have failed: see `failed`).
    Succeeded,
    /// The batch itself could not run (input unreadable, output unwritable).
    Failed,
    /// Canceled by its client; files written for what had finished.
    Canceled,
}

impl BatchState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            BatchState::Succeeded | BatchState::Failed | BatchState::Canceled
        )
    }
}

impl std::fmt::Display for BatchState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = serde_json::to_value(self).expect("state serialises");
        f.write_str(v.as_str().unwrap_or("?"))
    }
}

/// What a batch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// Every object under a storage prefix (`gs://b/dir/`, `file:///…/`).
    Prefix,
    /// A JSONL file, one instance per line: `{"b64": …}`, `{"uri": …}` or
    /// `{"tensor": …}`.
    Jsonl,
    /// A text file with one URI per line.
    FileList,
}

/// The batch's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchInput {
    pub kind: InputKind,
    pub uri: String,
}

/// Instance counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchCounts {
    /// Instances in the input; unknown until it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    pub succeeded: u64,
    pub failed: u64,
}

/// The record of one batch, as returned by `GET /v1/batches/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchRecord {
    pub id: JobId,
    pub state: BatchState,
    pub model: String,
    pub version: u64,
    pub input: BatchInput,
    /// The prefix the result, error and per-file outputs are written under.
    pub output: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Whether each file input also gets its own result object, at the same
    /// relative path under `output` with `.json` appended.
    pub mirror: bool,
    /// Instances per results/errors file.
    pub shard_size: u64,
    pub counts: BatchCounts,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The files written (`prediction.results-…`,
    /// `prediction.errors_stats-…` and the same error lines as
    /// `prediction.errors-…`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Why the batch failed as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// The client asked to cancel; the coordinator stops at its next step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// Size and SHA-256 of a JSONL input when first read: a coordinator
    /// resuming the batch refuses a file that changed meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_digest: Option<String>,
    /// Interruptions so far (store, broker or storage unavailable); the
    /// batch fails after [`MAX_RETRIES`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Why the last interruption happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Interruptions a batch survives; with the doubling pause between them
/// ([`retry_delay`]) that is about 40 minutes of unavailable dependencies.
pub const MAX_RETRIES: u32 = 12;

/// The pause before taking a batch up again after its `n`th interruption:
/// 5 s doubling per interruption, at most 5 minutes.
pub fn retry_delay(n: u32) -> std::time::Duration {
    let secs = 5u64.saturating_mul(1 << n.saturating_sub(1).min(6));
    std::time::Duration::from_secs(secs.min(300))
}

/// The name of shard `index` of `count` (`prediction.results-00000-of-00002`).
pub fn shard_name(kind: &str, index: usize, count: usize) -> String {
    format!("prediction.{kind}-{index:05}-of-{count:05}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_follow_the_vertex_pattern() {
        assert_eq!(
            shard_name("results", 0, 2),
            "prediction.results-00000-of-00002"
        );
        assert_eq!(
            shard_name("errors", 12, 100),
            "prediction.errors-00012-of-00100"
        );
        assert_eq!(BatchState::Writing.to_string(), "writing");
        assert!(BatchState::Canceled.is_terminal());
        assert!(!BatchState::Writing.is_terminal());
        assert_eq!(retry_delay(1).as_secs(), 5);
        assert_eq!(retry_delay(3).as_secs(), 20);
        assert_eq!(retry_delay(MAX_RETRIES).as_secs(), 300);
    }
}
