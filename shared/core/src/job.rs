//! Jobs: identity, lifecycle and the record clients poll.
//!
//! A job is created by the API in state `queued`, moved to `running` by the
//! worker that picked it up, and ends `succeeded` or `failed` — or
//! `canceled` (by its client), `expired` (its deadline passed before a
//! worker started it) or `dead_lettered` (it used up its delivery limit; an
//! operator can replay it, the one way out of a final state). The record is
//! the single source of truth a client sees through `GET /v1/jobs/{id}`; the
//! state machine lives here so the API, the worker and both store
//! implementations enforce the same rules.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ErrorCode;
use crate::prediction::Prediction;

/// An unguessable job identifier (a random UUIDv4: 122 random bits).
///
/// Ids are handed out to clients and are the only key to a result, so they
/// must not be sequential or derived from anything a third party can see.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct JobId(uuid::Uuid);

impl JobId {
    /// A fresh random id.
    pub fn new() -> Self {
        JobId(uuid::Uuid::new_v4())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(JobId)
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted and durably enqueued; no worker has started it.
    Queued,
    /// A worker is processing it (possibly again, after a crash).
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error code; it will not be retried.
    Failed,
    /// Canceled by the client: not run if still queued, result discarded
    /// if it was running.
    Canceled,
    /// Its deadline passed while it waited in the queue; it was not run.
    Expired,
    /// Delivered (or started) as often as the delivery limit allows without
    /// finishing — it probably crashes workers. Parked for an operator, who
    /// can list and replay it.
    DeadLettered,
}

impl JobStatus {
    /// Terminal states never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded
                | JobStatus::Failed
                | JobStatus::Canceled
                | JobStatus::Expired
                | JobStatus::DeadLettered
        )
    }

    /// Whether a record may move from `self` to `next`.
    ///
    /// `Running -> Running` is allowed because a worker that crashed leaves
    /// the job running and the broker hands it to another worker. Queued may
    /// jump straight to failed (a job rejected before it ran, e.g. after too
    /// many attempts). Nothing leaves a terminal state through this check: a
    /// redelivered job that already finished must not be overwritten. (A
    /// dead-lettered job is requeued only by [`JobRecord::replay`], an explicit
    /// operator action.)
    pub fn can_become(self, next: JobStatus) -> bool {
        use JobStatus::*;
        match (self, next) {
            (Queued, Running | Failed | Canceled | Expired | DeadLettered) => true,
            (Running, Running | Succeeded | Failed | Canceled | Expired | DeadLettered) => true,
            (Queued, Queued | Succeeded) => false,
            (Running, Queued) => false,
            (Succeeded | Failed | Canceled | Expired | DeadLettered, _) => false,
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
            JobStatus::Expired => "expired",
            JobStatus::DeadLettered => "dead_lettered",
        };
        f.write_str(s)
    }
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobError {
    pub code: ErrorCode,
    pub message: String,
}

impl JobError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        JobError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Per-stage wall-clock durations of one job, in milliseconds.
///
/// `queue` runs from acceptance to the worker starting the job (so it includes
/// time spent on a worker that crashed); `total` from acceptance to the result
/// being ready.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Timings {
    pub queue_ms: f64,
    /// Reading an out-of-band image from the store (0 for inline images).
    pub fetch_ms: f64,
    pub decode_ms: f64,
    pub preprocess_ms: f64,
    /// Inference of the whole batch the job ran in (see `batch_size`).
    pub inference_ms: f64,
    pub total_ms: f64,
    /// Jobs that ran together in one inference call (1 without dynamic
    /// batching; 0 when the job never reached inference).
    #[serde(default)]
    pub batch_size: u32,
    /// Memory figures (bytes; 0 when not measured, e.g. in older records).
    /// The worker process's RSS when its inference thread took the job,
    /// and after the job's (or its batch's) inference: jobs of one
    /// micro-batch share both figures.
    #[serde(default)]
    pub rss_before_bytes: u64,
    #[serde(default)]
    pub rss_after_bytes: u64,
    /// The decoded image buffer (width × height × 3 for RGB).
    #[serde(default)]
    pub decoded_bytes: u64,
    /// The input tensor fed for this job (its share of a batch; the largest
    /// tile for tiled models).
    #[serde(default)]
    pub input_tensor_bytes: u64,
    /// Resident memory of the model session that ran the job: the RSS
    /// growth of loading and warming it (ONNX Runtime's allocator
    /// statistics are not reachable from the worker; docs/reliability.md).
    #[serde(default)]
    pub model_bytes: u64,
    /// The worker process that ran the job, as `host/pid` (empty in older
    /// records). `GET /v1/stats` groups the RSS figures by it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub worker: String,
}

