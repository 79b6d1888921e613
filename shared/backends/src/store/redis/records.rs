//! [`Records`](crate::store::Records) on the Redis store.

use std::time::Duration;

use super::*;
use crate::store::{Notifier, Records, Saved, StoreError};
use async_trait::async_trait;
use inferq_core::job::{JobId, JobRecord};

#[async_trait]
impl Records for RedisStore {
    async fn save(&self, record: &JobRecord, ttl: Duration) -> Result<Saved, StoreError> {
        Ok(if self.write(record, ttl, "save", b"").await? {
            Saved::Written
        } else {
            Saved::AlreadyFinished
        })
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let mut conn = self.conn.clone();
        // The record and its webhook outcome in one round trip.
        let (raw, hook): (Option<Vec<u8>>, Option<Vec<u8>>) = redis::cmd("MGET")
            .arg(self.job_key(id))
            .arg(self.hook_key(&format!("job:{id}")))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let Some(raw) = raw else { return Ok(None) };
        let mut record: JobRecord = serde_json::from_slice(&raw).map_err(corrupt)?;
        if let (Some(w), Some(h)) = (record.webhook.as_mut(), hook) {
            w.delivery = Some(serde_json::from_slice(&h).map_err(corrupt)?);
        }
        Ok(Some(record))
    }

    async fn delete(&self, id: JobId) -> Result<(), StoreError> {
        // A deleted job (one whose enqueue was undone) leaves the waiting set too.
        let model = self.get(id).await?.map(|r| r.model);
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(self.job_key(id)).ignore();
        if let Some(m) = model {
            pipe.cmd("ZREM")
                .arg(self.waiting_key(&m))
                .arg(id.to_string())
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    async fn check(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }
}
