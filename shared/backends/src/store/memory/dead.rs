//! [`DeadLetters`](crate::store::DeadLetters) on the in-memory store.

use std::time::Duration;

use super::*;
use crate::store::{DeadLetters, Saved, StoreError};
use async_trait::async_trait;
use inferq_core::job::{JobId, JobRecord};

#[async_trait]
impl DeadLetters for MemoryStore {
    async fn dead_letter(
        &self,
        record: &JobRecord,
        message: &[u8],
        ttl: Duration,
    ) -> Result<Saved, StoreError> {
        {
            let mut inner = self.inner.lock().expect("store lock");
            if !inner.write(record, ttl, self.capacity, false)? {
                return Ok(Saved::AlreadyFinished);
            }
            inner.dead_seq += 1;
            let seq = inner.dead_seq;
            if let Some((old, _, _)) = inner
                .dead_messages
                .insert(record.id, (seq, message.to_vec(), Instant::now() + ttl))
            {
                inner.dead.remove(&old);
            }
            inner.dead.insert(seq, record.id);
        }
        self.notifier.notify(record.id);
        Ok(Saved::Written)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<JobId>, StoreError> {
        let inner = self.inner.lock().expect("store lock");
        Ok(inner.dead.values().take(limit).copied().collect())
    }

    async fn dead_message(&self, id: JobId) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = self.inner.lock().expect("store lock");
        Ok(inner
            .dead_messages
            .get(&id)
            .filter(|(_, _, exp)| *exp > Instant::now())
            .map(|(_, m, _)| m.clone()))
    }

    async fn revive(&self, record: &JobRecord, ttl: Duration) -> Result<bool, StoreError> {
        self.inner
            .lock()
            .expect("store lock")
            .write(record, ttl, self.capacity, true)
    }

    async fn forget_dead(&self, id: JobId) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("store lock");
        if let Some((seq, _, _)) = inner.dead_messages.remove(&id) {
            inner.dead.remove(&seq);
        }
        Ok(())
    }
}
