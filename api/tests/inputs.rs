//! Every input encoding of `POST /v1/jobs`, the model listing and the
//! output endpoint, with in-memory backends (`oneshot`).

mod common;

use axum::http::StatusCode;
use base64::Engine;
use common::*;
use inferq_backends::broker::JobQueue;
use inferq_backends::store::Blobs;
use inferq_core::message::{ImageSource, JobMessage};
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn next_message(h: &Harness) -> JobMessage {
    let mut d = h.queue.consume(1).await.unwrap();
    JobMessage::decode(d.next().await.unwrap().unwrap().payload).unwrap()
}

fn json_post(body: Value) -> axum::http::Request<axum::body::Body> {
    post(
        "/v1/jobs",
        "application/json",
        serde_json::to_vec(&body).unwrap(),
    )
}

#[tokio::test]
async fn json_base64_and_data_urls() {
    let h = harness(1 << 20, 1 << 20);
    let image = png(8, 6);
    let resp = send(
        &h.state,
        json_post(json!({"input": {"b64": b64(&image)}, "top_k": 2})),
    )
    .await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    assert_eq!(resp.2["input"]["encoding"], "b64");
    assert_eq!(resp.2["input"]["width"], 8);
    let msg = next_message(&h).await;
    assert_eq!(msg.image, ImageSource::Inline(image.clone().into()));
    assert_eq!(msg.top_k, Some(2));

    let url = format!("data:image/png;base64,{}", b64(&image));
    for body in [
        json!({"input": {"b64": url}}),
        json!({"input": {"uri": url}}),
    ] {
        let resp = send(&h.state, json_post(body)).await;
        assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
        assert_eq!(
            next_message(&h).await.image,
            ImageSource::Inline(image.clone().into())
        );
    }
}

#[tokio::test]
async fn json_storage_references_and_output_uri() {
    let h = harness(1 << 20, 1 << 20);
    let body = json!({
        "model": "tiny-mean",
        "input": {"uri": "gs://photos/cats/1.jpg"},
        "output": {"uri": "gs://results/cats/"}
    });
    let resp = send(&h.state, json_post(body)).await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    assert_eq!(resp.2["input"]["encoding"], "uri");
    assert_eq!(resp.2["input"]["uri"], "gs://photos/cats/1.jpg");
    let msg = next_message(&h).await;
    assert_eq!(msg.image, ImageSource::Uri("gs://photos/cats/1.jpg".into()));
    assert_eq!(msg.output_uri.as_deref(), Some("gs://results/cats/"));

    for bad in [
        "ftp://host/x.png",
        "gs:///no-bucket",
        "file://relative/path",
        "just-a-name",
    ] {
        let resp = send(&h.state, json_post(json!({"input": {"uri": bad}}))).await;
        assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_uri");
    }
    let resp = send(
        &h.state,
        json_post(json!({"input": {"uri": "gs://a/b"}, "output": {"uri": "mailto:x"}})),
    )
    .await;
    assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_uri");
}

