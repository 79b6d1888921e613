//! Redis result store.
//!
//! Layout, under a configurable prefix `P`:
//! - `P:job:{id}` — the job record as JSON, with a TTL;
//! - `P:blob:{id}` — an out-of-band image, with a TTL, deleted when the job ends;
//! - `P:output:{id}` — a job's binary output (e.g. a PNG), with the result TTL;
//! - `P:backlog` — a hash: model name → jobs accepted and not yet final;
//! - `P:rate:{model}:{bucket}` — jobs of a model finished in one 10 s bucket
//!   (expires after two minutes);
//! - `P:idem:{hash}` — `"{job id} {request fingerprint}"` for an
//!   `Idempotency-Key` (hashed with its tenant), with the idempotency TTL;
//! - `P:waiting:{model}` — a sorted set of the model's jobs not yet started,
//!   scored by creation time (the age of the oldest is a scaling signal);
//! - `P:recent:{model}` — a list of the model's newest completions (outcome
//!   and stage timings, see [`super::recent`]), newest first, trimmed to
//!   [`RECENT_CAPACITY`] entries, expiring a day after the last one;
//! - `P:dead` — a sorted set of dead-lettered job ids, scored by when they
//!   were parked; `P:dead:{id}` — the queue message kept for a replay;
//! - channel `P:done` — a job id is published when its job finishes;
//! - due-sets, webhook outcomes and batch hashes: see [`coord`].
//!
//! Record writes go through one Lua script that refuses to replace a
//! terminal record and, in the same atomic step, publishes the completion,
//! takes the job out of its model's backlog, counts it in the rate bucket
//! and appends it to the recent completions — so a waiter that sees no notification can trust the record it
//! reads, and the backlog moves exactly once per job.
//!
//! One pub/sub connection per process feeds the [`Notifier`]; it reconnects
//! with backoff and, after a reconnect, wakes every waiter to re-read its
//! record in case a notification was missed meanwhile.

use std::sync::Arc;
use std::time::Duration;

mod coord;
mod scripts;

use scripts::{ADMIT_SCRIPT, RELEASE_IDEM_SCRIPT, RELEASE_SCRIPT, SAVE_SCRIPT};

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::recent::{Completion, RECENT_CAPACITY, RECENT_TTL_SECS};
use super::{
    Admission, Claim, Notifier, RATE_BUCKET_SECS, RATE_BUCKETS, ResultStore, Saved, StoreError,
    rate_bucket,
};
use inferq_core::job::{JobId, JobRecord};
use inferq_core::webhook::WebhookDelivery;

const TIMEOUT: Duration = Duration::from_secs(3);

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The Redis-backed [`ResultStore`].
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    script: redis::Script,
    admit_script: redis::Script,
    release_script: redis::Script,
    release_idem_script: redis::Script,
    claim_script: redis::Script,
    notifier: Arc<Notifier>,
    listener: tokio::task::JoinHandle<()>,
}

impl RedisStore {
    /// Creates the store without waiting for Redis: the connection is made
    /// on first use and re-made after failures, so the process can start
    /// (and report not-ready) while Redis is down.
    pub fn new(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(unavailable)?;
        let notifier = Arc::new(Notifier::default());
        let channel = format!("{prefix}:done");
        let listener = tokio::spawn(listen(client, channel, notifier.clone()));
        Ok(RedisStore {
            conn,
            prefix: prefix.to_owned(),
            script: redis::Script::new(SAVE_SCRIPT),
            admit_script: redis::Script::new(ADMIT_SCRIPT),
            release_script: redis::Script::new(RELEASE_SCRIPT),
            release_idem_script: redis::Script::new(RELEASE_IDEM_SCRIPT),
            claim_script: redis::Script::new(coord::CLAIM_SCRIPT),
            notifier,
            listener,
        })
    }

    fn job_key(&self, id: JobId) -> String {
        format!("{}:job:{id}", self.prefix)
    }

    fn backlog_key(&self) -> String {
        format!("{}:backlog", self.prefix)
    }

    fn rate_key(&self, model: &str, bucket: u64) -> String {
        format!("{}:rate:{model}:{bucket}", self.prefix)
    }

    fn waiting_key(&self, model: &str) -> String {
        format!("{}:waiting:{model}", self.prefix)
    }

    fn recent_key(&self, model: &str) -> String {
        format!("{}:recent:{model}", self.prefix)
    }

