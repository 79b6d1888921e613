//! Shared harness for the API's `oneshot` tests: the real router over the
//! in-memory queue and store, and the committed test model manifests.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use inferq_api::{ApiCatalog, ApiConfig, AppState, Settings, app};
use inferq_backends::broker::memory::MemoryQueue;
use inferq_backends::repository::{LiveRepository, ModelRepository};
use inferq_backends::store::memory::MemoryStore;
use serde_json::Value;
use tower::ServiceExt;

pub(crate) struct Harness {
    pub state: AppState,
    pub queue: MemoryQueue,
    pub store: Arc<MemoryStore>,
}

pub(crate) fn harness(max_body: usize, inline_max: usize) -> Harness {
    harness_with(&[
        "--max-body-bytes",
        &max_body.to_string(),
        "--inline-max-bytes",
        &inline_max.to_string(),
    ])
}

/// The harness with extra `inferq-api` flags (defaults otherwise, as the
/// production binary would parse them).
pub(crate) fn harness_with(flags: &[&str]) -> Harness {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/models");
    // Defaults for tests; a flag given in `flags` replaces its default
    // (clap refuses a flag given twice).
    let defaults = [
        ("--max-wait-secs", "5"),
        ("--request-timeout-secs", "5"),
        ("--default-model", "tiny-mean"),
        ("--model-poll-secs", "0"),
        ("--max-model-bytes", "1048576"),
        ("--result-ttl-secs", "60"),
        ("--blob-ttl-secs", "60"),
        ("--model-dir", dir.to_str().unwrap()),
    ];
    let mut args = vec!["inferq-api"];
    for (flag, value) in defaults {
        if !flags.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(flags);
    let config: ApiConfig = inferq_runtime::config::load(args).unwrap();
    let repo = ModelRepository::scan(&dir).unwrap().repository;
    let models = ApiCatalog(Arc::new(LiveRepository::new(&dir, repo)));
    let queue = MemoryQueue::new(8, config.delivery.delivery_limit);
    let store = Arc::new(MemoryStore::new(100));
    let state = AppState {
        queue: Arc::new(queue.clone()),
        store: store.clone(),
        models: Arc::new(models),
        fetcher: Arc::new(inferq_backends::fetch::Fetcher::new(&config.fetch).unwrap()),
        settings: Arc::new(
            Settings::from_config(
                &config.http,
                &config.models,
                &config.limits,
                &config.retention,
                &config.admission,
            )
            .with_event_rules(&config.events)
            .unwrap(),
        ),
        auth: Arc::new(inferq_api::http::auth::Authenticator::disabled()),
    };
    Harness {
        state,
        queue,
        store,
    }
}

/// [`harness`] with API-key authentication on, for these
/// `tenant:scopes:secret` entries.
pub(crate) fn auth_harness(entries: &[&str]) -> Harness {
    let mut h = harness(1 << 20, 1 << 16);
    let keys = entries
        .iter()
        .map(|e| inferq_api::http::auth::keys::ApiKey::parse(e).unwrap())
        .collect();
    h.state.auth = Arc::new(inferq_api::http::auth::Authenticator::with_keys(keys));
    h
}

/// Adds `Authorization: Bearer <key>`.
pub(crate) fn bearer(mut req: Request<Body>, key: &str) -> Request<Body> {
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {key}").parse().unwrap(),
    );
    req
}

pub(crate) fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 0, 0]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A PNG signature and IHDR declaring the size, with no pixel data.
pub(crate) fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut v = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
    v.extend_from_slice(b"IHDR");
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    v
}

pub(crate) async fn send(
    state: &AppState,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, json)
}

/// Sends `req` while a long-poll holds the only in-flight slot of `state`
/// (a harness with `--max-inflight-requests 1`): both go through one
/// router, whose in-flight count the poll holds. Checks that the poll
/// itself still completes.
pub(crate) async fn send_while_the_slot_is_held(
    state: &AppState,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let router = app(state.clone());
    let (_, _, job) = send(state, post("/v1/jobs", "image/png", png(4, 4))).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let poll = tokio::spawn(
        router
            .clone()
            .oneshot(get(&format!("/v1/jobs/{id}?wait=2"))),
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_eq!(poll.await.unwrap().unwrap().status(), StatusCode::OK);
    (status, headers, json)
}

pub(crate) fn post(uri: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

pub(crate) fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// Asserts an RFC 9457 problem with the given status and code.
pub(crate) fn assert_problem(
    (status, headers, body): &(StatusCode, axum::http::HeaderMap, Value),
    want: StatusCode,
    code: &str,
) {
    assert_eq!(*status, want, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(body["status"], want.as_u16());
    assert_eq!(body["code"], code);
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(body["type"].as_str().unwrap().ends_with(code));
}
