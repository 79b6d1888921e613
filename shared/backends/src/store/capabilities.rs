//! The result store's capabilities, one trait each.
//!
//! A store is many small services behind one connection; splitting them
//! lets each consumer name what it uses (the webhook dispatcher needs
//! [`Scheduling`] and [`Records`], the batch helpers [`Blobs`],
//! [`Documents`] and [`Scheduling`]) and lets a test double implement only
//! that. Each trait has a Redis and an in-memory implementation, in files of
//! the same name under `redis/` and `memory/`.

use std::time::Duration;

use async_trait::async_trait;
use inferq_core::job::{JobId, JobRecord};
use inferq_core::webhook::WebhookDelivery;

use super::recent;
use super::{Admission, Claim, Notifier, Saved, StoreError};

/// Job records: writing them (refusing to overwrite a final one), reading, deleting, and long-
/// polling until a job is final.
#[async_trait]
pub trait Records: Send + Sync + 'static {
    /// Writes a record with the given TTL unless the stored one is terminal;
    /// a terminal record also wakes waiters (see [`Self::wait`]),
    /// leaves its model's backlog and counts as a completion.
    async fn save(&self, record: &JobRecord, ttl: Duration) -> Result<Saved, StoreError>;

    /// Reads a record.
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError>;

    /// Removes a record (used when a job could not be enqueued after all).
    async fn delete(&self, id: JobId) -> Result<(), StoreError>;

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

/// Admission control: the per-model backlog and completion counts that decide whether a new job may
/// enter, and the waiting/recent windows the autoscaling gauges and `GET /v1/stats` read.
#[async_trait]
pub trait AdmissionControl: Send + Sync + 'static {
    /// Counts one more job in `model`'s backlog unless it already holds
    /// `max` (0 = no limit).
    async fn admit(&self, model: &str, max: u64) -> Result<Admission, StoreError>;

    /// Admits a new job into its model's backlog *and* writes its queued
    /// `record`, as one step: `Admitted` means both happened, `Full` that
    /// neither did. The submit path's first store step; on Redis one script,
    /// so one round trip instead of two (docs/performance.md). A record
    /// already stored under the id is an error and changes nothing.
    async fn admit_record(
        &self,
        record: &JobRecord,
        ttl: Duration,
        max: u64,
    ) -> Result<Admission, StoreError>;

    /// Takes back an [`Self::admit`] whose job was not enqueued after all.
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
}

/// Dead letters: jobs parked after too many deliveries, with their queue message kept for an
/// operator's replay.
#[async_trait]
pub trait DeadLetters: Send + Sync + 'static {
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
}

/// Idempotency keys: one job per client key, however often the request is retried.
#[async_trait]
pub trait Idempotency: Send + Sync + 'static {
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

    /// Rebinds `key` from `stale` to `job` (with a fresh `ttl`) if it still
    /// names `stale` and was bound at least `min_age` ago: the request that
    /// bound it died before recording its job (an API killed between the
    /// two steps), and without this the key would answer "in use" until it
    /// expires. Returns whether it was rebound.
    async fn take_over_idempotency(
        &self,
        key: &str,
        stale: JobId,
        job: JobId,
        fingerprint: &str,
        ttl: Duration,
        min_age: Duration,
    ) -> Result<bool, StoreError>;
}

/// Blobs: image bytes too large for a queue message, and binary job outputs such as PNGs.
#[async_trait]
pub trait Blobs: Send + Sync + 'static {
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

    /// The key of another rendering of a job's output (`view` is one of
    /// the names the result lists, e.g. `overlay`), beside the output.
    fn output_view_key(&self, id: JobId, view: &str) -> String {
        format!("{}:{view}", self.output_key(id))
    }
}

/// Due-sets with leases (the webhook outbox, batch leases) and the recorded outcome of webhook
/// deliveries.
#[async_trait]
pub trait Scheduling: Send + Sync + 'static {
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

    /// Records how a webhook's delivery went (`member` as in [`super::HOOKS`]).
    async fn set_webhook_delivery(
        &self,
        member: &str,
        delivery: &WebhookDelivery,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// How a webhook's delivery went so far. [`Records::get`] already
    /// merges this into a job's record.
    async fn webhook_delivery(&self, member: &str) -> Result<Option<WebhookDelivery>, StoreError>;
}

/// Keyed documents: hashes with a TTL under the store's key prefix, e.g. the parts of a batch.
#[async_trait]
pub trait Documents: Send + Sync + 'static {
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
}
