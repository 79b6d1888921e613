//! [`Records`](crate::store::Records) on the in-memory store.

use std::time::Duration;

use super::*;
use crate::store::{Notifier, Records, Saved, StoreError};
use async_trait::async_trait;
use inferq_core::job::{JobId, JobRecord};

#[async_trait]
impl Records for MemoryStore {
    async fn save(&self, record: &JobRecord, ttl: Duration) -> Result<Saved, StoreError> {
        let written =
            self.inner
                .lock()
                .expect("store lock")
                .write(record, ttl, self.capacity, false)?;
        if !written {
            return Ok(Saved::AlreadyFinished);
        }
        if record.status.is_terminal() {
            self.notifier.notify(record.id);
        }
        Ok(Saved::Written)
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let mut record = {
            let inner = self.inner.lock().expect("store lock");
            inner
                .records
                .get(&id)
                .filter(|(_, exp)| *exp > Instant::now())
                .map(|(r, _)| r.clone())
        };
        if let Some(w) = record.as_mut().and_then(|r| r.webhook.as_mut()) {
            w.delivery = self.read_delivery(&format!("job:{id}"));
        }
        Ok(record)
    }

    async fn delete(&self, id: JobId) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("store lock");
        if let Some((r, _)) = inner.records.remove(&id)
            && let Some(w) = inner.waiting.get_mut(&r.model)
        {
            w.remove(&(r.created_at.timestamp_millis().max(0) as u64, id));
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }
}
