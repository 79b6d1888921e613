//! [`AdmissionControl`](crate::store::AdmissionControl) on the in-memory store.

use super::*;
use crate::store::recent::Completion;
use crate::store::{
    Admission, AdmissionControl, RATE_BUCKET_SECS, RATE_BUCKETS, StoreError, rate_bucket,
};
use async_trait::async_trait;

#[async_trait]
impl AdmissionControl for MemoryStore {
    async fn admit(&self, model: &str, max: u64) -> Result<Admission, StoreError> {
        let mut inner = self.inner.lock().expect("store lock");
        let backlog = inner.backlog.get(model).copied().unwrap_or(0);
        if max > 0 && backlog >= max {
            let newest = rate_bucket(std::time::SystemTime::now());
            let done: u64 = inner
                .completions
                .iter()
                .filter(|((m, b), _)| m == model && b + RATE_BUCKETS > newest)
                .map(|(_, n)| n)
                .sum();
            return Ok(Admission::Full {
                backlog,
                completions_per_sec: done as f64 / (RATE_BUCKETS * RATE_BUCKET_SECS) as f64,
            });
        }
        inner.backlog.insert(model.to_owned(), backlog + 1);
        Ok(Admission::Admitted {
            backlog: backlog + 1,
        })
    }

    async fn admit_record(
        &self,
        record: &JobRecord,
        ttl: std::time::Duration,
        max: u64,
    ) -> Result<Admission, StoreError> {
        use crate::store::{Records, Saved};
        if self.get(record.id).await?.is_some() {
            return Err(StoreError::Corrupt(format!(
                "job id {} is already recorded",
                record.id
            )));
        }
        let admitted = self.admit(&record.model, max).await?;
        if let Admission::Full { .. } = admitted {
            return Ok(admitted);
        }
        // Two steps under one process's locks: nothing else sees the job
        // before it is recorded, and a failed write takes it back out.
        match self.save(record, ttl).await {
            Ok(Saved::Written) => Ok(admitted),
            Ok(Saved::AlreadyFinished) => {
                self.release(&record.model).await?;
                Err(StoreError::Corrupt(format!(
                    "job id {} is already recorded",
                    record.id
                )))
            }
            Err(e) => {
                self.release(&record.model).await?;
                Err(e)
            }
        }
    }

    async fn release(&self, model: &str) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("store lock");
        if let Some(n) = inner.backlog.get_mut(model) {
            *n = n.saturating_sub(1);
        }
        Ok(())
    }

    async fn backlog(&self, model: &str) -> Result<u64, StoreError> {
        let inner = self.inner.lock().expect("store lock");
        Ok(inner.backlog.get(model).copied().unwrap_or(0))
    }

    async fn oldest_waiting(&self, model: &str) -> Result<Option<u64>, StoreError> {
        let inner = self.inner.lock().expect("store lock");
        Ok(inner
            .waiting
            .get(model)
            .and_then(|w| w.first())
            .map(|(at, _)| *at))
    }

    async fn recent_completions(&self, model: &str) -> Result<Vec<Completion>, StoreError> {
        let inner = self.inner.lock().expect("store lock");
        Ok(inner
            .recent
            .get(model)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default())
    }
}
