//! The coordination half of the Redis store: due-sets (webhook outbox,
//! batch leases), webhook delivery outcomes and the hashes batches keep
//! their per-instance lines in.
//!
//! Layout, under the prefix `P`:
//! - `P:due:{set}` — a sorted set of members scored by when they are due;
//! - `P:hook:{member}` — a webhook's delivery outcome (JSON), result TTL;
//! - hashes at keys the caller names through [`ResultStore::key`](crate::store::ResultStore::key).

use std::time::Duration;

use super::{RedisStore, unavailable};
use crate::store::StoreError;
use inferq_core::webhook::WebhookDelivery;

/// Claims due members. KEYS: the due-set. ARGV: now (ms), lease end (ms),
/// limit. Returns the claimed members, oldest first.
pub(super) const CLAIM_SCRIPT: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], m)
end
return due
"#;

impl RedisStore {
    pub(super) fn due_key(&self, set: &str) -> String {
        format!("{}:due:{set}", self.prefix)
    }

    pub(super) fn hook_key(&self, member: &str) -> String {
        format!("{}:hook:{member}", self.prefix)
    }

    pub(super) async fn zschedule(
        &self,
        set: &str,
        member: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZADD")
            .arg(self.due_key(set))
            .arg(at_ms)
            .arg(member)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn zclaim(
        &self,
        set: &str,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        self.claim_script
            .key(self.due_key(set))
            .arg(now_ms)
            .arg(now_ms.saturating_add(lease_ms))
            .arg(limit.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn zremove(&self, set: &str, member: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZREM")
            .arg(self.due_key(set))
            .arg(member)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn zscore(&self, set: &str, member: &str) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn.clone();
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(self.due_key(set))
            .arg(member)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(score.map(|s| s.max(0.0) as u64))
    }

    pub(super) async fn put_delivery(
        &self,
        member: &str,
        delivery: &WebhookDelivery,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_vec(delivery).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.hook_key(member))
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn read_delivery(
        &self,
        member: &str,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.hook_key(member))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        raw.map(|b| serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    pub(super) async fn hset(
        &self,
        key: &str,
        fields: &[(String, Vec<u8>)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if fields.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut hset = redis::cmd("HSET");
        hset.arg(key);
        for (f, v) in fields {
            hset.arg(f).arg(v.as_slice());
        }
        redis::pipe()
            .add_command(hset)
            .ignore()
            .cmd("PEXPIRE")
            .arg(key)
            .arg(ttl.as_millis().max(1) as u64)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn hget(
        &self,
        key: &str,
        fields: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        redis::cmd("HMGET")
            .arg(key)
            .arg(fields)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn hlen(&self, key: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("HLEN")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn hkeys(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("HKEYS")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }
}
