//! Redis result store.
//!
//! Layout, under a configurable prefix `P`:
//! - `P:job:{id}` — the job record as JSON, with a TTL;
//! - `P:blob:{id}` — an out-of-band image, with a TTL, deleted when the job ends;
//! - `P:output:{id}` — a job's binary output (e.g. a PNG), with the result TTL;
//! - channel `P:done` — a job id is published when its job finishes.
//!
//! Writes go through a small Lua script that refuses to replace a terminal
//! record and publishes the completion in the same atomic step, so a waiter
//! that sees no notification can trust the record it reads.
//!
//! One pub/sub connection per process feeds the [`Notifier`]; it reconnects
//! with backoff and, after a reconnect, wakes every waiter to re-read its
//! record in case a notification was missed meanwhile.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Notifier, ResultStore, Saved, StoreError};
use crate::job::{JobId, JobRecord};

/// Sets KEYS[1] = ARGV[1] with TTL ARGV[2] unless the stored record is
/// terminal; if ARGV[3] == "1" also publishes ARGV[4] on channel KEYS[2].
const SAVE_SCRIPT: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if ok and (rec['status'] == 'succeeded' or rec['status'] == 'failed' or rec['status'] == 'canceled') then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] == '1' then
  redis.call('PUBLISH', KEYS[2], ARGV[4])
end
return 1
"#;

const TIMEOUT: Duration = Duration::from_secs(3);

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The Redis-backed [`ResultStore`].
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    script: redis::Script,
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
            notifier,
            listener,
        })
    }

    fn job_key(&self, id: JobId) -> String {
        format!("{}:job:{id}", self.prefix)
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
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.conn.clone();
        let written: i64 = self
            .script
            .key(self.job_key(record.id))
            .key(format!("{}:done", self.prefix))
            .arg(json)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(if record.status.is_terminal() {
                "1"
            } else {
                "0"
            })
            .arg(record.id.to_string())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(if written == 1 {
            Saved::Written
        } else {
            Saved::AlreadyFinished
        })
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.job_key(id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        raw.map(|b| serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    async fn delete(&self, id: JobId) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(self.job_key(id))
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
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
}
