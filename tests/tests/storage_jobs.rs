//! Jobs whose input is a storage reference and whose result is written back
//! to storage, end to end through RabbitMQ and Redis, against the real GCS
//! and S3 emulators; and the SSRF / path-escape refusals at submission.

use std::time::Duration;

use inferq_tests::emulators::{Emulator, Kind, emulators_available};
use inferq_tests::*;
use serde_json::json;

async fn bucket_round_trip(kind: Kind) {
    if !services_available() || !emulators_available() {
        return;
    }
    let emu = Emulator::start(kind).await;
    emu.create_bucket("photos").await;
    emu.create_bucket("results").await;
    emu.upload("photos", "cats/red.png", solid_png(30, 20, [255, 0, 0]))
        .await;
    let (scheme, flag) = match kind {
        Kind::Gcs => ("gs", "--gcs-endpoint"),
        Kind::S3 => ("s3", "--s3-endpoint"),
    };
    // A private repository (models get registered into it below).
    let repo = private_repository("tiny-mean", "st");
    let ns = Namespace::new();
    let storage = [
        flag,
        emu.endpoint.as_str(),
        "--fetch-allow-buckets",
        "photos,results",
    ];
    let mut api_flags = vec!["--allow-model-upload", "true"];
    api_flags.extend(storage);
    let api = start_api(&ns, &repo, "tiny-mean", &api_flags).await;
    let mut worker_flags = vec!["--threads", "1"];
    worker_flags.extend(storage);
    let worker = start_worker(&ns, &repo, &worker_flags).await;
    let client = reqwest::Client::new();
    let base = api.url();

    let (status, body) = submit_json(
        &client,
        &base,
        json!({
            "input": {"uri": format!("{scheme}://photos/cats/red.png")},
            "output": {"uri": format!("{scheme}://results/cats/")},
        }),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let job = wait_terminal(&client, &base, &id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["top_k"][0]["label"], "red");
    assert!(job["timings"]["fetch_ms"].as_f64().unwrap() > 0.0);
    let written = format!("{scheme}://results/cats/{id}.json");
    assert_eq!(job["output"]["uris"], json!([written]), "{job}");
    let (_, bytes) = emu.download("results", &format!("cats/{id}.json")).await;
    let stored: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(stored["result"], job["result"]);

    // A missing object fails the job with a code, and the worker goes on.
    let (_, body) = submit_json(
        &client,
        &base,
        json!({"input": {"uri": format!("{scheme}://photos/cats/none.png")}}),
    )
    .await;
    let missing = wait_terminal(
        &client,
        &base,
        body["id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(missing["status"], "failed");
    assert_eq!(missing["error"]["code"], "input_not_found", "{missing}");

    // A model registered from the bucket by reference is served.
    let model_dir = test_models().join("tiny-embed/1");
    emu.upload(
        "photos",
        "models/embed/model.onnx",
        std::fs::read(model_dir.join("model.onnx")).unwrap(),
    )
    .await;
    emu.upload(
        "photos",
        "models/embed/model.toml",
        std::fs::read(model_dir.join("model.toml")).unwrap(),
    )
    .await;
    let resp = client
        .put(format!("{base}/v1/models/from-bucket/versions/1"))
        .json(&json!({
            "model": format!("{scheme}://photos/models/embed/model.onnx"),
            "manifest": format!("{scheme}://photos/models/embed/model.toml"),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let embedded = run_job(
        &client,
        &base,
        "?model=from-bucket",
        solid_png(4, 4, [255, 0, 0]),
    )
    .await;
    assert_eq!(embedded["result"]["kind"], "embedding", "{embedded}");

    // A bucket outside the allow-list is refused at the door.
    let (status, body) = submit_json(
        &client,
        &base,
        json!({"input": {"uri": format!("{scheme}://secrets/key.png")}}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "uri_forbidden");

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(repo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_input_and_output() {
    bucket_round_trip(Kind::Gcs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_input_and_output() {
    bucket_round_trip(Kind::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_and_path_escapes_are_refused() {
    if !services_available() {
        return;
    }
    let root = std::env::temp_dir().join(format!("inferq-root-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(root.join("in")).unwrap();
    std::fs::write(root.join("in/blue.png"), solid_png(10, 10, [0, 0, 255])).unwrap();
    let root_s = root.display().to_string();
    let ns = Namespace::new();
    let flags = ["--fetch-local-root", root_s.as_str()];
    let api = start_api(&ns, &test_models(), "tiny-mean", &flags).await;
    let mut worker_flags = vec!["--threads", "1"];
    worker_flags.extend(flags);
    let worker = start_worker(&ns, &test_models(), &worker_flags).await;
    let client = reqwest::Client::new();
    let base = api.url();

    // Inside the root: served, and the result written next to it.
    let (status, body) = submit_json(
        &client,
        &base,
        json!({"input": {"uri": format!("file://{root_s}/in/blue.png")}, "output": {"uri": format!("file://{root_s}/out/blue.json")}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let job = wait_terminal(
        &client,
        &base,
        body["id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(job["result"]["top_k"][0]["label"], "blue", "{job}");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("out/blue.json")).unwrap()).unwrap();
    assert_eq!(written["result"], job["result"]);

    let refused = [
        format!("file://{root_s}/../etc/passwd"),
        "file:///etc/passwd".to_string(),
        "http://127.0.0.1:6379/".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/x.png".to_string(),
        "http://[::1]/x.png".to_string(),
        "http://localhost:6379/x.png".to_string(),
    ];
    for uri in refused {
        let (status, body) = submit_json(&client, &base, json!({"input": {"uri": uri}})).await;
        assert_eq!(status, 403, "{uri}: {body}");
        assert_eq!(body["code"], "uri_forbidden", "{uri}");
    }
    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_read_and_write_only_their_own_prefixes() {
    if !services_available() {
        return;
    }
    let root = std::env::temp_dir().join(format!("inferq-fence-{}", uuid::Uuid::new_v4().simple()));
    for t in ["acme", "globex"] {
        std::fs::create_dir_all(root.join(t).join("in")).unwrap();
        std::fs::write(
            root.join(t).join("in/blue.png"),
            solid_png(10, 10, [0, 0, 255]),
        )
        .unwrap();
    }
    let root_s = root.display().to_string();
    let file = |rel: &str| format!("file://{root_s}/{rel}");
    const ACME: &str = "acme-fence-0123456789abcdef";
    const GLOBEX: &str = "globex-fence-0123456789abcdef";
    let keys = format!(
        "acme:submit+read:{ACME} in={} out={},globex:submit+read:{GLOBEX} in={} out={}",
        file("acme/in/"),
        file("acme/out/"),
        file("globex/in/"),
        file("globex/out/")
    );
    let ns = Namespace::new();
    let api_flags = [
        "--fetch-local-root",
        root_s.as_str(),
        "--auth",
        "true",
        "--api-keys",
        keys.as_str(),
    ];
    let api = start_api(&ns, &test_models(), "tiny-mean", &api_flags).await;
    let worker_flags = ["--threads", "1", "--fetch-local-root", root_s.as_str()];
    let worker = start_worker(&ns, &test_models(), &worker_flags).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let submit = |key: &'static str, body: serde_json::Value| {
        client
            .post(format!("{base}/v1/jobs"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };

    // Own prefixes: read, run, written.
    let resp = submit(
        ACME,
        json!({"input": {"uri": file("acme/in/blue.png")}, "output": {"uri": file("acme/out/blue.json")}}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    let mut job = serde_json::Value::Null;
    for _ in 0..300 {
        job = client
            .get(format!("{base}/v1/jobs/{id}?wait=1"))
            .bearer_auth(ACME)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["status"] != "queued" && job["status"] != "running" {
            break;
        }
    }
    assert_eq!(job["result"]["top_k"][0]["label"], "blue", "{job}");
    assert!(root.join("acme/out/blue.json").exists());

    // Another tenant's input, or writing into another tenant's output: 403.
    for (body, reference) in [
        (
            json!({"input": {"uri": file("globex/in/blue.png")}}),
            file("globex/in/blue.png"),
        ),
        (
            json!({"input": {"uri": file("acme/in/blue.png")}, "output": {"uri": file("globex/out/x.json")}}),
            file("globex/out/x.json"),
        ),
    ] {
        let resp = submit(ACME, body).await.unwrap();
        assert_eq!(resp.status(), 403);
        let problem: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(problem["code"], "uri_forbidden", "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(&reference),
            "{problem}"
        );
    }
    assert!(!root.join("globex/out/x.json").exists());
    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(root);
}
