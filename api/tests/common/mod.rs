//! Shared harness for the API's `oneshot` tests: the real router over the
//! in-memory queue and store, and the committed test model manifests.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use inferq_api::{ApiCatalog, AppState, Settings, app};
use inferq_shared::broker::memory::MemoryQueue;
use inferq_shared::config::{HttpConfig, LimitConfig, ModelConfig, RetentionConfig};
use inferq_shared::repository::{LiveRepository, ModelRepository};
use inferq_shared::store::memory::MemoryStore;
use serde_json::Value;
use tower::ServiceExt;

pub struct Harness {
    pub state: AppState,
    pub queue: MemoryQueue,
    pub store: Arc<MemoryStore>,
}

pub fn harness(max_body: usize, inline_max: usize) -> Harness {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/models");
    let repo = ModelRepository::scan(&dir).unwrap().repository;
    let models = ApiCatalog(Arc::new(LiveRepository::new(&dir, repo)));
    let queue = MemoryQueue::new(8);
    let store = Arc::new(MemoryStore::new(100));
    let http = HttpConfig {
        listen: "127.0.0.1:0".into(),
        max_wait_secs: 5.0,
        request_timeout_secs: 5.0,
    };
    let model_cfg = ModelConfig {
        model_dir: dir,
        default_model: "tiny-mean".into(),
        model_poll_secs: 0.0,
        allow_model_upload: false,
        max_model_bytes: 1 << 20,
    };
    let limits = LimitConfig {
        max_body_bytes: max_body,
        max_pixels: 40_000_000,
        inline_max_bytes: inline_max,
        max_json_bytes: None,
        max_json_depth: 32,
        max_uri_bytes: 2048,
        max_instances: 64,
    };
    let retention = RetentionConfig {
        result_ttl_secs: 60,
        blob_ttl_secs: 60,
    };
    let state = AppState {
        queue: Arc::new(queue.clone()),
        store: store.clone(),
        models: Arc::new(models),
        fetcher: Arc::new(inferq_shared::fetch::Fetcher::new(&Default::default()).unwrap()),
        settings: Arc::new(Settings::from_config(
            &http, &model_cfg, &limits, &retention,
        )),
    };
    Harness {
        state,
        queue,
        store,
    }
}

pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 0, 0]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A PNG signature and IHDR declaring the size, with no pixel data.
pub fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut v = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
    v.extend_from_slice(b"IHDR");
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    v
}

pub async fn send(
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

pub fn post(uri: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// Asserts an RFC 9457 problem with the given status and code.
pub fn assert_problem(
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
