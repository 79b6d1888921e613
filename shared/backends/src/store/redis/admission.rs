//! [`AdmissionControl`](crate::store::AdmissionControl) on the Redis store.

use super::*;
use crate::store::recent::{Completion, RECENT_CAPACITY};
use crate::store::{
    Admission, AdmissionControl, RATE_BUCKET_SECS, RATE_BUCKETS, StoreError, rate_bucket,
};
use async_trait::async_trait;

#[async_trait]
impl AdmissionControl for RedisStore {
    async fn admit(&self, model: &str, max: u64) -> Result<Admission, StoreError> {
        let mut conn = self.conn.clone();
        let (admitted, backlog): (i64, u64) = self
            .admit_script
            .key(self.backlog_key())
            .arg(model)
            .arg(max)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if admitted == 1 {
            return Ok(Admission::Admitted { backlog });
        }
        self.full(model, backlog).await
    }

    async fn admit_record(
        &self,
        record: &JobRecord,
        ttl: Duration,
        max: u64,
    ) -> Result<Admission, StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.conn.clone();
        let (admitted, backlog): (i64, u64) = self
            .admit_record_script
            .key(self.job_key(record.id))
            .key(self.backlog_key())
            .key(self.waiting_key(&record.model))
            .arg(json)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(&record.model)
            .arg(max)
            .arg(record.id.to_string())
            .arg(record.created_at.timestamp_millis().max(0))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match admitted {
            1 => Ok(Admission::Admitted { backlog }),
            0 => self.full(&record.model, backlog).await,
            _ => Err(StoreError::Corrupt(format!(
                "job id {} is already recorded",
                record.id
            ))),
        }
    }

    async fn release(&self, model: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.release_script
            .key(self.backlog_key())
            .arg(model)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn backlog(&self, model: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let n: Option<i64> = redis::cmd("HGET")
            .arg(self.backlog_key())
            .arg(model)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    async fn oldest_waiting(&self, model: &str) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn.clone();
        let first: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(self.waiting_key(model))
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(first.first().map(|(_, at)| at.max(0.0) as u64))
    }

    async fn recent_completions(&self, model: &str) -> Result<Vec<Completion>, StoreError> {
        let mut conn = self.conn.clone();
        let lines: Vec<String> = redis::cmd("LRANGE")
            .arg(self.recent_key(model))
            .arg(0)
            .arg(RECENT_CAPACITY as i64 - 1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(lines.iter().filter_map(|l| Completion::decode(l)).collect())
    }
}

impl RedisStore {
    /// The refusal of a full backlog, with the model's recent completion
    /// rate (for `Retry-After`): only refused submissions pay for reading it.
    async fn full(&self, model: &str, backlog: u64) -> Result<Admission, StoreError> {
        let mut conn = self.conn.clone();
        let newest = rate_bucket(std::time::SystemTime::now());
        let keys: Vec<String> = (0..RATE_BUCKETS)
            .map(|i| self.rate_key(model, newest.saturating_sub(i)))
            .collect();
        let counts: Vec<Option<u64>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let done: u64 = counts.into_iter().flatten().sum();
        Ok(Admission::Full {
            backlog,
            completions_per_sec: done as f64 / (RATE_BUCKETS * RATE_BUCKET_SECS) as f64,
        })
    }
}
