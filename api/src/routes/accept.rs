//! Accepting a validated job: admission, record, image, message, confirm —
//! all or nothing.
//!
//! [`accept`] is the one place where a job starts to exist. It takes the
//! job's place in its model's backlog, records it, stores an out-of-band
//! image, publishes the message and waits for the broker's confirm. Every
//! failure undoes what was done, so a refused job leaves nothing behind.
//!
//! It is written to be run to its end, never cut in the middle: callers run
//! it on a task of its own (see `submit::enqueue`), so a client that hangs
//! up or an HTTP timeout cannot stop it between the record and the publish.
//! Its own `deadline` bounds it instead. The one step whose outcome can
//! stay unknown is the confirm (a broker under a memory alarm blocks
//! publishers and answers nothing, or the connection breaks after the
//! message left). What happens then depends on whether the client can ask
//! again for *this* job:
//!
//! - With an `Idempotency-Key`, the job is kept: its record stays `queued`,
//!   the key stays bound to it, and the client gets `503` saying the job may
//!   run. The retry with the key finds the record and publishes it again
//!   (see [`republish`]), so one key makes one job whatever the broker did
//!   with the first message. Undoing it instead, as InferQ once did, let a
//!   message the broker had after all recreate the job while the retry made
//!   a second one (seen on the simulated cluster, docs/scaling.md).
//! - Without one, the job is *retracted*: its record becomes a final
//!   `canceled` record that says so, which frees its backlog place, and a
//!   message the broker still delivers later finds that record and is
//!   dropped by the worker unrun. The client gets `503` and the job never
//!   runs.

use std::time::Duration;

use bytes::Bytes;
use inferq_backends::broker::BrokerError;
use inferq_backends::repository::ModelEntry;
use inferq_backends::store::{Admission, retry_after_secs};
use inferq_core::ErrorCode;
use inferq_core::job::{JobError, JobId, JobRecord};
use inferq_core::message::{ImageSource, JobMessage};
use tokio::time::Instant;

use crate::http::error::ApiError;
use crate::intake::encodings::JobOptions;
use crate::state::AppState;

/// How long a retracted job's record is kept: long enough for a message
/// the broker delivers late to find it, short enough not to linger.
const RETRACTED_TTL: Duration = Duration::from_secs(3600);

/// A validated job, not yet recorded or enqueued.
pub(crate) struct Prepared {
    pub entry: std::sync::Arc<ModelEntry>,
    pub record: JobRecord,
    pub options: JobOptions,
    /// The input bytes (image or tensor data), or the URI to fetch.
    pub input: Result<Bytes, String>,
    pub tensor_shape: Option<Vec<usize>>,
}

/// Why a job was not accepted, and whether it was kept for a retry.
pub(crate) struct Refused {
    pub error: ApiError,
    /// The job is recorded and may run (the broker's answer was lost): its
    /// Idempotency-Key must stay bound to it.
    pub kept: bool,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Refused { error, kept: false }
    }
}

