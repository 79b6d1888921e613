//! Request limits on `POST /v1/jobs` (JSON size and depth, URI length,
//! tensor sanity), through the real router with in-memory backends.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine;
use common::*;
use serde_json::{Value, json};

fn json_post(body: &Value) -> axum::http::Request<axum::body::Body> {
    post(
        "/v1/jobs",
        "application/json",
        serde_json::to_vec(body).unwrap(),
    )
}

/// A valid PNG header padded with trailing bytes to exactly `len` bytes
/// (the API only reads the header).
fn padded_png(len: usize) -> Vec<u8> {
    let mut v = png(4, 4);
    assert!(v.len() < len);
    v.resize(len, 0);
    v
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn detail(resp: &(StatusCode, axum::http::HeaderMap, Value)) -> String {
    resp.2["detail"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn json_nested_deeper_than_the_limit_is_400() {
    let h = harness(1 << 20, 1 << 20);
    let deep = format!(
        r#"{{"input": {{"tensor": {}1{}}}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    let resp = send(&h.state, post("/v1/jobs", "application/json", deep.into())).await;
    assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(detail(&resp).contains("deeper than 32"), "{}", resp.2);

    // Brackets inside strings do not count.
    let model = format!("{}x", "[".repeat(100));
    let resp = send(
        &h.state,
        json_post(&json!({"model": model, "input": {"tensor": [[1.0]]}})),
    )
    .await;
    assert_problem(&resp, StatusCode::NOT_FOUND, "model_not_found");
}

#[tokio::test]
async fn base64_images_get_room_for_the_encoding_but_not_more() {
    let max_body = 48 * 1024;
    let h = harness(max_body, 1 << 20);
    // An image at the raw limit is accepted as base64, although its JSON is
    // a third larger than max_body_bytes.
    let image = padded_png(max_body);
    let body = json!({"input": {"b64": b64(&image)}});
    assert!(serde_json::to_vec(&body).unwrap().len() > max_body);
    let resp = send(&h.state, json_post(&body)).await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    assert_eq!(resp.2["input"]["bytes"], max_body);

    // One byte more decodes above the image limit: 413.
    let image = padded_png(max_body + 1);
    let resp = send(&h.state, json_post(&json!({"input": {"b64": b64(&image)}}))).await;
    assert_problem(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // A JSON body above the JSON limit is refused before parsing.
    let limit = h.state.settings.limits.json_limit();
    let filler = "x".repeat(limit);
    let resp = send(
        &h.state,
        json_post(&json!({"model": filler, "input": {"b64": "aGk="}})),
    )
    .await;
    assert_problem(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert!(detail(&resp).contains(&limit.to_string()), "{}", resp.2);
}

#[tokio::test]
async fn max_json_bytes_overrides_the_derived_limit() {
    let mut h = harness(1 << 20, 1 << 20);
    let mut settings = (*h.state.settings).clone();
    settings.limits.max_json_bytes = Some(100);
    h.state.settings = Arc::new(settings);
    let ok = json!({"input": {"uri": "gs://bucket/k.jpg"}});
    let resp = send(&h.state, json_post(&ok)).await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    let long = json!({"input": {"uri": format!("gs://bucket/{}", "k".repeat(100))}});
    let resp = send(&h.state, json_post(&long)).await;
    assert_problem(&resp, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn storage_references_longer_than_the_limit_are_400() {
    let mut h = harness(1 << 20, 1 << 20);
    let long = format!("gs://bucket/{}", "k".repeat(2100));
    for body in [
        json!({"input": {"uri": long}}),
        json!({"input": {"uri": "gs://bucket/k"}, "output": {"uri": long}}),
    ] {
        let resp = send(&h.state, json_post(&body)).await;
        assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_uri");
        assert!(detail(&resp).contains("at most 2048"), "{}", resp.2);
    }
    // `output_uri` in the query string of a raw upload is checked too.
    let uri = format!("/v1/jobs?output_uri={long}");
    let resp = send(&h.state, post(&uri, "image/png", png(4, 4))).await;
    assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_uri");

    // So is `model_uri`, in the query string and in a multipart form, as
    // in JSON (it used to reach the model resolver unchecked; found with
    // the `multipart` fuzz target's length property).
    let uri = format!("/v1/jobs?model_uri={long}");
    let resp = send(&h.state, post(&uri, "image/png", png(4, 4))).await;
    assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_uri");
    let mut form =
        b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
            .to_vec();
    form.extend_from_slice(&png(4, 4));
    form.extend_from_slice(
        format!("\r\n--B\r\nContent-Disposition: form-data; name=\"model_uri\"\r\n\r\n{long}\r\n--B--\r\n")
            .as_bytes(),
    );
    let resp = send(
        &h.state,
        post("/v1/jobs", "multipart/form-data; boundary=B", form),
    )
    .await;
    assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_uri");
    assert!(detail(&resp).contains("model_uri"), "{}", resp.2);

    // A lower configured limit applies to both.
    let mut settings = (*h.state.settings).clone();
    settings.limits.max_uri_bytes = 32;
    h.state.settings = Arc::new(settings);
    let uri = "gs://bucket/0123456789/0123456789/x.jpg";
    let resp = send(&h.state, json_post(&json!({"input": {"uri": uri}}))).await;
    assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_uri");
    assert!(detail(&resp).contains("at most 32"), "{}", resp.2);
    let resp = send(
        &h.state,
        json_post(&json!({"input": {"uri": "gs://bucket/k.jpg"}, "output": {"uri": uri}})),
    )
    .await;
    assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_uri");
    let resp = send(
        &h.state,
        json_post(&json!({"input": {"uri": "gs://bucket/k.jpg"}})),
    )
    .await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
}

/// Regression: the tensor buffer used to be sized from the first row's
/// shape before the list was checked, so `[[0 × n], 0 × n]` asked for n²
/// floats (40 GB here) and aborted the process.
#[tokio::test]
async fn a_ragged_tensor_claiming_a_huge_shape_is_400() {
    let h = harness(1 << 20, 1 << 20);
    let row = vec!["0"; 100_000].join(",");
    let body = format!(r#"{{"input": {{"tensor": [[{row}],{row}]}}}}"#);
    let resp = send(&h.state, post("/v1/jobs", "application/json", body.into())).await;
    assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(detail(&resp).contains("rectangular"), "{}", resp.2);
}

#[tokio::test]
async fn tensor_values_beyond_f32_are_400() {
    let h = harness(1 << 20, 1 << 20);
    let resp = send(
        &h.state,
        post(
            "/v1/jobs",
            "application/json",
            br#"{"input": {"tensor": [[1e39]]}}"#.to_vec(),
        ),
    )
    .await;
    assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(detail(&resp).contains("32-bit float"), "{}", resp.2);
}