/// The record of one job, as stored and as returned by `GET /v1/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobRecord {
    pub id: JobId,
    pub status: JobStatus,
    pub model: String,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// How many times a worker started this job (more than 1 after a crash).
    pub attempts: u32,
    /// The job must start before this instant or it ends `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// How often an operator replayed this job out of the dead-letter queue.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replays: u32,
    /// Image size in bytes and pixels as validated on submission.
    pub input: InputInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Prediction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// Frames done so far of a video job (updated while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::video::Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// Where the result was also written, when the job asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputDelivery>,
    /// The completion webhook the client asked for, with its delivery
    /// outcome once the job is final (see [`crate::webhook`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<crate::webhook::Webhook>,
    /// The tenant whose API key submitted the job; with authentication on,
    /// only that tenant (and admin keys) can see or cancel it. `None` when
    /// authentication was off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The W3C trace of the request that submitted the job (see
    /// [`crate::trace`]): logs of every hop carry its `trace_id`.
    #[serde(
        default,
        rename = "traceparent",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
    pub trace: Option<crate::trace::TraceContext>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The outcome of writing a result to the job's output URI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutputDelivery {
    /// The objects written (result JSON, and the image for image models).
    pub uris: Vec<String>,
    /// Why writing failed; the result itself is still in the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}

/// What the API learned about the input without decoding it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InputInfo {
    /// How the input was sent: `raw`, `multipart`, `b64`, `uri` or `tensor`.
    pub encoding: String,
    /// Image format from the header (`jpeg`, `png`, …), for images sent inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Bytes received (the encoded image, or the tensor's f32 data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// The storage reference, for `uri` inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// The tensor shape, for `tensor` inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<usize>>,
}

/// A refused state change.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("job {id} cannot go from {from} to {to}")]
pub struct TransitionError {
    pub id: JobId,
    pub from: JobStatus,
    pub to: JobStatus,
}

impl JobRecord {
    /// A freshly accepted job.
    pub fn queued(id: JobId, model: &str, version: u64, input: InputInfo) -> Self {
        JobRecord {
            id,
            status: JobStatus::Queued,
            model: model.to_owned(),
            version,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            attempts: 0,
            deadline: None,
            replays: 0,
            input,
            result: None,
            timings: None,
            progress: None,
            error: None,
            output: None,
            webhook: None,
            owner: None,
            trace: None,
        }
    }

    fn transition(&mut self, to: JobStatus) -> Result<(), TransitionError> {
        if !self.status.can_become(to) {
            return Err(TransitionError {
                id: self.id,
                from: self.status,
                to,
            });
        }
        self.status = to;
        Ok(())
    }

    /// A worker starts (or restarts) the job.
    pub fn start(&mut self, now: DateTime<Utc>) -> Result<(), TransitionError> {
        self.transition(JobStatus::Running)?;
        self.attempts += 1;
        self.started_at = Some(now);
        Ok(())
    }

    /// The job produced a result.
    pub fn succeed(
        &mut self,
        prediction: Prediction,
        timings: Timings,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        self.transition(JobStatus::Succeeded)?;
        self.result = Some(prediction);
        self.timings = Some(timings);
        self.finished_at = Some(now);
        Ok(())
    }

    /// The job failed for good.
    pub fn fail(
        &mut self,
        error: JobError,
        timings: Option<Timings>,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        self.transition(JobStatus::Failed)?;
        self.error = Some(error);
        self.timings = timings;
        self.finished_at = Some(now);
        Ok(())
    }

    /// The client canceled the job.
    pub fn cancel(&mut self, now: DateTime<Utc>) -> Result<(), TransitionError> {
        self.transition(JobStatus::Canceled)?;
        self.finished_at = Some(now);
        Ok(())
    }