impl From<inferq_backends::store::StoreError> for Refused {
    fn from(e: inferq_backends::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

/// Admits, records and enqueues a prepared job by `deadline`; on any
/// failure undoes what it did, so the job was either accepted or left no
/// trace — or, when the broker's answer was lost, a final record saying it
/// was not accepted (`keyed` false) or a job kept for the retry with its
/// Idempotency-Key (`keyed` true; [`Refused::kept`]).
pub(crate) async fn accept(
    state: &AppState,
    job: Prepared,
    deadline: Instant,
    keyed: bool,
) -> Result<JobRecord, Refused> {
    let Prepared {
        entry,
        record,
        options: q,
        input,
        tensor_shape,
    } = job;
    let id = record.id;
    let store = &state.store;
    let retention = &state.settings.retention;
    if Instant::now() >= deadline {
        return Err(timed_out("preparing").into());
    }
    let max = state.settings.max_backlog;
    // Its place in the backlog and its queued record, in one step (one
    // round trip on Redis).
    if let Admission::Full {
        backlog,
        completions_per_sec,
    } = store
        .admit_record(&record, retention.result_ttl, max)
        .await?
    {
        return Err(ApiError::BacklogFull {
            model: entry.name.clone(),
            backlog,
            max,
            retry_after: retry_after_secs(backlog, max, completions_per_sec),
        }
        .into());
    }
    // From here on the job holds a place in the backlog: give it back on
    // every path that does not end in an accepted job.
    let model: &str = &entry.name;
    let undo = |blob: Option<String>| async move {
        let _ = store.delete(id).await;
        let _ = store.release(model).await;
        if let Some(k) = blob {
            let _ = store.delete_blob(&k).await;
        }
    };
    let source = match image_source(state, id, input).await {
        Ok(source) => source,
        Err(e) => {
            undo(None).await;
            return Err(e.into());
        }
    };
    let blob = match &source {
        ImageSource::Blob(k) => Some(k.clone()),
        _ => None,
    };
    let message = job_message(&entry, &record, q, source, tensor_shape);
    // The encoded message holds its own copy of the image: let the request's
    // go before waiting for the broker's confirm, the longest step here.
    let payload = message.encode();
    drop(message);
    let unknown = match tokio::time::timeout_at(deadline, state.queue.publish(id, payload)).await {
        Ok(Ok(())) => None,
        Ok(Err(BrokerError::Unconfirmed(reason))) => {
            Some(format!("the broker's answer was lost ({reason})"))
        }
        Ok(Err(e)) => {
            // Surely not queued: forget the job so nobody polls a ghost.
            undo(blob).await;
            return Err(ApiError::from(e).into());
        }
        Err(_) => Some("the broker did not confirm the job before the request timed out".into()),
    };
    if let Some(why) = unknown {
        if keyed {
            tracing::warn!(job_id = %id, reason = %why,
                "publish outcome unknown: job kept for a retry with its Idempotency-Key");
            return Err(Refused {
                error: ApiError::Unavailable(format!(
                    "{why}; the job ({id}) may still run: send the same request again with the \
                     same Idempotency-Key to get it"
                )),
                kept: true,
            });
        }
        retract(state, record, blob).await;
        return Err(timed_out("enqueueing").into());
    }
    tracing::info!(job_id = %id, model = %entry.name, version = entry.version,
        encoding = %record.input.encoding, tenant = record.owner.as_deref().unwrap_or("-"),
        "job accepted");
    inferq_runtime::metrics::metrics()
        .jobs_submitted
        .with_label_values(&[entry.name.as_str()])
        .inc();
    Ok(record)
}

fn timed_out(step: &str) -> ApiError {
    ApiError::Unavailable(format!("timed out while {step} the job"))
}

/// Ends a job whose message may or may not reach the queue: the record
/// turns final (`canceled`, `unavailable`), which also frees its backlog
/// place in the same write, and loses its webhook, since its client was
/// told `503`. A late message finds a final record and is not run.
async fn retract(state: &AppState, mut record: JobRecord, blob: Option<String>) {
    let id = record.id;
    tracing::warn!(job_id = %id, "publish outcome unknown and no Idempotency-Key: job retracted");
    record.webhook = None;
    let now = chrono::Utc::now();
    let ended = record.cancel(now).map(|()| {
        record.error = Some(JobError::new(
            ErrorCode::Unavailable,
            "not accepted: the broker did not confirm the job before the request ended; \
             it will not run",
        ));
    });
    let saved = match ended {
        Ok(()) => state.store.save(&record, RETRACTED_TTL).await,
        Err(e) => {
            tracing::error!(job_id = %id, error = %e, "cannot retract the job");
            return;
        }
    };
    if let Err(e) = saved {
        // The record stays queued; the worker runs the job if its message
        // arrives, and the backlog counter is corrected by reconciliation.
        tracing::warn!(job_id = %id, error = %e, "retracting the job failed");
    }
    if let Some(k) = blob {
        let _ = state.store.delete_blob(&k).await;
    }
}

/// Where a job's input travels: inline in the message, as a blob in the
/// store (over the inline limit), or as the URI the worker fetches.
async fn image_source(
    state: &AppState,
    id: JobId,
    input: Result<Bytes, String>,
) -> Result<ImageSource, ApiError> {
    Ok(match input {
        Err(uri) => ImageSource::Uri(uri),
        Ok(b) if b.len() > state.settings.limits.inline_max_bytes => {
            let key = state.store.blob_key(id);
            state
                .store
                .put_blob(&key, &b, state.settings.retention.blob_ttl)
                .await?;
            ImageSource::Blob(key)
        }
        Ok(b) => ImageSource::Inline(b),
    })
}

/// The queue message of the job `record`.
fn job_message(
    entry: &ModelEntry,
    record: &JobRecord,
    q: JobOptions,
    image: ImageSource,
    tensor: Option<Vec<usize>>,
) -> JobMessage {
    JobMessage {
        id: record.id,
        model: entry.name.clone(),
        version: entry.version,
        top_k: q.top_k,
        created_at: record.created_at,
        image,
        tensor,
        output_uri: q.output_uri,
        deadline: record.deadline,
        owner: record.owner.clone(),
        webhook: record.webhook.clone(),
        trace: record.trace,
        video: (q.fps.is_some() || q.max_frames.is_some()).then_some(
            inferq_core::video::VideoParams {
                fps: q.fps,
                max_frames: q.max_frames,
            },
        ),
    }
}

/// Publishes a replayed job that never started, built from the replaying
/// request (the same request: its fingerprint matched). The request that
/// bound the key records the job *before* the broker confirms its message;
/// an API that died in between (SIGKILL, node loss) left a queued record
/// with no message, and answering the retry with that record alone would
/// accept a job that never runs. Publishing again is safe: a job id that
/// arrives twice runs once, or twice at worst (`attempts` counts it), and
/// keeps the first final state.
pub(crate) async fn republish(
    state: &AppState,
    job: Prepared,
    record: &JobRecord,
    deadline: Instant,
) -> Result<(), ApiError> {
    let Prepared {
        entry,
        options,
        input,
        tensor_shape,
        ..
    } = job;
    let id = record.id;
    let source = image_source(state, id, input).await?;
    let message = job_message(&entry, record, options, source, tensor_shape);
    // The key stays bound whatever happens here: a failed or unanswered
    // publish leaves the job as it was, and the next retry tries again.
    tokio::time::timeout_at(deadline, state.queue.publish(id, message.encode()))
        .await
        .map_err(|_| timed_out("enqueueing"))??;
    tracing::info!(job_id = %id, model = %entry.name, "replayed job not started yet: its message published again");
    Ok(())
}
