//! The result store: job records, results and out-of-band images.
//!
//! [`redis::RedisStore`] is the production implementation; [`memory::MemoryStore`]
//! serves the embedded mode and unit tests. Both keep records for a TTL,
//! refuse to overwrite a finished job (so a redelivered job cannot clobber
//! its result), and push a notification when a job finishes so long-polls
//! wake at once instead of polling.
//!
//! The store also keeps the two numbers admission control needs, per model:
//! the *backlog* (jobs accepted and not yet final — waiting or running) and
//! recent *completions* (to turn an excess backlog into a `Retry-After`).
//! Both move inside the same atomic write that makes a job final, so they
//! cannot drift from the records as long as the store keeps its data.
//!
//! Every final write also appends the job's outcome and stage timings to a
//! bounded per-model window of recent completions ([`recent`]), which is what
//! `GET /v1/stats` summarises: throughput and latency read from the store are
//! the same for every API replica, whichever worker ran the jobs.
//!
//! Dead-lettered jobs are parked here too: the record (status
//! `dead_lettered`), the original queue message (so it can be replayed) and
//! an index ordered by when they were parked.

pub mod batches;
pub mod memory;
pub mod recent;
pub mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use inferq_core::job::{JobId, JobRecord};
use inferq_core::webhook::WebhookDelivery;

/// The due-set of the webhook outbox (see [`inferq_core::webhook`]): members
/// `job:<id>` / `batch:<id>`, due when their next attempt is.
pub const HOOKS: &str = "hooks";
/// The due-set of batch leases: a batch is due when its coordinator's lease
/// ran out (see the API's batch coordinator).
pub const BATCHES: &str = "batches";

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached; retry later.
    #[error("result store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back (a bug or a foreign writer).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A bounded in-memory store is full.
    #[error("result store is full")]
    Full,
}

/// Outcome of [`ResultStore::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Written,
    /// The stored record is already terminal; nothing was written.
    AlreadyFinished,
}

/// Outcome of [`ResultStore::admit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// Counted in the model's backlog, which is now `backlog`.
    Admitted { backlog: u64 },
    /// The backlog is at its limit; nothing was counted.
    Full {
        backlog: u64,
        /// Jobs of this model finished per second, over the last minute.
        completions_per_sec: f64,
    },
}

/// Outcome of [`ResultStore::claim_idempotency`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was free and now names the caller's job.
    New,
    /// The key already names `job`, created by a request with `fingerprint`.
    Taken { job: JobId, fingerprint: String },
}

/// Width of one completion-counting bucket.
pub const RATE_BUCKET_SECS: u64 = 10;
/// Buckets summed for the completion rate (one minute).
pub const RATE_BUCKETS: u64 = 6;

/// The current completion bucket number.
pub fn rate_bucket(now: std::time::SystemTime) -> u64 {
    now.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / RATE_BUCKET_SECS)
        .unwrap_or(0)
}

/// Seconds a client should wait before resubmitting when `backlog` jobs wait
/// and at most `max` may: the time the workers need, at their recent pace,
/// to make room — at least 1 s, at most a minute. With no recent completion
/// (workers stalled or just started) a middling 30 s.
pub fn retry_after_secs(backlog: u64, max: u64, completions_per_sec: f64) -> u32 {
    let excess = backlog.saturating_sub(max) + 1;
    if completions_per_sec <= 0.0 || !completions_per_sec.is_finite() {
        return 30;
    }
    (excess as f64 / completions_per_sec)
        .ceil()
        .clamp(1.0, 60.0) as u32
}

