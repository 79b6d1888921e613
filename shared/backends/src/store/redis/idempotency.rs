//! [`Idempotency`](crate::store::Idempotency) on the Redis store.

use std::time::Duration;

use super::*;
use crate::store::{Claim, Idempotency, StoreError};
use async_trait::async_trait;
use inferq_core::job::JobId;

#[async_trait]
impl Idempotency for RedisStore {
    async fn claim_idempotency(
        &self,
        key: &str,
        job: JobId,
        fingerprint: &str,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let mut conn = self.conn.clone();
        // SET NX GET: one round trip that either binds the key or returns
        // the binding that won.
        let prior: Option<String> = redis::cmd("SET")
            .arg(self.idem_key(key))
            .arg(format!("{job} {fingerprint}"))
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let Some(prior) = prior else {
            return Ok(Claim::New);
        };
        let (id, fp) = prior.split_once(' ').unwrap_or((prior.as_str(), ""));
        let job = id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("idempotency binding {prior:?}")))?;
        Ok(Claim::Taken {
            job,
            fingerprint: fp.to_owned(),
        })
    }

    async fn release_idempotency(&self, key: &str, job: JobId) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.release_idem_script
            .key(self.idem_key(key))
            .arg(job.to_string())
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
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
        let mut conn = self.conn.clone();
        redis::Script::new(scripts::TAKE_OVER_IDEM_SCRIPT)
            .key(self.idem_key(key))
            .arg(stale.to_string())
            .arg(format!("{job} {fingerprint}"))
            .arg(ttl.as_millis().max(1) as u64)
            .arg(min_age.as_millis() as u64)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|n| n == 1)
            .map_err(unavailable)
    }
}
