//! The TF Serving / Vertex AI predict call against the embedded server and
//! the real ONNX Runtime: instances in each accepted shape become jobs, the
//! answer keeps their order, failures and unknown routes are problems, and
//! admission control applies (429 when the backlog is full).

use base64::Engine;
use inferq_tests::*;
use serde_json::{Value, json};

fn b64(rgb: [u8; 3]) -> String {
    base64::engine::general_purpose::STANDARD.encode(solid_png(16, 16, rgb))
}

async fn predict(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let resp = client.post(url).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_answers_in_order_through_the_queue() {
    let repo = private_repository("tiny-mean", "predict");
    let server = start_embedded(&repo, "tiny-mean", &["--threads", "1"]).await;
    let base = server.url();
    let client = reqwest::Client::new();
    // The same images as single jobs, for the expected answers.
    let red = run_job(&client, &base, "", solid_png(16, 16, [255, 0, 0])).await;
    let blue = run_job(&client, &base, "", solid_png(16, 16, [0, 0, 255])).await;

    let (status, body) = predict(
        &client,
        &format!("{base}/v1/models/tiny-mean:predict"),
        json!({"instances": [{"b64": b64([0, 0, 255])}, {"image_bytes": {"b64": b64([255, 0, 0])}}],
               "parameters": {"top_k": 2}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let p = body["predictions"].as_array().unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[0]["top_k"].as_array().unwrap().len(), 2);
    assert_eq!(
        p[0]["top_k"][0]["index"],
        blue["result"]["top_k"][0]["index"]
    );
    assert_eq!(
        p[1]["top_k"][0]["index"],
        red["result"]["top_k"][0]["index"]
    );

    let (status, body) = predict(
        &client,
        &format!("{base}/v1/models/tiny-mean/versions/1:predict"),
        json!({"instances": [{"b64": b64([0, 255, 0])}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"][0]["kind"], "classification");

    for (url, body, want, code) in [
        (
            "/v1/models/tiny-mean/versions/9:predict",
            json!({"instances": [{"b64": b64([1, 1, 1])}]}),
            404,
            "model_not_found",
        ),
        (
            "/v1/models/nope:predict",
            json!({"instances": [{"b64": b64([1, 1, 1])}]}),
            404,
            "model_not_found",
        ),
        // An unknown verb is an unknown route (its code is the router's).
        (
            "/v1/models/tiny-mean:explain",
            json!({"instances": []}),
            404,
            "invalid_argument",
        ),
        (
            "/v1/models/tiny-mean:predict",
            json!({"instances": []}),
            400,
            "invalid_argument",
        ),
        (
            "/v1/models/tiny-mean:predict",
            json!({"inputs": {"x": [1]}}),
            400,
            "invalid_argument",
        ),
        (
            "/v1/models/tiny-mean:predict",
            json!({"instances": [{"b64": b64([1, 1, 1])}, {"b64": "%%%"}]}),
            400,
            "invalid_argument",
        ),
    ] {
        let (status, problem) = predict(&client, &format!("{base}{url}"), body).await;
        assert_eq!(status, want, "{url}: {problem}");
        assert_eq!(problem["code"], code, "{url}: {problem}");
    }
    // A corrupt image fails in the worker: the call fails with its code,
    // as the client's fault (422 decode_failed), not the server's.
    let cut = base64::engine::general_purpose::STANDARD.encode(&solid_png(64, 64, [3, 3, 3])[..50]);
    let (status, problem) = predict(
        &client,
        &format!("{base}/v1/models/tiny-mean:predict"),
        json!({"instances": [{"b64": cut}]}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["code"], "decode_failed", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("instance 0 failed"),
        "{problem}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_obeys_admission_control() {
    let repo = private_repository("tiny-slow", "predict-full");
    let server = start_embedded(
        &repo,
        "tiny-slow",
        &["--threads", "1", "--max-backlog", "2"],
    )
    .await;
    let client = reqwest::Client::new();
    let instances: Vec<Value> = (0..5u8).map(|i| json!({"b64": b64([i, 9, 9])})).collect();
    let resp = client
        .post(format!("{}/v1/models/tiny-slow:predict", server.url()))
        .json(&json!({ "instances": instances }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "overloaded", "{problem}");
    server.stop().await;
}
