//! Readiness follows the store: with its Redis gone the API says it is not
//! ready — `/readyz` 503 as problem+json, KServe's `/v2/health/ready` and
//! model readiness `503` with `"ready": false` and the protocol's `error`
//! member — while liveness stays 200 (a busy or cut-off API must not be
//! restarted for it); with Redis back it is ready again without a restart.
//! The test runs its own `redis-server` on a free port so that stopping it
//! touches no other test.

use std::time::{Duration, Instant};

use inferq_tests::cluster::RedisServer;
use inferq_tests::*;
use serde_json::Value;

/// `(status, content type, body)` of a GET.
async fn probe(client: &reqwest::Client, url: &str) -> (u16, String, Value) {
    let resp = client.get(url).send().await.expect("the API answers");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, ct, body)
}

/// Polls `/readyz` until it answers `want` (the probes time out after 2 s).
async fn until_readyz(client: &reqwest::Client, base: &str, want: u16) {
    let t0 = Instant::now();
    loop {
        let (status, _, _) = probe(client, &format!("{base}/readyz")).await;
        if status == want {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "/readyz stayed {status}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_store_and_liveness_does_not() {
    if !services_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("inferq-readiness-{}", uuid::Uuid::new_v4()));
    let mut redis = RedisServer::start(&dir, false).expect("own redis-server");
    let ns = Namespace::new().on_redis(&redis.url());
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let base = api.url();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let (status, _, body) = probe(&client, &format!("{base}/v2/health/ready")).await;
    assert_eq!((status, &body), (200, &serde_json::json!({"ready": true})));
    let (status, _, body) = probe(&client, &format!("{base}/readyz")).await;
    assert_eq!(status, 200);
    assert_eq!(body["store"], "ok");

    redis.kill().expect("stop redis");
    until_readyz(&client, &base, 503).await;
    let (_, ct, body) = probe(&client, &format!("{base}/readyz")).await;
    assert!(ct.starts_with("application/problem+json"), "{ct}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("store"),
        "{body}"
    );
    // KServe v2: the body the SDKs read, plus the protocol's error member.
    let (status, _, body) = probe(&client, &format!("{base}/v2/health/ready")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let (status, _, body) = probe(&client, &format!("{base}/v2/models/tiny-mean/ready")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    assert!(body["error"].is_string(), "{body}");
    // Alive all the while.
    for live in ["/healthz", "/v2/health/live"] {
        let (status, _, _) = probe(&client, &format!("{base}{live}")).await;
        assert_eq!(status, 200, "{live}");
    }

    redis.restart().expect("start redis again");
    until_readyz(&client, &base, 200).await;
    let (status, _, body) = probe(&client, &format!("{base}/v2/health/ready")).await;
    assert_eq!((status, &body), (200, &serde_json::json!({"ready": true})));

    api.stop().await;
    ns.cleanup().await;
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}
