//! Admission control, deadlines, the in-flight bound and the dead-letter
//! admin endpoints, through the real router on in-memory backends.

mod common;

use std::time::Duration;

use axum::http::{StatusCode, header};
use bytes::Bytes;
use common::*;
use inferq_backends::broker::JobQueue;
use inferq_backends::store::{AdmissionControl, DeadLetters, Records};
use inferq_core::ErrorCode;
use inferq_core::job::{JobError, JobId, JobRecord};
use inferq_core::message::JobMessage;
use tower::ServiceExt;

const TTL: Duration = Duration::from_secs(60);

/// Plays the worker: takes the next queued job and finishes it.
async fn finish_next(h: &Harness) -> JobId {
    let mut deliveries = h.queue.consume(1).await.unwrap();
    let d = deliveries.next().await.unwrap().unwrap();
    let id = JobMessage::decode(d.payload).unwrap().id;
    let mut r: JobRecord = h.store.get(id).await.unwrap().unwrap();
    r.start(chrono::Utc::now()).unwrap();
    r.fail(
        JobError::new(ErrorCode::DecodeFailed, "x"),
        None,
        chrono::Utc::now(),
    )
    .unwrap();
    h.store.save(&r, TTL).await.unwrap();
    id
}

#[tokio::test]
async fn backlog_limit_is_per_model_and_frees_as_jobs_finish() {
    let h = harness_with(&["--max-backlog", "2"]);
    let s = &h.state;
    for _ in 0..2 {
        let resp = send(s, post("/v1/jobs", "image/png", png(4, 4))).await;
        assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    }
    let refused = send(s, post("/v1/jobs", "image/png", png(4, 4))).await;
    assert_problem(&refused, StatusCode::TOO_MANY_REQUESTS, "overloaded");
    // No completion yet: the stalled-pool hint.
    assert_eq!(refused.1[header::RETRY_AFTER], "30");
    assert!(refused.2["detail"].as_str().unwrap().contains("tiny-mean"));
    // The refused job left nothing behind.
    assert_eq!(h.store.len(), 2);
    assert_eq!(h.store.backlog("tiny-mean").await.unwrap(), 2);
    // Another model is not affected.
    let other = send(s, post("/v1/jobs?model=tiny-slow", "image/png", png(4, 4))).await;
    assert_eq!(other.0, StatusCode::ACCEPTED);

    finish_next(&h).await;
    assert_eq!(h.store.backlog("tiny-mean").await.unwrap(), 1);
    let resp = send(s, post("/v1/jobs", "image/png", png(4, 4))).await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    // Now a completion was seen: Retry-After follows the pace (1 per minute
    // here → room for one more in about a minute, capped at 60 s).
    let refused = send(s, post("/v1/jobs", "image/png", png(4, 4))).await;
    assert_problem(&refused, StatusCode::TOO_MANY_REQUESTS, "overloaded");
    let secs: u32 = refused.1[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
}

#[tokio::test]
async fn refused_enqueue_gives_the_backlog_place_back() {
    // The in-memory queue holds 8: the 9th publish fails after admission.
    let h = harness_with(&["--max-backlog", "100"]);
    for _ in 0..8 {
        send(&h.state, post("/v1/jobs", "image/png", png(4, 4))).await;
    }
    let resp = send(&h.state, post("/v1/jobs", "image/png", png(4, 4))).await;
    assert_eq!(resp.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h.store.backlog("tiny-mean").await.unwrap(), 8);
}

#[tokio::test]
async fn deadlines_are_recorded_carried_and_validated() {
    let h = harness(1 << 20, 1 << 20);
    let s = &h.state;
    let before = chrono::Utc::now();
    let resp = send(s, post("/v1/jobs?timeout=2.5", "image/png", png(4, 4))).await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    let deadline: chrono::DateTime<chrono::Utc> =
        resp.2["deadline"].as_str().unwrap().parse().unwrap();
    let span = (deadline - before).num_milliseconds();
    assert!((2400..3500).contains(&span), "{span}");
    let mut deliveries = h.queue.consume(1).await.unwrap();
    let msg = JobMessage::decode(deliveries.next().await.unwrap().unwrap().payload).unwrap();
    assert_eq!(msg.deadline, Some(deadline));

    let at = "2099-01-01T00:00:00Z";
    let body = format!(
        r#"{{"deadline": "{at}", "input": {{"b64": "{}"}}}}"#,
        base64_png()
    );
    let resp = send(s, post("/v1/jobs", "application/json", body.into_bytes())).await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    assert!(
        resp.2["deadline"]
            .as_str()
            .unwrap()
            .starts_with("2099-01-01T00:00:00")
    );

    for bad in [
        "?deadline=2001-01-01T00:00:00Z",
        "?deadline=tomorrow",
        "?timeout=0",
        "?timeout=-3",
        "?timeout=1&deadline=2099-01-01T00:00:00Z",
    ] {
        assert_problem(
            &send(s, post(&format!("/v1/jobs{bad}"), "image/png", png(4, 4))).await,
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        );
    }
}

fn base64_png() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(png(4, 4))
}

