//! In-process result store for the embedded mode and tests.
//!
//! Records expire like Redis keys: each carries a deadline and expired
//! entries are swept on write. The number of records is bounded so a flood of
//! jobs cannot grow the process without limit; when full (after sweeping) new
//! jobs are refused with [`StoreError::Full`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Notifier, ResultStore, Saved, StoreError};
use crate::job::{JobId, JobRecord};

#[derive(Default)]
struct Inner {
    records: HashMap<JobId, (JobRecord, Instant)>,
    blobs: HashMap<String, (Vec<u8>, Instant)>,
    writes: u64,
}

/// The in-memory store.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    capacity: usize,
    notifier: Notifier,
}

impl MemoryStore {
    /// Holds at most `capacity` records and `capacity` blobs.
    pub fn new(capacity: usize) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            notifier: Notifier::default(),
        }
    }

    /// Live records (for tests and metrics).
    pub fn len(&self) -> usize {
        self.inner.lock().expect("store lock").records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn sweep(&mut self, now: Instant) {
        self.records.retain(|_, (_, exp)| *exp > now);
        self.blobs.retain(|_, (_, exp)| *exp > now);
    }
}

#[async_trait]
impl ResultStore for MemoryStore {
    async fn save(&self, record: &JobRecord, ttl: Duration) -> Result<Saved, StoreError> {
        let now = Instant::now();
        {
            let mut inner = self.inner.lock().expect("store lock");
            inner.writes += 1;
            // Sweeping is O(n); do it on every 1024th write or when full.
            if inner.writes.is_multiple_of(1024) || inner.records.len() >= self.capacity {
                inner.sweep(now);
            }
            match inner.records.get(&record.id) {
                Some((cur, exp)) if *exp > now && cur.status.is_terminal() => {
                    return Ok(Saved::AlreadyFinished);
                }
                None if inner.records.len() >= self.capacity => return Err(StoreError::Full),
                _ => {}
            }
            inner.records.insert(record.id, (record.clone(), now + ttl));
        }
        if record.status.is_terminal() {
            self.notifier.notify(record.id);
        }
        Ok(Saved::Written)
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let inner = self.inner.lock().expect("store lock");
        Ok(inner
            .records
            .get(&id)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(r, _)| r.clone()))
    }

    async fn delete(&self, id: JobId) -> Result<(), StoreError> {
        self.inner.lock().expect("store lock").records.remove(&id);
        Ok(())
    }

    async fn put_blob(&self, key: &str, data: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("store lock");
        if inner.blobs.len() >= self.capacity {
            inner.sweep(now);
            if inner.blobs.len() >= self.capacity {
                return Err(StoreError::Full);
            }
        }
        inner
            .blobs
            .insert(key.to_owned(), (data.to_vec(), now + ttl));
        Ok(())
    }

    async fn get_blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = self.inner.lock().expect("store lock");
        Ok(inner
            .blobs
            .get(key)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(b, _)| b.clone()))
    }

    async fn delete_blob(&self, key: &str) -> Result<(), StoreError> {
        self.inner.lock().expect("store lock").blobs.remove(key);
        Ok(())
    }

    fn blob_key(&self, id: JobId) -> String {
        format!("blob:{id}")
    }

    fn output_key(&self, id: JobId) -> String {
        format!("output:{id}")
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use crate::job::{InputInfo, JobError, JobStatus};
    use std::sync::Arc;

    fn rec() -> JobRecord {
        JobRecord::queued(JobId::new(), "m", 1, InputInfo::default())
    }

    const TTL: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn finished_records_are_not_overwritten() {
        let s = MemoryStore::new(10);
        let mut r = rec();
        assert_eq!(s.save(&r, TTL).await.unwrap(), Saved::Written);
        r.start(chrono::Utc::now()).unwrap();
        r.fail(
            JobError::new(ErrorCode::DecodeFailed, "x"),
            None,
            chrono::Utc::now(),
        )
        .unwrap();
        assert_eq!(s.save(&r, TTL).await.unwrap(), Saved::Written);
        let mut stale = rec();
        stale.id = r.id;
        assert_eq!(s.save(&stale, TTL).await.unwrap(), Saved::AlreadyFinished);
        assert_eq!(
            s.get(r.id).await.unwrap().unwrap().status,
            JobStatus::Failed
        );
    }

    #[tokio::test]
    async fn wait_wakes_on_finish_and_times_out() {
        let s = Arc::new(MemoryStore::new(10));
        let mut r = rec();
        s.save(&r, TTL).await.unwrap();
        // Times out with the current (queued) state.
        let got = s
            .wait(r.id, Duration::from_millis(20))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.status, JobStatus::Queued);
        assert!(s.notifier().is_empty());

        let s2 = s.clone();
        let id = r.id;
        let waiter = tokio::spawn(async move { s2.wait(id, Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        r.start(chrono::Utc::now()).unwrap();
        r.fail(
            JobError::new(ErrorCode::Internal, "x"),
            None,
            chrono::Utc::now(),
        )
        .unwrap();
        let started = std::time::Instant::now();
        s.save(&r, TTL).await.unwrap();
        let got = waiter.await.unwrap().unwrap().unwrap();
        assert_eq!(got.status, JobStatus::Failed);
        assert!(started.elapsed() < Duration::from_secs(5));
        // Unknown jobs answer at once.
        assert!(
            s.wait(JobId::new(), Duration::from_secs(10))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn capacity_and_expiry() {
        let s = MemoryStore::new(1);
        s.save(&rec(), Duration::from_millis(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        // The expired record is swept to make room.
        s.save(&rec(), TTL).await.unwrap();
        assert!(matches!(s.save(&rec(), TTL).await, Err(StoreError::Full)));
        s.put_blob("k", b"abc", TTL).await.unwrap();
        assert_eq!(s.get_blob("k").await.unwrap().unwrap(), b"abc");
        s.delete_blob("k").await.unwrap();
        assert!(s.get_blob("k").await.unwrap().is_none());
    }
}
