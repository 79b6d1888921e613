//! `GET /v1/stats` in the split deployment: jobs finished by a worker process
//! (its own metrics registry) show up in the API's numbers because both meet
//! in Redis; a second API replica answers the same; the Redis window of
//! recent completions stays bounded; the workers' memory figures ride along.

use std::time::Duration;

use inferq_backends::store::recent::RECENT_CAPACITY;
use inferq_backends::store::redis::RedisStore;
use inferq_backends::store::{AdmissionControl, Records};
use inferq_core::job::{InputInfo, JobId, JobRecord, Timings};
use inferq_tests::*;
use inferq_vision::postprocess::Prediction;
use serde_json::Value;

async fn stats(client: &reqwest::Client, base: &str) -> Value {
    let resp = client
        .get(format!("{base}/v1/stats"))
        .send()
        .await
        .expect("stats");
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn model<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == name)
        .unwrap_or_else(|| panic!("{name} missing: {stats}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_completions_reach_every_api_replica_through_redis() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let other_api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let worker = start_worker(&ns, &test_models(), &["--threads", "1"]).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        run_job(&client, &api.url(), "", solid_png(16, 16, [0, 128, 255])).await;
    }
    for base in [api.url(), other_api.url()] {
        let s = stats(&client, &base).await;
        let m = model(&s, "tiny-mean");
        assert_eq!(m["completed"], 3, "{s}");
        assert_eq!(m["outcomes"]["succeeded"], 3, "{s}");
        assert_eq!(m["backlog"], 0, "{s}");
        assert!(m["throughput_per_sec"].as_f64().unwrap() > 0.0, "{s}");
        let p50 = m["latency_ms"]["p50"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 <= m["latency_ms"]["max"].as_f64().unwrap());
        assert!(m["stages_ms"]["inference"]["p50"].as_f64().is_some(), "{s}");
        // The worker's memory figures travel with its completions.
        let rss = m["memory"]["worker_rss_bytes"].as_u64().unwrap_or(0);
        assert!(rss > 10 << 20, "worker RSS in the stats: {s}");
        assert!(m["memory"]["worker_rss_max_bytes"].as_u64().unwrap() >= rss);
        assert!(m["memory"]["session_resident_bytes"].is_u64(), "{s}");
        assert!(
            s["process_rss_bytes"].as_u64().unwrap_or(0) > 10 << 20,
            "{s}"
        );
        // Per process: the one worker (in this test process), named by
        // host and pid, with its three jobs and its RSS.
        let workers = s["workers"].as_array().expect("workers");
        assert_eq!(workers.len(), 1, "{s}");
        let w = &workers[0];
        let name = w["worker"].as_str().unwrap();
        assert!(
            name.ends_with(&format!("/{}", std::process::id())),
            "{name}"
        );
        assert_eq!(w["jobs"], 3, "{s}");
        assert!(w["rss_bytes"].as_u64().unwrap() > 10 << 20, "{s}");
        assert!(w["rss_max_bytes"].as_u64().unwrap() >= w["rss_bytes"].as_u64().unwrap());
        assert_eq!(model(&s, "tiny-pose")["completed"], 0);
        assert!(model(&s, "tiny-pose")["memory"].is_null());
    }
    worker.stop().await;
    other_api.stop().await;
    api.stop().await;

    // The Redis list keeps only the newest completions.
    let store = RedisStore::new(REDIS_URL, &ns.prefix).unwrap();
    let ttl = Duration::from_secs(60);
    for i in 0..RECENT_CAPACITY + 5 {
        let now = chrono::Utc::now();
        let mut r = JobRecord::queued(JobId::new(), "bounded", 1, InputInfo::default());
        r.start(now).unwrap();
        let t = Timings {
            total_ms: i as f64,
            ..Timings::default()
        };
        r.succeed(Prediction::Tensor { outputs: vec![] }, t, now)
            .unwrap();
        store.save(&r, ttl).await.unwrap();
    }
    let recent = store.recent_completions("bounded").await.unwrap();
    assert_eq!(recent.len(), RECENT_CAPACITY);
    let newest = recent[0].timings.as_ref().unwrap().total_ms;
    assert_eq!(newest, (RECENT_CAPACITY + 4) as f64, "newest first");
    ns.cleanup().await;
}