#[tokio::test]
async fn requests_beyond_the_in_flight_bound_get_503_but_probes_answer() {
    let h = harness_with(&["--max-inflight-requests", "1"]);
    let router = inferq_api::app(h.state.clone());
    let resp = send(&h.state, post("/v1/jobs", "image/png", png(4, 4))).await;
    let id = resp.2["id"].as_str().unwrap().to_owned();
    // A long-poll holds the only slot.
    let poll = tokio::spawn(
        router
            .clone()
            .oneshot(get(&format!("/v1/jobs/{id}?wait=2"))),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = router.clone().oneshot(get("/v1/models")).await.unwrap();
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
    let health = router.clone().oneshot(get("/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(poll.await.unwrap().unwrap().status(), StatusCode::OK);
    // The slot is free again.
    let ok = router.oneshot(get("/v1/models")).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn dead_letters_list_and_replay() {
    let h = harness(1 << 20, 1 << 20);
    let s = &h.state;
    let resp = send(s, post("/v1/jobs", "image/png", png(4, 4))).await;
    let id: JobId = resp.2["id"].as_str().unwrap().parse().unwrap();
    // Play the dead-letter consumer: park the job with its message.
    let mut deliveries = h.queue.consume(1).await.unwrap();
    let message: Bytes = deliveries.next().await.unwrap().unwrap().payload;
    let mut r = h.store.get(id).await.unwrap().unwrap();
    r.start(chrono::Utc::now()).unwrap();
    r.dead_letter(
        JobError::new(ErrorCode::TooManyAttempts, "gave up"),
        chrono::Utc::now(),
    )
    .unwrap();
    h.store.dead_letter(&r, &message, TTL).await.unwrap();

    let list = send(s, get("/v1/admin/dead-letters")).await;
    assert_eq!(list.0, StatusCode::OK);
    assert_eq!(list.2["count"], 1);
    assert_eq!(list.2["jobs"][0]["id"], id.to_string());
    assert_eq!(list.2["jobs"][0]["status"], "dead_lettered");
    assert_eq!(list.2["jobs"][0]["attempts"], 1);
    assert_problem(
        &send(s, get("/v1/admin/dead-letters?limit=0")).await,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
    );

    let replay = format!("/v1/admin/dead-letters/{id}/replay");
    let resp = send(s, post(&replay, "application/json", vec![])).await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    assert_eq!(resp.2["status"], "queued");
    assert_eq!(resp.2["attempts"], 0);
    assert_eq!(resp.2["replays"], 1);
    // The same message is back on the queue, and the job in the backlog.
    let again = deliveries.next().await.unwrap().unwrap();
    assert_eq!(again.payload, message);
    assert_eq!(h.store.backlog("tiny-mean").await.unwrap(), 1);
    assert_eq!(send(s, get("/v1/admin/dead-letters")).await.2["count"], 0);
    assert_problem(
        &send(s, post(&replay, "application/json", vec![])).await,
        StatusCode::CONFLICT,
        "not_dead_lettered",
    );
    assert_problem(
        &send(
            s,
            post(
                &format!("/v1/admin/dead-letters/{}/replay", JobId::new()),
                "application/json",
                vec![],
            ),
        )
        .await,
        StatusCode::NOT_FOUND,
        "job_not_found",
    );
}

fn with_key(uri: &str, key: &str, body: Vec<u8>) -> axum::http::Request<axum::body::Body> {
    let mut req = post(uri, "image/png", body);
    req.headers_mut()
        .insert("idempotency-key", key.parse().unwrap());
    req
}

#[tokio::test]
async fn idempotency_key_returns_the_same_job() {
    let h = harness(1 << 20, 1 << 20);
    let s = &h.state;
    let first = send(s, with_key("/v1/jobs", "order-17", png(4, 4))).await;
    assert_eq!(first.0, StatusCode::ACCEPTED, "{}", first.2);
    assert!(!first.1.contains_key("idempotent-replayed"));
    let again = send(s, with_key("/v1/jobs", "order-17", png(4, 4))).await;
    assert_eq!(again.0, StatusCode::ACCEPTED, "{}", again.2);
    assert_eq!(again.2["id"], first.2["id"]);
    assert_eq!(again.1["idempotent-replayed"], "true");
    assert_eq!(again.1[header::LOCATION], first.1[header::LOCATION]);
    // One job. A replay of a job that has not started yet sends its message
    // again: the API cannot tell a message waiting in the queue from one whose
    // first API died before the broker confirmed it (the record exists, the
    // message does not). Workers ack a copy of a finished job unrun.
    assert_eq!(h.store.len(), 1);
    assert_eq!(h.queue.len(), 2);

    // The same key with another image, or other options, is refused.
    assert_problem(
        &send(s, with_key("/v1/jobs", "order-17", png(5, 4))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    );
    assert_problem(
        &send(s, with_key("/v1/jobs?top_k=2", "order-17", png(4, 4))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    );
    // Another key is another job; no key is always a new job.
    let other = send(s, with_key("/v1/jobs", "order-18", png(4, 4))).await;
    assert_ne!(other.2["id"], first.2["id"]);
    let plain = send(s, post("/v1/jobs", "image/png", png(4, 4))).await;
    assert_ne!(plain.2["id"], first.2["id"]);
    assert_eq!(h.queue.len(), 4);

    for bad in ["", &"k".repeat(256), "has space"] {
        let mut req = post("/v1/jobs", "image/png", png(4, 4));
        req.headers_mut()
            .insert("idempotency-key", bad.parse().unwrap());
        assert_problem(
            &send(s, req).await,
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        );
    }
}

#[tokio::test]
async fn a_refused_request_does_not_bind_its_idempotency_key() {
    let h = harness_with(&["--max-backlog", "1"]);
    let s = &h.state;
    let a = send(s, post("/v1/jobs", "image/png", png(4, 4))).await;
    assert_eq!(a.0, StatusCode::ACCEPTED);
    let refused = send(s, with_key("/v1/jobs", "retry-me", png(4, 4))).await;
    assert_eq!(refused.0, StatusCode::TOO_MANY_REQUESTS);
    finish_next(&h).await;
    // The retry with the same key is a fresh, accepted job — not a replay
    // of the refusal.
    let retry = send(s, with_key("/v1/jobs", "retry-me", png(4, 4))).await;
    assert_eq!(retry.0, StatusCode::ACCEPTED, "{}", retry.2);
    assert!(!retry.1.contains_key("idempotent-replayed"));
    assert_ne!(retry.2["id"], a.2["id"]);
}

/// The autoscaling gauges: the store's backlog counter, and the broker's
/// own count of waiting messages beside it. A store that lost its data (here:
/// the counter taken back by hand, as a Redis restart without persistence
/// zeroes it) leaves the broker's count standing.
#[tokio::test]
async fn the_queue_gauge_reads_the_broker_not_the_store() {
    let h = harness(1 << 20, 1 << 20);
    for _ in 0..3 {
        let resp = send(&h.state, post("/v1/jobs", "image/png", png(4, 4))).await;
        assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    }
    let s = &h.state;
    inferq_api::metrics::refresh_once(s.store.as_ref(), s.queue.as_ref(), s.models.as_ref()).await;
    let m = inferq_runtime::metrics::metrics();
    assert_eq!(m.backlog.with_label_values(&["tiny-mean"]).get(), 3);
    assert_eq!(m.queue_ready.get(), 3);
    for _ in 0..3 {
        h.store.release("tiny-mean").await.unwrap();
    }
    inferq_api::metrics::refresh_once(s.store.as_ref(), s.queue.as_ref(), s.models.as_ref()).await;
    assert_eq!(m.backlog.with_label_values(&["tiny-mean"]).get(), 0);
    assert_eq!(m.queue_ready.get(), 3, "the broker still holds the jobs");
    // A worker takes one: it leaves the ready count (and counts in its own
    // in-flight gauge instead).
    finish_next(&h).await;
    inferq_api::metrics::refresh_once(s.store.as_ref(), s.queue.as_ref(), s.models.as_ref()).await;
    assert_eq!(m.queue_ready.get(), 2);
}
