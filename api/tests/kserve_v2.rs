//! KServe v2 conformance at the router: health bodies, server extensions,
//! the model configuration, the protocol's `error` member on answers made
//! by middleware (authentication, the in-flight limit, unknown routes and
//! methods), compressed request bodies under the body limit (a zip bomb is
//! a 413, decoded no further than the limit) and the wait timeout (504).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use serde_json::{Value, json};

const READER: &str = "r-0123456789abcdef";
const SUBMITTER: &str = "s-0123456789abcdef";

fn keyed() -> Harness {
    auth_harness(&[
        &format!("dash:read:{READER}"),
        &format!("up:submit+read:{SUBMITTER}"),
    ])
}

/// Asserts a v2 error: the status, `error` with some text, and (for the
/// problem bodies InferQ makes) `error` equal to `detail`.
fn assert_v2_error(resp: &(StatusCode, axum::http::HeaderMap, Value), want: StatusCode) {
    let (status, _, body) = resp;
    assert_eq!(*status, want, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "no `error` member: {body}");
    if body.get("detail").is_some() {
        assert_eq!(body["detail"], body["error"], "{body}");
        assert_eq!(body["status"], want.as_u16(), "{body}");
    }
}

fn infer_json(model: &str, body: Value) -> Request<Body> {
    post(
        &format!("/v2/models/{model}/infer"),
        "application/json",
        serde_json::to_vec(&body).unwrap(),
    )
}

