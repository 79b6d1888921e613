//! HTTP behaviour of the API with in-memory backends, driven with `oneshot`.
//!
//! The manifests come from the committed test model repository; the API
//! never loads the ONNX files, so these tests need no ONNX Runtime.

use std::time::Duration;

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use inferq_backends::broker::JobQueue;
use inferq_backends::store::{Blobs, Records};
use inferq_core::ErrorCode;
use inferq_core::job::{JobError, JobId, JobRecord, JobStatus};
use inferq_core::message::{ImageSource, JobMessage};

#[tokio::test]
async fn submit_enqueues_and_answers_202() {
    let h = harness(1 << 20, 1 << 20);
    let resp = send(&h.state, post("/v1/jobs?top_k=3", "image/png", png(32, 24))).await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    let id = resp.2["id"].as_str().unwrap().to_owned();
    assert_eq!(resp.1[header::LOCATION], format!("/v1/jobs/{id}"));
    assert_eq!(resp.2["status"], "queued");
    assert_eq!(resp.2["model"], "tiny-mean");
    assert_eq!(resp.2["input"]["width"], 32);
    assert_eq!(resp.2["input"]["format"], "png");

    // The queued message carries the image inline and the options.
    let mut deliveries = h.queue.consume(1).await.unwrap();
    let d = deliveries.next().await.unwrap().unwrap();
    let msg = JobMessage::decode(d.payload).unwrap();
    assert_eq!(msg.id.to_string(), id);
    assert_eq!(msg.top_k, Some(3));
    assert!(matches!(msg.image, ImageSource::Inline(ref b) if b.len() > 8));

    // And the record is readable.
    let got = send(&h.state, get(&format!("/v1/jobs/{id}"))).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(got.2["status"], "queued");
}

#[tokio::test]
async fn large_images_travel_by_reference() {
    let h = harness(1 << 20, 100);
    let resp = send(
        &h.state,
        post("/v1/jobs", "application/octet-stream", png(64, 64)),
    )
    .await;
    assert_eq!(resp.0, StatusCode::ACCEPTED);
    let mut deliveries = h.queue.consume(1).await.unwrap();
    let msg = JobMessage::decode(deliveries.next().await.unwrap().unwrap().payload).unwrap();
    let ImageSource::Blob(key) = msg.image else {
        panic!("expected a blob reference")
    };
    assert_eq!(h.store.get_blob(&key).await.unwrap().unwrap(), png(64, 64));
}

