//! `GET /v1/stats` through the real router (`oneshot`, in-memory backends):
//! backlog from submissions, throughput and latency from the completions the
//! store recorded, the `read` scope, and bad windows as 400.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use inferq_backends::store::Records;
use inferq_core::ErrorCode;
use inferq_core::job::{InputInfo, JobError, JobId, JobRecord, Timings};
use inferq_core::prediction::Prediction;

const READER: &str = "reader-secret-0123456789abcd";
const SUBMITTER: &str = "submitter-secret-0123456789a";

fn done(model: &str, total_ms: f64) -> JobRecord {
    let now = chrono::Utc::now();
    let mut r = JobRecord::queued(JobId::new(), model, 1, InputInfo::default());
    r.start(now).unwrap();
    let t = Timings {
        queue_ms: 1.0,
        fetch_ms: 0.0,
        decode_ms: 2.0,
        preprocess_ms: 3.0,
        inference_ms: total_ms - 7.0,
        total_ms,
        batch_size: 2,
        ..Timings::default()
    };
    r.succeed(Prediction::Tensor { outputs: vec![] }, t, now)
        .unwrap();
    r
}

#[tokio::test]
async fn stats_report_backlog_throughput_and_latency_per_model() {
    let h = harness(1 << 20, 1 << 16);
    let ttl = Duration::from_secs(60);
    // Two jobs accepted through the API and still waiting.
    for _ in 0..2 {
        let (status, _, body) = send(&h.state, post("/v1/jobs", "image/png", png(8, 8))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    // Four finished by "a worker" (straight into the store), one failed.
    for ms in [10.0, 20.0, 30.0, 40.0] {
        h.store.save(&done("tiny-pose", ms), ttl).await.unwrap();
    }
    let mut failed = JobRecord::queued(JobId::new(), "tiny-pose", 1, InputInfo::default());
    failed
        .fail(
            JobError::new(ErrorCode::DecodeFailed, "bad"),
            None,
            chrono::Utc::now(),
        )
        .unwrap();
    h.store.save(&failed, ttl).await.unwrap();

    let (status, _, stats) = send(&h.state, get("/v1/stats?window=30")).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["window_secs"], 30.0);
    let model = |name: &str| {
        stats["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {stats}"))
            .clone()
    };
    let mean = model("tiny-mean");
    assert_eq!(mean["backlog"], 2);
    assert!(mean["oldest_waiting_secs"].as_f64().unwrap() >= 0.0);
    assert_eq!(mean["completed"], 0);
    assert_eq!(mean["latency_ms"], serde_json::Value::Null);

    let pose = model("tiny-pose");
    assert_eq!(pose["backlog"], 0);
    assert_eq!(pose["completed"], 5);
    assert_eq!(pose["outcomes"]["succeeded"], 4);
    assert_eq!(pose["outcomes"]["failed"], 1);
    assert_eq!(pose["throughput_per_sec"], 0.167);
    assert_eq!(pose["latency_ms"]["p50"], 20.0);
    assert_eq!(pose["latency_ms"]["p99"], 40.0);
    assert_eq!(pose["stages_ms"]["inference"]["max"], 33.0);
    assert_eq!(pose["mean_batch_size"], 2.0);
    assert_eq!(stats["totals"]["backlog"], 2);
    assert_eq!(stats["totals"]["completed"], 5);

    for bad in [
        "/v1/stats?window=0",
        "/v1/stats?window=99999",
        "/v1/stats?window=soon",
        "/v1/stats?model=x",
    ] {
        let resp = send(&h.state, get(bad)).await;
        assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_argument");
    }
}

#[tokio::test]
async fn stats_need_the_read_scope() {
    let h = auth_harness(&[
        &format!("dashboards:read:{READER}"),
        &format!("uploader:submit:{SUBMITTER}"),
    ]);
    let anonymous = send(&h.state, get("/v1/stats")).await;
    assert_problem(&anonymous, StatusCode::UNAUTHORIZED, "unauthorized");
    let wrong_scope = send(&h.state, bearer(get("/v1/stats"), SUBMITTER)).await;
    assert_problem(&wrong_scope, StatusCode::FORBIDDEN, "forbidden");
    let (status, _, body) = send(&h.state, bearer(get("/v1/stats"), READER)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["model"] == "tiny-mean"),
        "{body}"
    );
}
