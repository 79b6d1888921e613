//! The result store: job records, results and out-of-band images.
//!
//! [`redis::RedisStore`] is the production implementation; [`memory::MemoryStore`]
//! serves the embedded mode and unit tests. Both keep records for a TTL,
//! refuse to overwrite a finished job (so a redelivered job cannot clobber
//! its result), and push a notification when a job finishes so long-polls
//! wake at once instead of polling.

pub mod memory;
pub mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::job::{JobId, JobRecord};

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

/// Durable-enough storage of job records and image blobs.
#[async_trait]
pub trait ResultStore: Send + Sync + 'static {
    /// Writes a record with the given TTL unless the stored one is terminal;
    /// a terminal record also wakes waiters (see [`ResultStore::wait`]).
    async fn save(&self, record: &JobRecord, ttl: Duration) -> Result<Saved, StoreError>;

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