/// Durable-enough storage of job records and image blobs.
#[async_trait]
pub trait ResultStore: Send + Sync + 'static {
    /// Writes a record with the given TTL unless the stored one is terminal;
    /// a terminal record also wakes waiters (see [`ResultStore::wait`]),
    /// leaves its model's backlog and counts as a completion.
    async fn save(&self, record: &JobRecord, ttl: Duration) -> Result<Saved, StoreError>;

    /// Counts one more job in `model`'s backlog unless it already holds
    /// `max` (0 = no limit).
    async fn admit(&self, model: &str, max: u64) -> Result<Admission, StoreError>;

    /// Takes back an [`ResultStore::admit`] whose job was not enqueued after all.
    async fn release(&self, model: &str) -> Result<(), StoreError>;

    /// Jobs of `model` accepted and not yet final.
    async fn backlog(&self, model: &str) -> Result<u64, StoreError>;

    /// When the oldest job of `model` that no worker has started was
    /// created (Unix ms), if one waits.
    async fn oldest_waiting(&self, model: &str) -> Result<Option<u64>, StoreError>;

    /// The newest completions of `model` (at most
    /// [`recent::RECENT_CAPACITY`]), newest first; appended by the write
    /// that made each job final.
    async fn recent_completions(&self, model: &str) -> Result<Vec<recent::Completion>, StoreError>;

    /// Marks a job dead-lettered (unless it is already final) and keeps its
    /// queue `message` for a replay; both live for `ttl`.
    async fn dead_letter(
        &self,
        record: &JobRecord,
        message: &[u8],
        ttl: Duration,
    ) -> Result<Saved, StoreError>;

    /// Up to `limit` dead-lettered job ids, oldest first.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<JobId>, StoreError>;

    /// The queue message kept for a dead-lettered job.
    async fn dead_message(&self, id: JobId) -> Result<Option<Vec<u8>>, StoreError>;

    /// Replaces a dead-lettered record with `record` (queued again by an
    /// operator) and counts it back into its model's backlog; `false` if the
    /// stored record is not dead-lettered (someone else replayed it).
    async fn revive(&self, record: &JobRecord, ttl: Duration) -> Result<bool, StoreError>;

    /// Drops a replayed job's parked message and index entry.
    async fn forget_dead(&self, id: JobId) -> Result<(), StoreError>;

    /// Binds an idempotency `key` (already scoped to its tenant) to `job`
    /// for `ttl`, unless it is bound already.
    async fn claim_idempotency(
        &self,
        key: &str,
        job: JobId,
        fingerprint: &str,
        ttl: Duration,
    ) -> Result<Claim, StoreError>;

    /// Unbinds `key` if it still names `job` (its request was not accepted).
    async fn release_idempotency(&self, key: &str, job: JobId) -> Result<(), StoreError>;

    /// Reads a record.
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError>;

    /// Removes a record (used when a job could not be enqueued after all).
    async fn delete(&self, id: JobId) -> Result<(), StoreError>;

    /// Stores image bytes under `key` for `ttl`.
    async fn put_blob(&self, key: &str, data: &[u8], ttl: Duration) -> Result<(), StoreError>;

    /// Reads image bytes.
    async fn get_blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Deletes image bytes (once their job is finished).
    async fn delete_blob(&self, key: &str) -> Result<(), StoreError>;

    /// The key under which a job's out-of-band image is stored.
    fn blob_key(&self, id: JobId) -> String;

    /// The key under which a job's binary output (e.g. a PNG) is stored,
    /// with the blob methods and the result TTL.
    fn output_key(&self, id: JobId) -> String;

    /// Puts `member` into the due-set `set`, due at `at_ms` (Unix ms), or
    /// moves it there if it is in already.
    async fn schedule(&self, set: &str, member: &str, at_ms: u64) -> Result<(), StoreError>;

    /// Claims up to `limit` members of `set` that are due by `now_ms`,
    /// oldest first: in the same atomic step each is moved to
    /// `now_ms + lease_ms`, so nobody else claims it until that lease ends.
    async fn claim_due(
        &self,
        set: &str,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// Takes `member` out of `set`.
    async fn unschedule(&self, set: &str, member: &str) -> Result<(), StoreError>;

    /// When `member` of `set` is due, if it is in the set.
    async fn due_at(&self, set: &str, member: &str) -> Result<Option<u64>, StoreError>;

    /// Records how a webhook's delivery went (`member` as in [`HOOKS`]).
    async fn set_webhook_delivery(
        &self,
        member: &str,
        delivery: &WebhookDelivery,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// How a webhook's delivery went so far. [`ResultStore::get`] already
    /// merges this into a job's record.
    async fn webhook_delivery(&self, member: &str) -> Result<Option<WebhookDelivery>, StoreError>;

    /// Sets `fields` of the hash at `key` and gives the hash `ttl`.
    async fn hash_set(
        &self,
        key: &str,
        fields: &[(String, Vec<u8>)],
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Reads `fields` of the hash at `key` (`None` where a field is absent).
    async fn hash_get(
        &self,
        key: &str,
        fields: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Number of fields of the hash at `key`.
    async fn hash_len(&self, key: &str) -> Result<u64, StoreError>;

    /// The field names of the hash at `key`.
    async fn hash_fields(&self, key: &str) -> Result<Vec<String>, StoreError>;

    /// The store's full key for `name` (its prefix added), for documents
    /// kept with the blob and hash methods.
    fn key(&self, name: &str) -> String;

    /// Checks the store is reachable (for readiness probes).
    async fn check(&self) -> Result<(), StoreError>;

    /// Where finished-job notifications arrive.
    fn notifier(&self) -> &Notifier;

    /// Returns the record once it is terminal, or its current state when
    /// `timeout` passes first; `None` if there is no such job.
    async fn wait(&self, id: JobId, timeout: Duration) -> Result<Option<JobRecord>, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let waiter = self.notifier().register(id);
        loop {
            // Arm the notification before reading, so a completion between
            // the read and the await is not missed.
            let notified = waiter.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let record = self.get(id).await?;
            match &record {
                Some(r) if !r.status.is_terminal() => {}
                _ => return Ok(record),
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.get(id).await;
            }
        }
    }
}

/// Wakes long-polls when their job finishes.
///
/// Waiters register by job id; the store calls [`Notifier::notify`] when it
/// learns (locally or via Redis pub/sub) that a job finished. Entries are
/// removed when the last waiter for an id goes away, so the map only holds
/// jobs someone is currently waiting for.
#[derive(Default)]
pub struct Notifier {
    waiters: Mutex<HashMap<JobId, (Arc<Notify>, usize)>>,
}

/// A registration; dropping it unregisters.
pub struct Waiter<'a> {
    notifier: &'a Notifier,
    id: JobId,
    pub notify: Arc<Notify>,
}

impl Notifier {
    pub fn register(&self, id: JobId) -> Waiter<'_> {
        let mut map = self.waiters.lock().expect("notifier lock");
        let entry = map
            .entry(id)
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        Waiter {
            notifier: self,
            id,
            notify: entry.0.clone(),
        }
    }

    /// Wakes everyone waiting for `id`.
    pub fn notify(&self, id: JobId) {
        if let Some((n, _)) = self.waiters.lock().expect("notifier lock").get(&id) {
            n.notify_waiters();
        }
    }

    /// Wakes every waiter so each re-reads its record; used after a
    /// notification channel reconnects and may have missed messages.
    pub fn notify_all(&self) {
        for (n, _) in self.waiters.lock().expect("notifier lock").values() {
            n.notify_waiters();
        }
    }

    /// Number of jobs being waited for.
    pub fn len(&self) -> usize {
        self.waiters.lock().expect("notifier lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = self.notifier.waiters.lock().expect("notifier lock");
        if let Some(entry) = map.get_mut(&self.id) {
            entry.1 -= 1;
            if entry.1 == 0 {
                map.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_follows_the_completion_rate() {
        // 100 waiting over a limit of 100, 10 jobs/s: room in 0.1 s -> 1 s.
        assert_eq!(retry_after_secs(100, 100, 10.0), 1);
        // 40 over the limit at 2 jobs/s: ~21 s.
        assert_eq!(retry_after_secs(140, 100, 2.0), 21);
        // Capped at a minute; a stalled pool gets the middling default.
        assert_eq!(retry_after_secs(10_000, 100, 1.0), 60);
        assert_eq!(retry_after_secs(100, 100, 0.0), 30);
    }
}
