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

pub mod batch_prediction;
mod capabilities;
pub mod memory;
pub mod recent;
pub mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use inferq_core::job::JobId;

pub use capabilities::{
    AdmissionControl, Blobs, DeadLetters, Documents, Idempotency, Records, Scheduling,
};

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

/// Outcome of [`Records::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Written,
    /// The stored record is already terminal; nothing was written.
    AlreadyFinished,
}

/// Outcome of [`AdmissionControl::admit`].
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

/// Outcome of [`Idempotency::claim_idempotency`].
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

/// Everything a result store offers: the seven capabilities together.
///
/// Processes wire one `Arc<dyn ResultStore>`; code that needs only part of
/// it asks for the capability it uses (`&dyn Blobs`, `Arc<dyn Scheduling>`…),
/// and a `dyn ResultStore` coerces to any of them.
pub trait ResultStore:
    Records + AdmissionControl + DeadLetters + Idempotency + Blobs + Scheduling + Documents
{
}

impl<T> ResultStore for T where
    T: Records + AdmissionControl + DeadLetters + Idempotency + Blobs + Scheduling + Documents
{
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
