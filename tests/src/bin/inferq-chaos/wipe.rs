//! The "Redis without persistence" fault: Redis restarts with no data.
//!
//! A Redis that persists nothing comes back empty after a restart: job
//! records, results, idempotency bindings and the backlog counters are gone.
//! Jobs that had already *finished* lose their results (that loss is the
//! price of running Redis that way, and no queue can undo it); every other
//! accepted job must still end, and end `succeeded` when its input was
//! valid, because its message — image included — waits in RabbitMQ.
//!
//! To tell the two apart, the harness freezes Redis writes (`CLIENT PAUSE
//! WRITE`: reads go on, every write waits), reads the records of all jobs
//! accepted so far, and SIGKILLs Redis while writes are still frozen, so no
//! job can finish between the snapshot and the loss. Then the harness's
//! Redis is started again on an empty directory (its AOF deleted).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Deployment, secs};

/// Final records read just before the data was lost, by job id.
pub(crate) type Snapshot = HashMap<String, Value>;

/// Longest write freeze asked of Redis; the snapshot takes far less.
const PAUSE_MS: u64 = 30_000;
/// Record keys read per MGET.
const CHUNK: usize = 500;

fn is_final(record: &Value) -> bool {
    matches!(
        record["status"].as_str(),
        Some("succeeded" | "failed" | "canceled" | "expired" | "dead_lettered")
    )
}

/// Reads the records of `ids` (writes are frozen); returns the final ones.
async fn snapshot(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    ids: &[String],
) -> redis::RedisResult<Snapshot> {
    let mut out = Snapshot::new();
    for chunk in ids.chunks(CHUNK) {
        // The store's record key (shared/backends/src/store/redis.rs).
        let keys: Vec<String> = chunk
            .iter()
            .map(|id| format!("{prefix}:job:{id}"))
            .collect();
        let raws: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query_async(conn).await?;
        for (id, raw) in chunk.iter().zip(raws) {
            let record = raw.and_then(|r| serde_json::from_slice::<Value>(&r).ok());
            if let Some(r) = record.filter(is_final) {
                out.insert(id.clone(), r);
            }
        }
    }
    Ok(out)
}

/// Freezes Redis writes, snapshots the finished jobs among the accepted ones
/// (`accepted` is asked once writes are frozen, so no job accepted before
/// the freeze is missed), then restarts Redis empty. `Err` says what went
/// wrong (the run then does not count).
pub(crate) async fn restart_empty(
    d: Arc<Deployment>,
    accepted: impl FnOnce() -> Vec<String>,
    t0: Instant,
) -> Result<Snapshot, String> {
    let url = d.redis.lock().unwrap().url();
    let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(10),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| "connecting to Redis timed out".to_string())?
    .map_err(|e| e.to_string())?;
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(PAUSE_MS)
        .arg("WRITE")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| format!("CLIENT PAUSE: {e}"))?;
    // A 202 already on its way to a client is pushed within moments.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids = accepted();
    eprintln!(
        "[{:6.1}s] Redis writes frozen; reading {} records",
        secs(t0),
        ids.len()
    );
    let snap = match snapshot(&mut conn, &d.key_prefix, &ids).await {
        Ok(s) => s,
        Err(e) => {
            let _ = redis::cmd("CLIENT")
                .arg("UNPAUSE")
                .query_async::<()>(&mut conn)
                .await;
            return Err(format!("snapshot before the wipe: {e}"));
        }
    };
    let finished = snap.len();
    let result = tokio::task::spawn_blocking(move || d.redis.lock().unwrap().restart_empty())
        .await
        .map_err(|e| e.to_string())?;
    result.map_err(|e| format!("restarting Redis empty: {e}"))?;
    eprintln!(
        "[{:6.1}s] Redis restarted EMPTY (no AOF, no RDB); {finished} of {} accepted jobs had finished before",
        secs(t0),
        ids.len()
    );
    Ok(snap)
}
