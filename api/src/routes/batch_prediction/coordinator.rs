//! The batch coordinator: turns a recorded batch into jobs, collects their
//! outcomes and writes the result files.
//!
//! Every API process runs one [`run`] loop. It claims due batches from the
//! store's [`BATCHES`] due-set with a lease and renews the lease while it
//! works; when a process dies, its lease runs out and another process
//! claims the batch and carries on from what the store holds:
//!
//! - instances already finished have their line in `batch:{id}:ok` / `:err`
//!   and are skipped;
//! - instances submitted but not finished are submitted again with the same
//!   idempotency key (`batch:{id}:{index}`), which returns the job made the
//!   first time instead of a second one.
//!
//! So a batch survives an API or worker restart, never runs an instance
//! twice on purpose, and two coordinators that overlap (a stalled process
//! whose lease was taken over) do the same idempotent writes. At most
//! `batch_window` jobs of a batch are in the queue at once, and each goes
//! through the normal admission control: a full backlog slows the batch
//! down instead of failing it.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use chrono::Utc;
use inferq_backends::store::batch_prediction as stored;
use inferq_backends::store::{BATCHES, Documents, Saved};
use inferq_core::ErrorCode;
use inferq_core::batch_prediction::{self as batch, BatchRecord, BatchState};
use inferq_core::job::{JobError, JobId, JobRecord, JobStatus};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::instances::{self, InputError, Instances};
use super::now_ms;
use super::run::Run;
use crate::http::error::ApiError;
use crate::intake::encodings::{JobOptions, Submission};
use crate::intake::idempotency::IdempotencyKey;
use crate::state::AppState;

/// Pause between scans for due batches.
const POLL: Duration = Duration::from_millis(500);
/// Pause between two rounds of a running batch.
const TICK: Duration = Duration::from_millis(100);
/// Pause after the queue refused a job (backlog full, broker down).
const BACKOFF: Duration = Duration::from_secs(1);

/// The key of a batch's cancel flag (set by `POST /v1/batches/{id}/cancel`).
pub fn cancel_key(store: &(impl Documents + ?Sized), id: JobId) -> String {
    store.key(&format!("batch:{id}:cancel"))
}

