//! Shutdown of a real listening server (`inferq_api::serve`): a long-poll in
//! progress is answered with the job's current state as soon as the shutdown
//! starts, instead of holding the process for the whole grace period.

use std::time::{Duration, Instant};

mod common;

use axum::http::StatusCode;
use common::*;

#[tokio::test]
async fn shutdown_cuts_long_polls_short() {
    // Long waits and a long grace period: only the drain signal can end the
    // long-poll within the few seconds asserted below.
    let h = harness_with(&["--max-wait-secs", "60", "--shutdown-grace-secs", "60"]);
    let created = send(&h.state, post("/v1/jobs", "image/png", png(16, 16))).await;
    assert_eq!(created.0, StatusCode::ACCEPTED, "{}", created.2);
    let id = created.2["id"].as_str().unwrap().to_owned();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(inferq_api::serve(listener, h.state.clone(), async move {
        let _ = stopped.await;
    }));

    let url = format!("http://{addr}/v1/jobs/{id}?wait=60");
    let poll = tokio::spawn(async move {
        let resp = reqwest::get(url).await.unwrap();
        let status = resp.status();
        (status, resp.json::<serde_json::Value>().await.unwrap())
    });
    // The poll is parked on the job (nothing will ever run it).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the long-poll should still be waiting");

    let began = Instant::now();
    stop.send(()).unwrap();
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the long-poll was not cut short by the shutdown")
        .unwrap();
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["status"], "queued", "the current state, not a result");

    // With nothing else in progress the server returns long before the grace
    // period (60 s) is over.
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve did not return after the drain")
        .unwrap()
        .unwrap();
    assert!(began.elapsed() < Duration::from_secs(10));
}