#[tokio::test]
async fn bad_inputs_get_problem_json() {
    let h = harness(4096, 1 << 20);
    let s = &h.state;
    assert_problem(
        &send(s, post("/v1/jobs", "image/png", vec![])).await,
        StatusCode::BAD_REQUEST,
        "empty_body",
    );
    assert_problem(
        &send(
            s,
            post(
                "/v1/jobs",
                "application/octet-stream",
                b"\x00\x01 random bytes, no image".to_vec(),
            ),
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_image_format",
    );
    assert_problem(
        &send(s, post("/v1/jobs", "text/plain", png(4, 4))).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    assert_problem(
        &send(s, post("/v1/jobs?model=nope", "image/png", png(4, 4))).await,
        StatusCode::NOT_FOUND,
        "model_not_found",
    );
    assert_problem(
        &send(
            s,
            post("/v1/jobs?model=tiny-mean&version=9", "image/png", png(4, 4)),
        )
        .await,
        StatusCode::NOT_FOUND,
        "model_not_found",
    );
    assert_problem(
        &send(s, post("/v1/jobs", "image/png", vec![0x89; 5000])).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert_problem(
        &send(
            s,
            post("/v1/jobs", "image/png", png_header(100_000, 100_000)),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_pixels",
    );
    assert_problem(
        &send(s, post("/v1/jobs", "image/jpeg", vec![0xFF, 0xD8, 0xFF])).await,
        StatusCode::BAD_REQUEST,
        "invalid_image",
    );
    assert_problem(
        &send(s, post("/v1/jobs?top_k=0", "image/png", png(4, 4))).await,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
    );
    assert_problem(
        &send(s, post("/v1/jobs?colour=red", "image/png", png(4, 4))).await,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
    );
    // Nothing above reached the queue.
    assert!(h.queue.is_empty());
    assert!(h.store.is_empty());
}

#[tokio::test]
async fn full_queue_is_429_with_retry_after() {
    let h = harness(1 << 20, 1 << 20);
    for _ in 0..8 {
        assert_eq!(
            send(&h.state, post("/v1/jobs", "image/png", png(4, 4)))
                .await
                .0,
            StatusCode::ACCEPTED
        );
    }
    let resp = send(&h.state, post("/v1/jobs", "image/png", png(4, 4))).await;
    assert_problem(&resp, StatusCode::TOO_MANY_REQUESTS, "overloaded");
    assert!(resp.1.contains_key(header::RETRY_AFTER));
    // The refused job left no record behind.
    assert_eq!(h.store.len(), 8);
}

#[tokio::test]
async fn unknown_jobs_routes_and_bad_waits() {
    let h = harness(1 << 20, 1 << 20);
    let s = &h.state;
    assert_problem(
        &send(s, get(&format!("/v1/jobs/{}", JobId::new()))).await,
        StatusCode::NOT_FOUND,
        "job_not_found",
    );
    assert_problem(
        &send(s, get("/v1/jobs/not-a-uuid")).await,
        StatusCode::NOT_FOUND,
        "job_not_found",
    );
    assert_problem(
        &send(s, get(&format!("/v1/jobs/{}?wait=-1", JobId::new()))).await,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
    );
    assert_problem(
        &send(s, get("/v2/nothing")).await,
        StatusCode::NOT_FOUND,
        "invalid_argument",
    );
    let resp = send(s, Request::delete("/v1/jobs").body(Body::empty()).unwrap()).await;
    assert_eq!(resp.0, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn long_poll_returns_when_the_job_finishes() {
    let h = harness(1 << 20, 1 << 20);
    let resp = send(&h.state, post("/v1/jobs", "image/png", png(4, 4))).await;
    let id: JobId = resp.2["id"].as_str().unwrap().parse().unwrap();

    // A "worker" finishes the job 100 ms after the poll starts.
    let store = h.store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut r: JobRecord = store.get(id).await.unwrap().unwrap();
        r.start(chrono::Utc::now()).unwrap();
        r.fail(
            JobError::new(ErrorCode::DecodeFailed, "bad pixels"),
            None,
            chrono::Utc::now(),
        )
        .unwrap();
        store.save(&r, Duration::from_secs(60)).await.unwrap();
    });
    let started = std::time::Instant::now();
    let got = send(&h.state, get(&format!("/v1/jobs/{id}?wait=5"))).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(
        got.2["status"],
        serde_json::to_value(JobStatus::Failed).unwrap()
    );
    assert_eq!(got.2["error"]["code"], "decode_failed");
    assert_eq!(got.2["attempts"], 1);
    // Woken by the completion, not by the 5 s cap.
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn health_and_readiness() {
    let h = harness(1 << 20, 1 << 20);
    let live = send(&h.state, get("/healthz")).await;
    assert_eq!(live.0, StatusCode::OK);
    let ready = send(&h.state, get("/readyz")).await;
    assert_eq!(ready.0, StatusCode::OK);
    assert_eq!(ready.2["broker"], "ok");
}

#[tokio::test]
async fn kserve_v2_health_and_server_metadata() {
    let h = harness(1 << 20, 1 << 20);
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/tiny-mean/ready",
        "/v2/models/tiny-mean/versions/1/ready",
    ] {
        assert_eq!(send(&h.state, get(path)).await.0, StatusCode::OK, "{path}");
    }
    for path in [
        "/v2/models/nope/ready",
        "/v2/models/tiny-mean/versions/9/ready",
        "/v2/models/tiny-mean/versions/x/ready",
    ] {
        assert_eq!(
            send(&h.state, get(path)).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let meta = send(&h.state, get("/v2")).await;
    assert_eq!(meta.0, StatusCode::OK);
    assert_eq!(meta.2["name"], "inferq");
    assert_eq!(meta.2["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn cancel_queued_job_then_409() {
    let h = harness(1 << 20, 1 << 20);
    let resp = send(&h.state, post("/v1/jobs", "image/png", png(4, 4))).await;
    let id = resp.2["id"].as_str().unwrap().to_owned();
    let cancel = || {
        Request::post(format!("/v1/jobs/{id}/cancel"))
            .body(Body::empty())
            .unwrap()
    };
    let first = send(&h.state, cancel()).await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.2);
    assert_eq!(first.2["status"], "canceled");
    // Long-polls see it as finished at once.
    let got = send(&h.state, get(&format!("/v1/jobs/{id}?wait=5"))).await;
    assert_eq!(got.2["status"], "canceled");
    assert_problem(
        &send(&h.state, cancel()).await,
        StatusCode::CONFLICT,
        "job_finished",
    );
    let unknown = Request::post(format!("/v1/jobs/{}/cancel", JobId::new()))
        .body(Body::empty())
        .unwrap();
    assert_problem(
        &send(&h.state, unknown).await,
        StatusCode::NOT_FOUND,
        "job_not_found",
    );
}
