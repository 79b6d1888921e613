//! [`DeadLetters`](crate::store::DeadLetters) on the Redis store.

use crate::store::Blobs;
use std::time::Duration;

use super::*;
use crate::store::{DeadLetters, Saved, StoreError};
use async_trait::async_trait;
use inferq_core::job::{JobId, JobRecord};

#[async_trait]
impl DeadLetters for RedisStore {
    async fn dead_letter(
        &self,
        record: &JobRecord,
        message: &[u8],
        ttl: Duration,
    ) -> Result<Saved, StoreError> {
        Ok(if self.write(record, ttl, "dead", message).await? {
            Saved::Written
        } else {
            Saved::AlreadyFinished
        })
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<JobId>, StoreError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.dead_index())
            .arg(0)
            .arg(limit.max(1) as i64 - 1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(ids.iter().filter_map(|s| s.parse().ok()).collect())
    }

    async fn dead_message(&self, id: JobId) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_blob(&self.dead_key(id)).await
    }

    async fn revive(&self, record: &JobRecord, ttl: Duration) -> Result<bool, StoreError> {
        self.write(record, ttl, "revive", b"").await
    }

    async fn forget_dead(&self, id: JobId) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .cmd("ZREM")
            .arg(self.dead_index())
            .arg(id.to_string())
            .ignore()
            .cmd("DEL")
            .arg(self.dead_key(id))
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }
}