#[tokio::test]
async fn health_answers_carry_their_bodies() {
    let h = harness(1 << 20, 1 << 20);
    let (status, _, body) = send(&h.state, get("/v2/health/live")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"live": true})));
    let (status, _, body) = send(&h.state, get("/v2/health/ready")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"ready": true})));
    let (status, _, body) = send(&h.state, get("/v2/models/tiny-mean/ready")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["name"], "tiny-mean");
    let resp = send(&h.state, get("/v2/models/nope/versions/1/ready")).await;
    assert_v2_error(&resp, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn server_metadata_lists_the_extensions_implemented() {
    let h = harness(1 << 20, 1 << 20);
    let (status, _, body) = send(&h.state, get("/v2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "inferq");
    assert_eq!(
        body["extensions"],
        json!([
            "binary_tensor_data",
            "classification",
            "model_configuration"
        ])
    );
}

#[tokio::test]
async fn model_config_is_triton_shaped() {
    let h = harness_with(&["--max-instances", "16"]);
    for uri in [
        "/v2/models/tiny-mean/config",
        "/v2/models/tiny-mean/versions/1/config",
    ] {
        let (status, _, c) = send(&h.state, get(uri)).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {c}");
        assert_eq!(c["name"], "tiny-mean");
        assert_eq!(c["platform"], "onnxruntime_onnx");
        assert_eq!(c["max_batch_size"], 16);
        let input = &c["input"][0];
        assert_eq!(input["data_type"], "TYPE_FP32", "{c}");
        assert_eq!(input["format"], "FORMAT_NCHW");
        assert_eq!(input["dims"].as_array().unwrap().len(), 3, "{c}");
        assert_eq!(
            c["input"][1],
            json!({"name": "image", "data_type": "TYPE_STRING", "dims": [1]})
        );
        assert_eq!(c["output"][0]["data_type"], "TYPE_FP32");
    }
    let (_, _, c) = send(&h.state, get("/v2/models/tiny-nhwc-int32/config")).await;
    assert_eq!(c["input"][0]["data_type"], "TYPE_INT32", "{c}");
    assert_eq!(c["input"][0]["format"], "FORMAT_NHWC");
    assert_eq!(c["input"][0]["dims"], json!([224, 224, 3]));
    let resp = send(&h.state, get("/v2/models/tiny-mean/versions/9/config")).await;
    assert_v2_error(&resp, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn middleware_errors_on_v2_paths_carry_the_error_member() {
    let h = keyed();
    let s = &h.state;
    let body = json!({"inputs": []});
    // 401 from authentication: still a problem, plus `error`.
    let resp = send(s, infer_json("tiny-mean", body.clone())).await;
    assert_problem(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_v2_error(&resp, StatusCode::UNAUTHORIZED);
    let resp = send(s, get("/v2/models/tiny-mean/config")).await;
    assert_v2_error(&resp, StatusCode::UNAUTHORIZED);
    // 403: a read-only key may not infer.
    let resp = send(s, bearer(infer_json("tiny-mean", body.clone()), READER)).await;
    assert_problem(&resp, StatusCode::FORBIDDEN, "forbidden");
    assert_v2_error(&resp, StatusCode::FORBIDDEN);
    // 404 for a path no route serves, 405 for a method.
    let resp = send(s, bearer(get("/v2/models/tiny-mean/nope"), READER)).await;
    assert_v2_error(&resp, StatusCode::NOT_FOUND);
    let resp = send(s, bearer(get("/v2/models/tiny-mean/infer"), SUBMITTER)).await;
    assert_v2_error(&resp, StatusCode::METHOD_NOT_ALLOWED);
    // Off the v2 prefix, problems are as they were.
    let (_, _, v1) = send(s, get("/v1/models")).await;
    assert!(v1.get("error").is_none(), "{v1}");
}

#[tokio::test]
async fn the_in_flight_limit_answers_v2_errors() {
    let h = harness_with(&["--max-inflight-requests", "1"]);
    let busy = send_while_the_slot_is_held(&h.state, get("/v2/models/tiny-mean")).await;
    assert_v2_error(&busy, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(busy.1[header::RETRY_AFTER], "1");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut w = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

fn encoded(model: &str, coding: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(format!("/v2/models/{model}/infer"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_ENCODING, coding)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn compressed_bodies_are_read_and_a_zip_bomb_is_a_413() {
    // JSON limit: 64 KiB + a third + 64 KiB = about 150 KiB.
    let h = harness(64 * 1024, 64 * 1024);
    let s = &h.state;
    // Decoded, then parsed: this request's fault is its content.
    let plain = serde_json::to_vec(&json!({"inputs": []})).unwrap();
    for (coding, body) in [("gzip", gzip(&plain)), ("deflate", deflate(&plain))] {
        let resp = send(s, encoded("tiny-mean", coding, body)).await;
        assert_v2_error(&resp, StatusCode::BAD_REQUEST);
        assert!(
            resp.2["error"]
                .as_str()
                .unwrap()
                .contains("exactly one input"),
            "{coding}: {}",
            resp.2
        );
    }
    let resp = send(s, encoded("tiny-mean", "gzip", b"not gzip".to_vec())).await;
    assert_v2_error(&resp, StatusCode::BAD_REQUEST);
    assert!(resp.2["error"].as_str().unwrap().contains("decompressed"));
    let resp = send(s, encoded("tiny-mean", "br", plain.clone())).await;
    assert_v2_error(&resp, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // 64 MiB of one letter in about 64 KiB of gzip: inside the limit as
    // sent, 400 times over it once inflated.
    let mut zeros =
        br#"{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [""#.to_vec();
    zeros.resize(64 << 20, b'A');
    let bomb = gzip(&zeros);
    drop(zeros);
    let bomb_len = bomb.len();
    assert!(bomb.len() < 100 * 1024, "{}", bomb.len());
    let started = Instant::now();
    let resp = send(s, encoded("tiny-mean", "gzip", bomb)).await;
    let took = started.elapsed();
    assert_problem(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_v2_error(&resp, StatusCode::PAYLOAD_TOO_LARGE);
    // Inflating stopped at the limit, not at 64 MiB.
    assert!(took < Duration::from_secs(2), "{took:?}");
    eprintln!("zip bomb (64 MiB in {bomb_len} B) refused in {took:?}");
}

#[tokio::test]
async fn a_call_that_outlives_the_wait_is_a_504() {
    // No worker: the job stays queued past --max-wait-secs.
    let h = harness_with(&["--max-wait-secs", "1"]);
    use base64::Engine;
    let image = base64::engine::general_purpose::STANDARD.encode(png(4, 4));
    let body =
        json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [image]}]});
    let resp = send(&h.state, infer_json("tiny-mean", body)).await;
    assert_problem(&resp, StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded");
    assert_v2_error(&resp, StatusCode::GATEWAY_TIMEOUT);
}