    /// The deadline passed before a worker could start the job.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Result<(), TransitionError> {
        self.transition(JobStatus::Expired)?;
        let deadline = self.deadline.map(|d| d.to_rfc3339()).unwrap_or_default();
        self.error = Some(JobError::new(
            ErrorCode::DeadlineExceeded,
            format!("the job's deadline ({deadline}) passed before a worker could start it"),
        ));
        self.finished_at = Some(now);
        Ok(())
    }

    /// The job used up its delivery limit; `error` says why it was given up.
    pub fn dead_letter(
        &mut self,
        error: JobError,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        self.transition(JobStatus::DeadLettered)?;
        self.error = Some(error);
        self.finished_at = Some(now);
        Ok(())
    }

    /// An operator sends a dead-lettered job round again: it is queued
    /// afresh with its attempt count reset (the replay is counted).
    pub fn replay(&mut self) -> Result<(), TransitionError> {
        if self.status != JobStatus::DeadLettered {
            return Err(TransitionError {
                id: self.id,
                from: self.status,
                to: JobStatus::Queued,
            });
        }
        self.status = JobStatus::Queued;
        self.attempts = 0;
        self.replays += 1;
        self.started_at = None;
        self.finished_at = None;
        self.error = None;
        self.timings = None;
        Ok(())
    }

    /// Whether the deadline passed by `now`.
    pub fn past_deadline(&self, now: DateTime<Utc>) -> bool {
        self.deadline.is_some_and(|d| now > d)
    }

    /// Milliseconds from acceptance to `t`.
    pub fn ms_since_created(&self, t: DateTime<Utc>) -> f64 {
        (t - self.created_at)
            .num_microseconds()
            .map(|us| us as f64 / 1000.0)
            .unwrap_or(0.0)
            .max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prediction::{ClassScore, Prediction};

    fn record() -> JobRecord {
        JobRecord::queued(
            JobId::new(),
            "m",
            1,
            InputInfo {
                encoding: "raw".into(),
                ..InputInfo::default()
            },
        )
    }

    fn prediction() -> Prediction {
        Prediction::Classification {
            top_k: vec![ClassScore {
                index: 1,
                label: "x".into(),
                probability: 1.0,
            }],
        }
    }

    #[test]
    fn happy_path_counts_attempts() {
        let mut r = record();
        r.start(Utc::now()).unwrap();
        assert_eq!(r.status, JobStatus::Running);
        assert_eq!(r.attempts, 1);
        // A crashed worker's job is started again elsewhere.
        r.start(Utc::now()).unwrap();
        assert_eq!(r.attempts, 2);
        r.succeed(prediction(), Timings::default(), Utc::now())
            .unwrap();
        assert_eq!(r.status, JobStatus::Succeeded);
        assert!(r.finished_at.is_some());
    }

    #[test]
    fn terminal_states_are_final() {
        let mut r = record();
        r.start(Utc::now()).unwrap();
        r.fail(
            JobError::new(ErrorCode::DecodeFailed, "bad"),
            None,
            Utc::now(),
        )
        .unwrap();
        let err = r.start(Utc::now()).unwrap_err();
        assert_eq!(err.from, JobStatus::Failed);
        assert_eq!(err.to, JobStatus::Running);
        assert!(
            r.succeed(prediction(), Timings::default(), Utc::now())
                .is_err()
        );
        assert_eq!(r.status, JobStatus::Failed);
        assert_eq!(r.error.as_ref().unwrap().code, ErrorCode::DecodeFailed);
    }

    #[test]
    fn cancel_from_queued_or_running_only() {
        let mut q = record();
        q.cancel(Utc::now()).unwrap();
        assert_eq!(q.status, JobStatus::Canceled);
        assert!(q.status.is_terminal());
        assert!(q.start(Utc::now()).is_err());
        let mut r = record();
        r.start(Utc::now()).unwrap();
        r.cancel(Utc::now()).unwrap();
        assert!(
            r.succeed(prediction(), Timings::default(), Utc::now())
                .is_err()
        );
        let mut done = record();
        done.start(Utc::now()).unwrap();
        done.succeed(prediction(), Timings::default(), Utc::now())
            .unwrap();
        assert!(done.cancel(Utc::now()).is_err());
    }

    #[test]
    fn expiry_and_dead_letter_are_final_but_dead_letters_replay() {
        let mut e = record();
        e.deadline = Some(Utc::now() - chrono::Duration::seconds(1));
        assert!(e.past_deadline(Utc::now()));
        e.expire(Utc::now()).unwrap();
        assert_eq!(e.status, JobStatus::Expired);
        assert_eq!(e.error.as_ref().unwrap().code, ErrorCode::DeadlineExceeded);
        assert!(e.start(Utc::now()).is_err());
        assert!(e.replay().is_err(), "only dead letters replay");

        let mut d = record();
        d.start(Utc::now()).unwrap();
        d.start(Utc::now()).unwrap();
        d.dead_letter(JobError::new(ErrorCode::TooManyAttempts, "x"), Utc::now())
            .unwrap();
        assert!(d.status.is_terminal());
        assert!(d.start(Utc::now()).is_err());
        assert_eq!(d.attempts, 2);
        d.replay().unwrap();
        assert_eq!(d.status, JobStatus::Queued);
        assert_eq!((d.attempts, d.replays), (0, 1));
        assert!(d.error.is_none());
        d.start(Utc::now()).unwrap();
    }

    #[test]
    fn queued_cannot_succeed_without_running() {
        let mut r = record();
        assert!(
            r.succeed(prediction(), Timings::default(), Utc::now())
                .is_err()
        );
        assert!(
            r.fail(JobError::new(ErrorCode::Internal, "x"), None, Utc::now())
                .is_ok()
        );
    }

    #[test]
    fn id_roundtrips_and_is_random() {
        let a = JobId::new();
        let b = JobId::new();
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<JobId>().unwrap(), a);
        assert!("not-a-uuid".parse::<JobId>().is_err());
    }

    #[test]
    fn record_json_shape() {
        let r = record();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status"], "queued");
        assert_eq!(v["attempts"], 0);
        assert!(v.get("result").is_none());
        assert!(v.get("owner").is_none(), "no owner without auth: {v}");
    }

    #[test]
    fn records_without_owner_still_parse() {
        let mut r = record();
        let mut v = serde_json::to_value(&r).unwrap();
        v.as_object_mut().unwrap().remove("owner");
        assert_eq!(serde_json::from_value::<JobRecord>(v).unwrap().owner, None);
        r.owner = Some("acme".into());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["owner"], "acme");
        assert_eq!(serde_json::from_value::<JobRecord>(v).unwrap(), r);
    }
}