/// Coordinates due batches until `shutdown` resolves; batches in progress
/// then hand their lease back so another process continues at once.
pub async fn run(state: AppState, shutdown: impl Future<Output = ()>) {
    let cfg = state.settings.batch.clone();
    let lease = Duration::from_secs_f64(cfg.batch_lease_secs.clamp(1.0, 3600.0));
    let slots = cfg.batch_concurrency.max(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let free = slots.saturating_sub(tasks.len());
        if free > 0 {
            let lease_ms = lease.as_millis() as u64;
            match state
                .store
                .claim_due(BATCHES, now_ms(), lease_ms, free)
                .await
            {
                Ok(ids) => {
                    for member in ids {
                        tasks.spawn(drive(state.clone(), member, lease, stop_rx.clone()));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot claim batches"),
            }
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
}

/// How a coordinator's turn at a batch ended.
enum Outcome {
    /// The batch is final (or gone): take it out of the due-set.
    Finished,
    /// This process is stopping: hand the batch to another one now.
    Stopped,
}

async fn drive(state: AppState, member: String, lease: Duration, stop: watch::Receiver<bool>) {
    let store = state.store.clone();
    let Ok(id) = member.parse::<JobId>() else {
        let _ = store.unschedule(BATCHES, &member).await;
        return;
    };
    let span = tracing::info_span!("batch", batch_id = %id);
    let mut run = Run {
        state,
        id,
        member: member.clone(),
        lease,
        renewed: Instant::now(),
        stop,
    };
    let result = run.go().instrument(span.clone()).await;
    let next = match result {
        Ok(Outcome::Finished) => None,
        Ok(Outcome::Stopped) => Some(now_ms()),
        Err(e) => run.interrupted(e).instrument(span.clone()).await,
    };
    let _g = span.enter();
    let done = match next {
        None => store.unschedule(BATCHES, &member).await,
        Some(at) => store.schedule(BATCHES, &member, at).await,
    };
    if let Err(e) = done {
        tracing::warn!(error = %e, "batch lease not updated; it expires by itself");
    }
}

/// What happened to one submitted instance.
enum Submitted {
    Job(JobId),
    /// Refused for good: its error line.
    Refused(ApiError),
    /// Refused for now (backlog full, broker or store down).
    Later,
}

impl Run {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn save(&self, record: &BatchRecord) -> Result<(), ApiError> {
        let ttl = self.state.settings.retention.result_ttl;
        Ok(stored::save(self.store(), record, ttl).await?)
    }

    async fn go(&mut self) -> Result<Outcome, ApiError> {
        let Some(mut rec) = stored::load(self.store(), self.id).await? else {
            return Ok(Outcome::Finished);
        };
        if rec.state.is_terminal() {
            return Ok(Outcome::Finished);
        }
        if rec.state == BatchState::Queued {
            rec.state = BatchState::Running;
            rec.started_at = Some(Utc::now());
            self.save(&rec).await?;
            tracing::info!("batch started");
        }
        let instances = match instances::load(&self.state, &mut rec).await {
            Ok(i) => i,
            Err(InputError::Api(e)) if retryable(&e) => return Err(e),
            Err(e) => {
                let code = match &e {
                    InputError::Api(api) => api.code(),
                    _ => ErrorCode::InvalidArgument,
                };
                self.fail(&mut rec, JobError::new(code, e.to_string()))
                    .await?;
                return Ok(Outcome::Finished);
            }
        };
        rec.counts.total = Some(instances.items.len() as u64);
        self.save(&rec).await?;
        let canceled = match self.collect(&rec, &instances).await? {
            Some(canceled) => canceled,
            None => return Ok(Outcome::Stopped),
        };
        rec.state = BatchState::Writing;
        self.save(&rec).await?;
        match super::files::write(self, &rec, &instances).await {
            Ok((files, counts)) => {
                rec.files = files;
                rec.counts.succeeded = counts.0;
                rec.counts.failed = counts.1;
            }
            Err(e) if retryable(&e) => return Err(e),
            Err(e) => {
                self.fail(&mut rec, JobError::new(e.code(), e.to_string()))
                    .await?;
                return Ok(Outcome::Finished);
            }
        }
        rec.state = if canceled {
            BatchState::Canceled
        } else {
            BatchState::Succeeded
        };
        rec.finished_at = Some(Utc::now());
        self.save(&rec).await?;
        tracing::info!(state = %rec.state, succeeded = rec.counts.succeeded,
            failed = rec.counts.failed, files = rec.files.len(), "batch finished");
        Ok(Outcome::Finished)
    }

    /// Records an interruption; returns when to try again, or `None` when
    /// the batch has failed for good (or cannot be read to say so).
    async fn interrupted(&self, e: ApiError) -> Option<u64> {
        let Ok(Some(mut rec)) = stored::load(self.store(), self.id).await else {
            tracing::warn!(error = %e, "batch interrupted; retried shortly");
            return Some(now_ms() + batch::retry_delay(1).as_millis() as u64);
        };
        rec.retries += 1;
        rec.last_error = Some(e.to_string());
        if rec.retries >= batch::MAX_RETRIES {
            let error = JobError::new(
                e.code(),
                format!("gave up after {} interruptions; the last: {e}", rec.retries),
            );
            return match self.fail(&mut rec, error).await {
                Ok(()) => None,
                Err(_) => Some(now_ms() + batch::retry_delay(rec.retries).as_millis() as u64),
            };
        }
        let wait = batch::retry_delay(rec.retries);
        tracing::warn!(error = %e, retries = rec.retries, retry_in = ?wait, "batch interrupted");
        let _ = self.save(&rec).await;
        Some(now_ms() + wait.as_millis() as u64)
    }

    async fn fail(&self, rec: &mut BatchRecord, error: JobError) -> Result<(), ApiError> {
        tracing::warn!(%error, "batch failed");
        rec.state = BatchState::Failed;
        rec.error = Some(error);
        rec.finished_at = Some(Utc::now());
        self.save(rec).await
    }

    /// Submits every unfinished instance and waits for all of them; returns
    /// whether the batch was canceled, or `None` if this process is stopping.
    async fn collect(
        &mut self,
        rec: &BatchRecord,
        instances: &Instances,
    ) -> Result<Option<bool>, ApiError> {
        let store = self.state.store.clone();
        let (ok_key, err_key) = (
            stored::ok_key(&*store, rec.id),
            stored::err_key(&*store, rec.id),
        );
        let mut done: HashSet<usize> = HashSet::new();
        for key in [&ok_key, &err_key] {
            done.extend(
                store
                    .hash_fields(key)
                    .await?
                    .iter()
                    .filter_map(|f| f.parse::<usize>().ok()),
            );
        }
        let mut pending: VecDeque<usize> = (0..instances.items.len())
            .filter(|i| !done.contains(i))
            .collect();
        tracing::info!(
            total = instances.items.len(),
            remaining = pending.len(),
            "collecting"
        );
        let window = self.state.settings.batch.batch_window.max(1);
        let ttl = self.state.settings.retention.result_ttl;
        let cancel = cancel_key(&*store, rec.id);
        let mut in_flight: Vec<(usize, JobId)> = Vec::new();
        loop {
            self.renew().await?;
            if self.stopping() {
                return Ok(None);
            }
            if store.get_blob(&cancel).await?.is_some() {
                self.cancel_jobs(&in_flight).await;
                let (ok, err) = self.harvest(&mut in_flight).await?;
                store.hash_set(&ok_key, &ok, ttl).await?;
                store.hash_set(&err_key, &err, ttl).await?;
                tracing::info!(not_run = pending.len() + in_flight.len(), "batch canceled");
                return Ok(Some(true));
            }
            let mut refused = Vec::new();
            let mut wait = TICK;
            while in_flight.len() < window
                && let Some(&i) = pending.front()
            {
                match self.submit(rec, instances, i).await {
                    Submitted::Job(job) => in_flight.push((i, job)),
                    Submitted::Refused(e) => {
                        refused.push((i.to_string(), error_line(e.code().as_str(), &e.to_string())))
                    }
                    Submitted::Later => {
                        wait = BACKOFF;
                        break;
                    }
                }
                pending.pop_front();
            }
            let (ok, mut err) = self.harvest(&mut in_flight).await?;
            err.extend(refused);
            store.hash_set(&ok_key, &ok, ttl).await?;
            store.hash_set(&err_key, &err, ttl).await?;
            if pending.is_empty() && in_flight.is_empty() {
                return Ok(Some(false));
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn submit(&self, rec: &BatchRecord, instances: &Instances, i: usize) -> Submitted {
        let item = &instances.items[i];
        let payload = match instances.payload(item, &self.state.settings.limits) {
            Ok(p) => p,
            Err(e) => return Submitted::Refused(e),
        };
        let output_uri = if rec.mirror {
            instances
                .relative(item)
                .map(|rel| format!("{}{rel}.json", rec.output))
        } else {
            None
        };
        let submission = Submission {
            options: JobOptions {
                model: Some(rec.model.clone()),
                version: Some(rec.version),
                top_k: rec.top_k,
                output_uri,
                ..JobOptions::default()
            },
            payload,
        };
        let owner = rec.owner.as_deref();
        let key = IdempotencyKey::for_tenant(owner, &format!("batch:{}:{i}", rec.id));
        let timeout = self.state.settings.request_timeout;
        let enqueued = tokio::time::timeout(
            timeout,
            crate::routes::submit::enqueue(&self.state, submission, owner, Some(key)),
        )
        .await;
        match enqueued {
            Ok(Ok(done)) => Submitted::Job(done.record.id),
            Ok(Err(e)) if retryable(&e) => {
                tracing::debug!(index = i, error = %e, "instance not accepted yet");
                Submitted::Later
            }
            Ok(Err(e)) => Submitted::Refused(e),
            Err(_) => Submitted::Later,
        }
    }

    /// Takes the finished jobs out of `in_flight`: their result and error
    /// lines (index → line).
    async fn harvest(
        &self,
        in_flight: &mut Vec<(usize, JobId)>,
    ) -> Result<(Vec<(String, Vec<u8>)>, Vec<(String, Vec<u8>)>), ApiError> {
        let (mut ok, mut err) = (Vec::new(), Vec::new());
        let mut still = Vec::with_capacity(in_flight.len());
        for &(i, job) in in_flight.iter() {
            match self.store().get(job).await? {
                Some(r) if r.status.is_terminal() => match line(&r) {
                    Ok(l) => ok.push((i.to_string(), l)),
                    Err(l) => err.push((i.to_string(), l)),
                },
                Some(_) => still.push((i, job)),
                None => err.push((
                    i.to_string(),
                    error_line(
                        "internal",
                        &format!("the record of job {job} expired before the batch collected it"),
                    ),
                )),
            }
        }
        *in_flight = still;
        Ok((ok, err))
    }

    /// Cancels the batch's jobs that have not finished.
    async fn cancel_jobs(&self, in_flight: &[(usize, JobId)]) {
        let ttl = self.state.settings.retention.result_ttl;
        for &(_, job) in in_flight {
            let Ok(Some(mut r)) = self.store().get(job).await else {
                continue;
            };
            if r.cancel(Utc::now()).is_ok()
                && let Ok(Saved::Written) = self.store().save(&r, ttl).await
            {
                tracing::debug!(job_id = %job, "batch job canceled");
            }
        }
    }
}

/// Failures worth retrying later rather than failing the batch for.
fn retryable(e: &ApiError) -> bool {
    let s = e.status();
    s.is_server_error()
        || s == axum::http::StatusCode::TOO_MANY_REQUESTS
        || s == axum::http::StatusCode::REQUEST_TIMEOUT
        || matches!(e, ApiError::IdempotencyKeyInUse)
}

/// The stored line of a finished job: `Ok` for the results file
/// (`{"prediction"}`), `Err` for the errors file (`{"error"}`). The
/// instance itself is added when the files are written.
fn line(r: &JobRecord) -> Result<Vec<u8>, Vec<u8>> {
    match (&r.status, &r.result) {
        (JobStatus::Succeeded, Some(p)) => {
            let mut v = json!({ "prediction": p, "job": r.id });
            if let Some(out) = r.output.as_ref().filter(|o| o.error.is_none()) {
                v["outputs"] = json!(out.uris);
            }
            Ok(serde_json::to_vec(&v).expect("json"))
        }
        _ => {
            let (code, message) = match &r.error {
                Some(e) => (e.code.as_str().to_owned(), e.message.clone()),
                None => (r.status.to_string(), format!("the job ended {}", r.status)),
            };
            let mut v: serde_json::Value =
                serde_json::from_slice(&error_line(&code, &message)).expect("json");
            v["job"] = json!(r.id);
            Err(serde_json::to_vec(&v).expect("json"))
        }
    }
}

fn error_line(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "error": { "code": code, "message": message } })).expect("json")
}
