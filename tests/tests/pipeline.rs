//! The production path end to end on a tiny model with exactly known
//! outputs: HTTP → RabbitMQ → worker (ONNX Runtime) → Redis → long-poll.

use std::time::Duration;

use inferq_tests::*;

/// tiny-mean's logits for a solid colour (see scripts/make_test_models.py):
/// logits[k] = W[k]·(r, g, b)/255 + B[k].
fn tiny_mean_probs(rgb: [u8; 3]) -> Vec<f64> {
    const W: [[f64; 3]; 10] = [
        [4., 0., 0.],
        [0., 4., 0.],
        [0., 0., 4.],
        [2., 2., 2.],
        [-2., -2., -2.],
        [3., 3., -3.],
        [-3., 3., 3.],
        [3., -3., 3.],
        [0., 0., 0.],
        [0., 0., 0.],
    ];
    const B: [f64; 10] = [0., 0., 0., 0., 2., 0., 0., 0., 1., 0.];
    let m: Vec<f64> = rgb.iter().map(|v| *v as f64 / 255.0).collect();
    let logits: Vec<f64> = (0..10)
        .map(|k| W[k][0] * m[0] + W[k][1] * m[1] + W[k][2] * m[2] + B[k])
        .collect();
    let sum: f64 = logits.iter().map(|l| l.exp()).sum();
    logits.iter().map(|l| l.exp() / sum).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_model_exact_results_through_rabbitmq_and_redis() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    // A small inline limit so one of the jobs travels by blob reference.
    let api = start_api(
        &ns,
        &test_models(),
        "tiny-mean",
        &["--inline-max-bytes", "2000"],
    )
    .await;
    let worker = start_worker(&ns, &test_models(), &["--threads", "2"]).await;
    let client = reqwest::Client::new();
    let base = api.url();

    let cases = [
        ([255u8, 0, 0], 16, "red"),
        ([255, 255, 0], 300, "yellow"),
        ([255, 255, 255], 8, "white"),
    ];
    let mut ids = Vec::new();
    for (rgb, size, _) in cases {
        let png = solid_png(size, size, rgb);
        let (status, body) = submit(&client, &base, "?top_k=10", "image/png", png).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "queued");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    for ((rgb, _, label), id) in cases.iter().zip(&ids) {
        let job = wait_terminal(&client, &base, id, Duration::from_secs(30)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["attempts"], 1);
        let expected = tiny_mean_probs(*rgb);
        let top = job["result"]["top_k"].as_array().unwrap();
        assert_eq!(top.len(), 10);
        assert_eq!(top[0]["label"], *label, "{job}");
        for entry in top {
            let k = entry["index"].as_u64().unwrap() as usize;
            let p = entry["probability"].as_f64().unwrap();
            assert!(
                (p - expected[k]).abs() < 1e-3,
                "class {k}: {p} vs {}",
                expected[k]
            );
        }
        let t = &job["timings"];
        for stage in [
            "queue_ms",
            "decode_ms",
            "preprocess_ms",
            "inference_ms",
            "total_ms",
        ] {
            assert!(
                t[stage].as_f64().is_some_and(|v| v >= 0.0),
                "{stage} missing: {job}"
            );
        }
        assert!(t["total_ms"].as_f64().unwrap() >= t["inference_ms"].as_f64().unwrap());
    }
    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused_or_fail_cleanly_and_the_worker_keeps_serving() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let api = start_api(
        &ns,
        &test_models(),
        "tiny-mean",
        &["--max-body-bytes", "1000000"],
    )
    .await;
    let worker = start_worker(&ns, &test_models(), &["--threads", "1"]).await;
    let client = reqwest::Client::new();
    let base = api.url();

    // Refused at the door, with problem+json.
    let refused: [(&str, &str, Vec<u8>, u16, &str); 5] = [
        ("", "image/png", vec![], 400, "empty_body"),
        (
            "",
            "application/octet-stream",
            (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
            415,
            "unsupported_image_format",
        ),
        (
            "?model=no-such-model",
            "image/png",
            solid_png(4, 4, [1, 2, 3]),
            404,
            "model_not_found",
        ),
        (
            "",
            "image/png",
            vec![0u8; 2_000_000],
            413,
            "payload_too_large",
        ),
        (
            "",
            "image/png",
            {
                let mut v = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
                v.extend_from_slice(b"IHDR");
                v.extend_from_slice(&100_000u32.to_be_bytes());
                v.extend_from_slice(&100_000u32.to_be_bytes());
                v.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
                v
            },
            422,
            "too_many_pixels",
        ),
    ];
    for (query, ct, body, status, code) in refused {
        let resp = client
            .post(format!("{base}/v1/jobs{query}"))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{code}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let problem: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(problem["code"], code);
    }

    // A truncated JPEG passes the header check but cannot be decoded: the
    // job fails with a code, it is not retried, and the next job succeeds.
    let jpeg = image("photo-640x480.jpg");
    let truncated = jpeg[..jpeg.len() / 3].to_vec();
    let (status, body) = submit(&client, &base, "", "image/jpeg", truncated).await;
    assert_eq!(status, 202, "{body}");
    let bad = wait_terminal(
        &client,
        &base,
        body["id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(bad["status"], "failed", "{bad}");
    assert_eq!(bad["error"]["code"], "decode_failed", "{bad}");
    assert_eq!(bad["attempts"], 1);

    let (status, body) = submit(
        &client,
        &base,
        "",
        "image/png",
        solid_png(8, 8, [0, 0, 255]),
    )
    .await;
    assert_eq!(status, 202);
    let good = wait_terminal(
        &client,
        &base,
        body["id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(good["status"], "succeeded", "{good}");
    assert_eq!(good["result"]["top_k"][0]["label"], "blue");

    // Unknown job ids are 404 problems.
    let resp = client
        .get(format!("{base}/v1/jobs/{}", uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Readiness sees both backends.
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceled_jobs_are_not_run() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    // No worker yet: both jobs wait in RabbitMQ; one is canceled there.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, body) = submit(
            &client,
            &base,
            "",
            "image/png",
            solid_png(8, 8, [0, 255, 0]),
        )
        .await;
        assert_eq!(status, 202);
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let resp = client
        .post(format!("{base}/v1/jobs/{}/cancel", ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let worker = start_worker(&ns, &test_models(), &["--threads", "1"]).await;
    let done = wait_terminal(&client, &base, &ids[1], Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // The worker dequeued the canceled one after it (FIFO) and skipped it.
    let canceled = wait_terminal(&client, &base, &ids[0], Duration::from_secs(5)).await;
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(
        canceled["attempts"], 0,
        "a canceled job must not run: {canceled}"
    );
    assert!(canceled.get("result").is_none());
    // Finished jobs cannot be canceled.
    let resp = client
        .post(format!("{base}/v1/jobs/{}/cancel", ids[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}
