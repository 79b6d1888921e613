//! A Redis that persists nothing, restarted: its data is gone, the jobs it
//! knew of are not. The test runs its own `redis-server` (no AOF, no RDB)
//! on a free port, accepts jobs while no worker runs, restarts Redis empty
//! and only then starts a worker.
//!
//! Checked: an image larger than the old 256 KiB inline limit (which used to
//! wait in Redis as a blob and then ended `blob_missing`) still ends
//! `succeeded`, because it travels in the durable queue message; the
//! broker's queue gauge shows the waiting jobs while the store's backlog
//! counter reads zero; the counter is rebuilt as the worker recreates the
//! lost records and ends at zero, not below.

use std::time::{Duration, Instant};

use inferq_backends::store::AdmissionControl;
use inferq_backends::store::redis::RedisStore;
use inferq_tests::cluster::RedisServer;
use inferq_tests::*;
use serde_json::Value;

/// The job as the API sees it (`None` for 404).
async fn job(client: &reqwest::Client, base: &str, id: &str) -> Option<Value> {
    let r = client
        .get(format!("{base}/v1/jobs/{id}"))
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

/// Polls until `check` holds or `timeout` passes; the last value seen.
async fn eventually<T, F, Fut>(timeout: Duration, mut probe: F, check: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let v = probe().await;
        if check(&v) || Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_accepted_before_redis_lost_its_data_still_succeed() {
    if !services_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("inferq-redis-loss-{}", uuid::Uuid::new_v4()));
    let mut redis = RedisServer::start(&dir, false).expect("own redis-server");
    let ns = Namespace::new().on_redis(&redis.url());
    // Default limits: what a deployment gets without tuning.
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let base = api.url();
    let client = reqwest::Client::new();
    let large = image("coffee.png");
    assert!(
        large.len() > 256 * 1024,
        "the image must exceed the old inline limit"
    );
    let small = solid_png(16, 16, [9, 99, 199]);

    let mut ids = Vec::new();
    for (bytes, what) in [(large, "large"), (small, "small")] {
        let (status, body) = submit(&client, &base, "", "image/png", bytes).await;
        assert_eq!(status, 202, "{what}: {body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let store = RedisStore::new(&redis.url(), &ns.prefix).unwrap();
    assert_eq!(store.backlog("tiny-mean").await.unwrap(), 2);

    // Redis restarts with nothing: no AOF, no RDB, SIGKILLed.
    redis.restart().expect("redis restarts");
    let url = format!("{base}/v1/jobs/{}", ids[0]);
    let status = eventually(
        Duration::from_secs(15),
        || async {
            client
                .get(&url)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .ok()
        },
        |s| *s == Some(404),
    )
    .await;
    assert_eq!(
        status,
        Some(404),
        "the record should be gone with Redis' data"
    );
    // The store's connection reconnects after the restart's broken pipe.
    let backlog = eventually(
        Duration::from_secs(15),
        || store.backlog("tiny-mean"),
        Result::is_ok,
    )
    .await;
    assert_eq!(backlog.unwrap(), 0);
    // The broker still holds both messages, and the API says so.
    let ready = eventually(
        Duration::from_secs(15),
        || async { inferq_runtime::metrics::metrics().queue_ready.get() },
        |n| *n >= 2,
    )
    .await;
    assert_eq!(
        ready, 2,
        "inferq_queue_ready_jobs must show the queued jobs"
    );

    // A worker now finds the messages, recreates the records and runs them.
    let worker = start_worker(&ns, &test_models(), &["--threads", "1"]).await;
    for id in &ids {
        let done = eventually(
            Duration::from_secs(60),
            || job(&client, &base, id),
            |j| {
                j.as_ref()
                    .and_then(|j| j["status"].as_str())
                    .is_some_and(|s| !matches!(s, "queued" | "running"))
            },
        )
        .await
        .unwrap_or_else(|| panic!("job {id} has no record after the worker ran"));
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["result"]["kind"], "classification", "{done}");
    }
    assert_eq!(store.backlog("tiny-mean").await.unwrap(), 0);
    let drained = eventually(
        Duration::from_secs(15),
        || async { inferq_runtime::metrics::metrics().queue_ready.get() },
        |n| *n == 0,
    )
    .await;
    assert_eq!(drained, 0);

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
    let _ = redis.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
