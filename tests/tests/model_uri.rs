//! `model_uri`: jobs and batches naming their model by storage reference
//! (`file://` here, under the fetcher's local root), installed once under a
//! content-addressed name and reused; refusals for prefixes outside the
//! allow-list, TensorFlow folders, and servers that have it off.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use inferq_tests::*;
use serde_json::{Value, json};

/// A model folder as a user would upload it: model.onnx, model.toml and
/// the labels file beside them.
fn publish_detector(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let src = test_models().join("tiny-detect");
    std::fs::copy(src.join("1/model.onnx"), dir.join("model.onnx")).unwrap();
    std::fs::copy(src.join("1/model.toml"), dir.join("model.toml")).unwrap();
    std::fs::copy(src.join("labels.txt"), dir.join("labels.txt")).unwrap();
}

async fn post_job(client: &reqwest::Client, base: &str, body: Value) -> (u16, Value) {
    let resp = client
        .post(format!("{base}/v1/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

fn imported(model_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(model_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("uri-"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_batches_name_their_model_by_reference() {
    if !ort_library().is_file() {
        return;
    }
    let root = tempfile_dir("model-uri-root");
    let models = tempfile_dir("model-uri-repo");
    std::os::unix::fs::symlink(
        test_models().join("tiny-invert"),
        models.join("tiny-invert"),
    )
    .unwrap();
    let allowed = root.join("allowed");
    publish_detector(&allowed.join("detector"));
    publish_detector(&root.join("elsewhere/detector"));
    let tf = allowed.join("tf-net");
    std::fs::create_dir_all(&tf).unwrap();
    std::fs::write(tf.join("saved_model.pb"), b"\x08\x01").unwrap();

    let allow = format!("file://{}/", allowed.display());
    let server = start_embedded(
        &models,
        "tiny-invert",
        &[
            "--fetch-local-root",
            root.to_str().unwrap(),
            "--model-uri-allow",
            &allow,
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let base = server.url();
    let b64 = base64::engine::general_purpose::STANDARD.encode(solid_png(100, 100, [9, 9, 9]));
    let uri = format!("{allow}detector/");
    let job = |uri: &str| json!({"model_uri": uri, "input": {"b64": b64}});

    let (status, first) = post_job(&client, &base, job(&uri)).await;
    assert_eq!(status, 202, "{first}");
    let name = first["model"].as_str().unwrap().to_owned();
    assert!(name.starts_with("uri-"), "{first}");
    assert_eq!(first["version"], 1);
    let done = wait_terminal(
        &client,
        &base,
        first["id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let labels: Vec<&str> = done["result"]["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["dog", "cat"],
        "the labels beside the manifest are installed"
    );

    // The same objects: the same model, installed once.
    let (status, again) = post_job(&client, &base, job(&uri)).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["model"], name.as_str());
    assert_eq!(imported(&models), std::slice::from_ref(&name));
    // The .onnx file itself names the same objects.
    let (_, by_file) = post_job(&client, &base, job(&format!("{uri}model.onnx"))).await;
    assert_eq!(by_file["model"], name.as_str(), "{by_file}");

    // A batch resolves it once for all its instances.
    let batch = json!({"model_uri": uri,
        "input": {"jsonl": format!("file://{}", write_jsonl(&root, &b64).display())},
        "output": {"prefix": format!("file://{}/out/", root.display())}});
    let resp = client
        .post(format!("{base}/v1/batches"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let record: Value = resp.json().await.unwrap();
    assert_eq!(record["model"], name.as_str(), "{record}");

    // A replaced manifest is a new model; the old one stays for its jobs.
    let manifest = allowed.join("detector/model.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text}\n# republished\n")).unwrap();
    let (status, changed) = post_job(&client, &base, job(&uri)).await;
    assert_eq!(status, 202, "{changed}");
    assert_ne!(changed["model"], name.as_str());
    assert_eq!(imported(&models).len(), 2);

    // Refusals: outside the allow-list, both names, a TensorFlow folder, a
    // folder without a model.
    let outside = format!("file://{}/elsewhere/detector/", root.display());
    let (status, body) = post_job(&client, &base, job(&outside)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("--model-uri-allow"),
        "{body}"
    );
    let (status, body) = post_job(
        &client,
        &base,
        json!({"model": "tiny-invert", "model_uri": uri, "input": {"b64": b64}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post_job(&client, &base, job(&format!("{allow}tf-net/"))).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("inferq models import"),
        "{body}"
    );
    let (status, body) = post_job(&client, &base, job(&format!("{allow}missing/"))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(imported(&models).len(), 2, "nothing half-installed");
    server.stop().await;

    // Off unless an administrator lists prefixes.
    let plain = start_embedded(
        &models,
        "tiny-invert",
        &["--fetch-local-root", root.to_str().unwrap()],
    )
    .await;
    let (status, body) = post_job(&client, &plain.url(), job(&uri)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("disabled"),
        "{body}"
    );
    plain.stop().await;
}

fn write_jsonl(root: &Path, b64: &str) -> std::path::PathBuf {
    let path = root.join("instances.jsonl");
    std::fs::write(&path, format!("{}\n", json!({"b64": b64}))).unwrap();
    path
}

fn tempfile_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("inferq-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
