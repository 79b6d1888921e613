//! Every input encoding end to end through RabbitMQ and Redis on the tiny
//! model: the same red picture sent raw, as base64 JSON, as a data: URL, as
//! a multipart upload and as a ready tensor must give the same answer.

use std::time::Duration;

use base64::Engine;
use inferq_tests::*;
use serde_json::json;

fn top(job: &serde_json::Value) -> (String, f64) {
    let first = &job["result"]["top_k"][0];
    (
        first["label"].as_str().unwrap().to_owned(),
        first["probability"].as_f64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_encodings_agree() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let worker = start_worker(&ns, &test_models(), &["--threads", "2"]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let red = solid_png(40, 30, [255, 0, 0]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&red);

    let mut ids = Vec::new();
    let (status, body) = submit(&client, &base, "", "image/png", red.clone()).await;
    assert_eq!(status, 202, "{body}");
    ids.push(("raw", body["id"].as_str().unwrap().to_owned()));

    for (name, input) in [
        ("b64", json!({"b64": b64})),
        (
            "data-url",
            json!({"b64": format!("data:image/png;base64,{b64}")}),
        ),
        ("tensor", {
            // tiny-mean's input is pixel / 255 in NCHW: red = ones in R.
            let ones = vec![vec![1.0f32; 224]; 224];
            let zeros = vec![vec![0.0f32; 224]; 224];
            json!({"tensor": [ones, zeros.clone(), zeros]})
        }),
    ] {
        let resp = client
            .post(format!("{base}/v1/jobs"))
            .json(&json!({"model": "tiny-mean", "input": input}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{name}");
        let body: serde_json::Value = resp.json().await.unwrap();
        ids.push((name, body["id"].as_str().unwrap().to_owned()));
    }

    let form = reqwest::multipart::Form::new()
        .text("model", "tiny-mean")
        .part(
            "file",
            reqwest::multipart::Part::bytes(red.clone()).file_name("red.png"),
        );
    let resp = client
        .post(format!("{base}/v1/jobs"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.unwrap();
    ids.push(("multipart", body["id"].as_str().unwrap().to_owned()));

    // pure red: logits [4,0,0,2,0,3,-3,3,1,0] -> p(red) = e^4 / sum.
    let logits = [4.0f64, 0., 0., 2., 0., 3., -3., 3., 1., 0.];
    let expected = 4f64.exp() / logits.iter().map(|l| l.exp()).sum::<f64>();
    for (name, id) in &ids {
        let job = wait_terminal(&client, &base, id, Duration::from_secs(30)).await;
        assert_eq!(job["status"], "succeeded", "{name}: {job}");
        let (label, p) = top(&job);
        assert_eq!(label, "red", "{name}");
        assert!((p - expected).abs() < 1e-3, "{name}: {p} vs {expected}");
    }
    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}
