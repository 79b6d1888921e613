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
//!
//! The store URL is `redis://…` (one server) or
//! `redis+sentinel://h1:26379,h2:26379,h3:26379/NAME` (the primary that the
//! Sentinels name, followed through failovers: see [`primary`]); the pub/sub
//! connection follows the same primary.

use std::sync::Arc;
use std::time::Duration;

mod admission;
mod blobs;
mod coord;
mod dead;
mod documents;
mod idempotency;
pub mod primary;
mod records;
mod schedule;
mod scripts;

use scripts::{
    ADMIT_RECORD_SCRIPT, ADMIT_SCRIPT, RELEASE_IDEM_SCRIPT, RELEASE_SCRIPT, SAVE_SCRIPT,
};

use futures::StreamExt;
use primary::Primary;

use super::recent::{Completion, RECENT_CAPACITY, RECENT_TTL_SECS};
use super::{Notifier, StoreError, rate_bucket};
use inferq_core::job::{JobId, JobRecord};

const TIMEOUT: Duration = Duration::from_secs(3);

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The Redis-backed [`ResultStore`](super::ResultStore).
pub struct RedisStore {
    conn: Primary,
    prefix: String,
    script: redis::Script,
    admit_script: redis::Script,
    admit_record_script: redis::Script,
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
        let conn = Primary::new(url, TIMEOUT).map_err(unavailable)?;
        let notifier = Arc::new(Notifier::default());
        let channel = format!("{prefix}:done");
        let listener = tokio::spawn(listen(conn.clone(), channel, notifier.clone()));
        Ok(RedisStore {
            conn,
            prefix: prefix.to_owned(),
            script: redis::Script::new(SAVE_SCRIPT),
            admit_script: redis::Script::new(ADMIT_SCRIPT),
            admit_record_script: redis::Script::new(ADMIT_RECORD_SCRIPT),
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
async fn listen(primary: Primary, channel: String, notifier: Arc<Notifier>) {
    let mut backoff = Duration::from_millis(100);
    // The primary generation whose pub/sub connection last failed: the
    // next client is asked of the Sentinels again (when they are used).
    let mut failed = None;
    loop {
        let pubsub = match primary.client(failed).await {
            Ok((generation, client)) => {
                failed = Some(generation);
                client.get_async_pubsub().await
            }
            Err(e) => Err(e),
        };
        match pubsub {
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