    fn dead_index(&self) -> String {
        format!("{}:dead", self.prefix)
    }

    fn idem_key(&self, key: &str) -> String {
        format!("{}:idem:{key}", self.prefix)
    }

    fn dead_key(&self, id: JobId) -> String {
        format!("{}:dead:{id}", self.prefix)
    }

    /// Runs [`SAVE_SCRIPT`]; returns whether the record was written.
    async fn write(
        &self,
        record: &JobRecord,
        ttl: Duration,
        mode: &str,
        message: &[u8],
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let now = std::time::SystemTime::now();
        let now_ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut conn = self.conn.clone();
        let written: i64 = self
            .script
            .key(self.job_key(record.id))
            .key(format!("{}:done", self.prefix))
            .key(self.backlog_key())
            .key(self.rate_key(&record.model, rate_bucket(now)))
            .key(self.dead_index())
            .key(self.dead_key(record.id))
            .key(self.due_key(crate::store::HOOKS))
            .key(self.hook_key(&format!("job:{}", record.id)))
            .key(self.waiting_key(&record.model))
            .key(self.recent_key(&record.model))
            .arg(json)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(if record.status.is_terminal() {
                "1"
            } else {
                "0"
            })
            .arg(record.id.to_string())
            .arg(&record.model)
            .arg(mode)
            .arg(message)
            .arg(now_ms)
            .arg(if record.webhook.is_some() { "1" } else { "0" })
            .arg(if record.status == inferq_core::job::JobStatus::Queued {
                "1"
            } else {
                "0"
            })
            .arg(record.created_at.timestamp_millis().max(0))
            .arg(Completion::from_record(record, now_ms).encode())
            .arg(RECENT_CAPACITY)
            .arg(RECENT_TTL_SECS)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(written == 1)
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Forwards completion messages to the notifier, forever.
async fn listen(client: redis::Client, channel: String, notifier: Arc<Notifier>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    backoff = Duration::from_millis(100);
                    // Anything finished while we were away was not seen.
                    notifier.notify_all();
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        if let Ok(id) = payload.parse::<JobId>() {
                            notifier.notify(id);
                        }
                    }
                }
                tracing::warn!("redis notification channel closed; reconnecting");
            }
            Err(e) => tracing::debug!(error = %e, "redis pub/sub connect failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

#[async_trait]
impl ResultStore for RedisStore {
    async fn save(&self, record: &JobRecord, ttl: Duration) -> Result<Saved, StoreError> {
        Ok(if self.write(record, ttl, "save", b"").await? {
            Saved::Written
        } else {
            Saved::AlreadyFinished
        })
    }

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
        // Only refused submissions pay for reading the rate.
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

    async fn put_blob(&self, key: &str, data: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(key)
            .arg(data)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn get_blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn delete_blob(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    fn blob_key(&self, id: JobId) -> String {
        format!("{}:blob:{id}", self.prefix)
    }

    fn output_key(&self, id: JobId) -> String {
        format!("{}:output:{id}", self.prefix)
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

    async fn schedule(&self, set: &str, member: &str, at_ms: u64) -> Result<(), StoreError> {
        self.zschedule(set, member, at_ms).await
    }

    async fn claim_due(
        &self,
        set: &str,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.zclaim(set, now_ms, lease_ms, limit).await
    }

    async fn unschedule(&self, set: &str, member: &str) -> Result<(), StoreError> {
        self.zremove(set, member).await
    }

    async fn due_at(&self, set: &str, member: &str) -> Result<Option<u64>, StoreError> {
        self.zscore(set, member).await
    }

    async fn set_webhook_delivery(
        &self,
        member: &str,
        delivery: &WebhookDelivery,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put_delivery(member, delivery, ttl).await
    }

    async fn webhook_delivery(&self, member: &str) -> Result<Option<WebhookDelivery>, StoreError> {
        self.read_delivery(member).await
    }

    async fn hash_set(
        &self,
        key: &str,
        fields: &[(String, Vec<u8>)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.hset(key, fields, ttl).await
    }

    async fn hash_get(
        &self,
        key: &str,
        fields: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.hget(key, fields).await
    }

    async fn hash_len(&self, key: &str) -> Result<u64, StoreError> {
        self.hlen(key).await
    }

    async fn hash_fields(&self, key: &str) -> Result<Vec<String>, StoreError> {
        self.hkeys(key).await
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }
}