/// An output the worker could never write is refused at submit (nothing is
/// queued), by the same policy the worker applies when it writes.
#[tokio::test]
async fn output_uri_policy_is_checked_at_submit() {
    let root = std::env::temp_dir().join(format!("inferq-output-policy-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let root_str = root.to_str().unwrap().to_owned();
    let h = harness_with(&[
        "--fetch-allow-buckets",
        "results",
        "--fetch-local-root",
        &root_str,
    ]);
    let job = |out: &str| {
        json_post(json!({"input": {"uri": "gs://results/in.jpg"}, "output": {"uri": out}}))
    };
    let refused = [
        "gs://elsewhere/out/",
        "s3://elsewhere/x.json",
        "http://127.0.0.1/hook.json",
        "http://localhost/x/",
        "file:///etc/inferq/",
        &format!("file://{root_str}/../escape/"),
    ];
    for out in refused {
        let resp = send(&h.state, job(out)).await;
        assert_problem(&resp, StatusCode::FORBIDDEN, "uri_forbidden");
    }
    assert!(h.queue.is_empty(), "a refused job must not be queued");

    // A prefix equal to the local root is fine: results land below it.
    for out in [
        "gs://results/cats/",
        &format!("file://{root_str}/"),
        &format!("file://{root_str}/a/b.json"),
    ] {
        let resp = send(&h.state, job(out)).await;
        assert_eq!(resp.0, StatusCode::ACCEPTED, "{out}: {}", resp.2);
        assert_eq!(next_message(&h).await.output_uri.as_deref(), Some(out));
    }
    std::fs::remove_dir_all(&root).ok();
}

#[tokio::test]
async fn json_tensors_are_checked_against_the_manifest() {
    let h = harness(8 << 20, 256 * 1024);
    // tiny-mean takes float32 NCHW [1, 3, 224, 224]; the batch axis is optional.
    let plane = vec![vec![0.5f32; 224]; 224];
    let tensor = vec![plane.clone(), plane.clone(), plane];
    let resp = send(&h.state, json_post(json!({"input": {"tensor": tensor}}))).await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    assert_eq!(resp.2["input"]["shape"], json!([1, 3, 224, 224]));
    let msg = next_message(&h).await;
    assert_eq!(msg.tensor, Some(vec![1, 3, 224, 224]));
    // 600 kB of f32 is above the inline limit: it went to the store.
    let ImageSource::Blob(key) = msg.image else {
        panic!("tensor should travel by reference")
    };
    let data = h.store.get_blob(&key).await.unwrap().unwrap();
    assert_eq!(data.len(), 3 * 224 * 224 * 4);
    assert_eq!(&data[..4], &0.5f32.to_le_bytes());

    let small = [[[0.0f32; 4]; 4]; 3];
    let wrong = json!({"input": {"tensor": small}});
    let resp = send(&h.state, json_post(wrong)).await;
    assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(
        resp.2["detail"]
            .as_str()
            .unwrap()
            .contains("[1, 3, 224, 224]")
    );

    // tiny-nhwc-int32 wants whole numbers in [224, 224, 3].
    let row = vec![[1.5f32, 2.0, 3.0]; 224];
    let frac = json!({"model": "tiny-nhwc-int32", "input": {"tensor": vec![row; 224]}});
    let resp = send(&h.state, json_post(frac)).await;
    assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_argument");
}

#[tokio::test]
async fn malformed_json_jobs_are_400() {
    let h = harness(1 << 20, 1 << 20);
    let cases = [
        json!({"input": {}}),
        json!({"input": {"b64": "aGk=", "uri": "gs://a/b"}}),
        json!({"input": {"b64": "%%%"}}),
        json!({"input": {"b64": "aGk="}, "colour": "red"}),
        json!({"image": "aGk="}),
    ];
    for body in cases {
        let resp = send(&h.state, json_post(body.clone())).await;
        assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_argument");
    }
    let resp = send(
        &h.state,
        post("/v1/jobs", "application/json", b"{not json".to_vec()),
    )
    .await;
    assert_problem(&resp, StatusCode::BAD_REQUEST, "invalid_argument");
    // Valid base64 of something that is not an image.
    let resp = send(
        &h.state,
        json_post(json!({"input": {"b64": b64(b"hello world")}})),
    )
    .await;
    assert_problem(
        &resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_image_format",
    );
}

fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "inferq-test-boundary";
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: image/png\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn multipart_uploads() {
    let h = harness(1 << 20, 1 << 20);
    let image = png(5, 7);
    let (ct, body) = multipart(&[
        ("file", Some("cat.png"), &image),
        ("model", None, b"tiny-slow"),
        ("top_k", None, b"3"),
    ]);
    let resp = send(&h.state, post("/v1/jobs?model=tiny-mean", &ct, body)).await;
    assert_eq!(resp.0, StatusCode::ACCEPTED, "{}", resp.2);
    // The form field wins over the query string.
    assert_eq!(resp.2["model"], "tiny-slow");
    assert_eq!(resp.2["input"]["encoding"], "multipart");
    let msg = next_message(&h).await;
    assert_eq!(msg.image, ImageSource::Inline(image.into()));
    assert_eq!(msg.top_k, Some(3));

    let (ct, body) = multipart(&[("model", None, b"tiny-mean")]);
    assert_problem(
        &send(&h.state, post("/v1/jobs", &ct, body)).await,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
    );
    let (ct, body) = multipart(&[
        ("file", Some("a.png"), &png(2, 2)),
        ("top_k", None, b"many"),
    ]);
    assert_problem(
        &send(&h.state, post("/v1/jobs", &ct, body)).await,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
    );
    let (ct, body) = multipart(&[
        ("file", Some("a.png"), &png(2, 2)),
        ("colour", None, b"red"),
    ]);
    assert_problem(
        &send(&h.state, post("/v1/jobs", &ct, body)).await,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
    );
}

#[tokio::test]
async fn oversized_multipart_is_413() {
    let h = harness(4096, 1 << 20);
    let big = vec![7u8; 10_000];
    let (ct, body) = multipart(&[("file", Some("big.png"), &big)]);
    assert_problem(
        &send(&h.state, post("/v1/jobs", &ct, body)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
}

#[tokio::test]
async fn model_listing() {
    let h = harness(1 << 20, 1 << 20);
    let all = send(&h.state, get("/v1/models")).await;
    assert_eq!(all.0, StatusCode::OK);
    assert_eq!(all.2["default_model"], "tiny-mean");
    let models = all.2["models"].as_array().unwrap();
    let tiny = models
        .iter()
        .find(|m| m["name"] == "tiny-mean")
        .expect("tiny-mean listed");
    assert_eq!(tiny["default_version"], 1);
    let v1 = &tiny["versions"][0];
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["kind"], "classification");
    assert_eq!(v1["input"]["width"], 224);
    assert_eq!(v1["label_count"], 10);

    let one = send(&h.state, get("/v1/models/tiny-nhwc-int32")).await;
    assert_eq!(one.0, StatusCode::OK);
    assert_eq!(one.2["versions"][0]["input"]["dtype"], "int32");
    let v = send(&h.state, get("/v1/models/tiny-mean/versions/1")).await;
    assert_eq!(v.2["output"]["name"], "logits");
    assert_problem(
        &send(&h.state, get("/v1/models/nope")).await,
        StatusCode::NOT_FOUND,
        "model_not_found",
    );
    assert_problem(
        &send(&h.state, get("/v1/models/tiny-mean/versions/7")).await,
        StatusCode::NOT_FOUND,
        "model_not_found",
    );
}

#[tokio::test]
async fn output_of_an_unfinished_job_is_404() {
    let h = harness(1 << 20, 1 << 20);
    let resp = send(&h.state, post("/v1/jobs", "image/png", png(4, 4))).await;
    let id = resp.2["id"].as_str().unwrap();
    let out = send(&h.state, get(&format!("/v1/jobs/{id}/output"))).await;
    assert_problem(&out, StatusCode::NOT_FOUND, "output_not_found");
}
