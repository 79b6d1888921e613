//! The in-flight body budget through the real router: a body larger than
//! the whole budget is 413 at once, declared or chunked; a request that
//! finds the budget held by another waits, then gets 503 with Retry-After;
//! the budget is free again once the holding request is gone.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use common::*;
use futures::StreamExt;
use serde_json::json;
use tower::ServiceExt;

const MIB: usize = 1 << 20;

fn budget_harness() -> Harness {
    harness_with(&[
        "--body-budget-mib",
        "1",
        "--request-timeout-secs",
        "1",
        "--max-body-bytes",
        "4194304",
    ])
}

/// A JSON job whose `model` string pads it to `len` bytes.
fn padded_job(len: usize) -> Vec<u8> {
    let mut body =
        serde_json::to_vec(&json!({"model": "", "input": {"uri": "gs://bucket/o.png"}})).unwrap();
    let pad = len - body.len();
    let at = body
        .windows(10)
        .position(|w| w == b"\"model\":\"\"")
        .unwrap()
        + 9;
    body.splice(at..at, std::iter::repeat_n(b'x', pad));
    assert_eq!(body.len(), len);
    body
}

#[tokio::test]
async fn a_body_larger_than_the_budget_is_413_declared_or_chunked() {
    let h = budget_harness();
    // No Content-Length: the reservation grows with the body and fails.
    let resp = send(
        &h.state,
        post("/v1/jobs", "application/json", padded_job(2 * MIB)),
    )
    .await;
    assert_problem(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert!(
        resp.2["detail"]
            .as_str()
            .unwrap()
            .contains("--body-budget-mib"),
        "{}",
        resp.2
    );
    // Declared: refused before it is read.
    let mut req = post("/v1/jobs", "application/json", padded_job(2 * MIB));
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, (2 * MIB).into());
    let resp = send(&h.state, req).await;
    assert_problem(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Within the budget it is an ordinary request (refused for what it says).
    let resp = send(
        &h.state,
        post("/v1/jobs", "application/json", padded_job(MIB / 2)),
    )
    .await;
    assert!(
        resp.0.is_client_error() && resp.0 != StatusCode::PAYLOAD_TOO_LARGE,
        "{resp:?}"
    );
}

#[tokio::test]
async fn a_spent_budget_is_503_after_the_wait_and_free_after_the_holder() {
    let h = budget_harness();
    let app = inferq_api::app(h.state.clone());
    // The holder declares the whole budget, sends one byte and stalls.
    let stalled =
        futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"{")) })
            .chain(futures::stream::pending());
    let holder = Request::post("/v1/jobs")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, MIB)
        .body(Body::from_stream(stalled))
        .unwrap();
    let holding = tokio::spawn(app.clone().oneshot(holder));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let small = || {
        let body = padded_job(64 * 1024);
        Request::post("/v1/jobs")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap()
    };
    let resp = app.clone().oneshot(small()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let problem: serde_json::Value = serde_json::from_slice(
        &http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(problem["code"], "overloaded", "{problem}");

    // The holder goes away (its client disconnected): the budget is free.
    holding.abort();
    let _ = holding.await;
    let resp = app.oneshot(small()).await.unwrap();
    assert!(
        resp.status().is_client_error(),
        "not refused for the budget: {}",
        resp.status()
    );
}
