//! [`Idempotency`](crate::store::Idempotency) on the in-memory store.

use std::time::Duration;

use super::*;
use crate::store::{Claim, Idempotency, StoreError};
use async_trait::async_trait;
use inferq_core::job::JobId;

#[async_trait]
impl Idempotency for MemoryStore {
    async fn claim_idempotency(
        &self,
        key: &str,
        job: JobId,
        fingerprint: &str,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("store lock");
        if let Some((id, fp, exp)) = inner.idempotency.get(key)
            && *exp > now
        {
            return Ok(Claim::Taken {
                job: *id,
                fingerprint: fp.clone(),
            });
        }
        if inner.idempotency.len() >= self.capacity {
            inner.sweep(now);
            if inner.idempotency.len() >= self.capacity {
                return Err(StoreError::Full);
            }
        }
        inner
            .idempotency
            .insert(key.to_owned(), (job, fingerprint.to_owned(), now + ttl));
        Ok(Claim::New)
    }

    async fn release_idempotency(&self, key: &str, job: JobId) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("store lock");
        if inner
            .idempotency
            .get(key)
            .is_some_and(|(id, _, _)| *id == job)
        {
            inner.idempotency.remove(key);
        }
        Ok(())
    }

    async fn take_over_idempotency(
        &self,
        key: &str,
        stale: JobId,
        job: JobId,
        fingerprint: &str,
        ttl: Duration,
        min_age: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("store lock");
        let Some(binding) = inner.idempotency.get_mut(key) else {
            return Ok(false);
        };
        // Bound `ttl` before it expires; its age is how much of that ran down.
        let age = ttl.saturating_sub(binding.2.saturating_duration_since(now));
        if binding.0 != stale || binding.2 <= now || age < min_age {
            return Ok(false);
        }
        *binding = (job, fingerprint.to_owned(), now + ttl);
        Ok(true)
    }
}
