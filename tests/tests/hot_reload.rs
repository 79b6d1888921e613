//! Hot reload: a new model version dropped into the repository is served
//! without a restart, and no job fails while the sessions are swapped.

use std::path::Path;
use std::time::Duration;

use inferq_tests::*;

fn copy_version(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["model.onnx", "model.toml"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

/// Submits 60 jobs for `model`, one every 25 ms, in the background: the
/// load a model change must not disturb. Yields the job ids.
fn keep_submitting(
    client: &reqwest::Client,
    base: &str,
    model: &str,
    png: &[u8],
) -> tokio::task::JoinHandle<Vec<String>> {
    let (client, base, png) = (client.clone(), base.to_owned(), png.to_vec());
    let query = format!("?model={model}");
    tokio::spawn(async move {
        let mut ids = Vec::new();
        for _ in 0..60 {
            let (status, body) = submit(&client, &base, &query, "image/png", png.clone()).await;
            assert_eq!(status, 202, "{body}");
            ids.push(body["id"].as_str().unwrap().to_owned());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        ids
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_version_is_picked_up_without_failures() {
    if !services_available() {
        return;
    }
    // A private repository: "hot" starts as tiny-mean (classification) and
    // gains a version 2 that is tiny-embed (an embedding model).
    let repo = std::env::temp_dir().join(format!("inferq-hot-{}", uuid::Uuid::new_v4().simple()));
    let src = test_models();
    copy_version(&src.join("tiny-mean/1"), &repo.join("hot/1"));
    std::fs::copy(
        src.join("tiny-mean/labels.txt"),
        repo.join("hot/labels.txt"),
    )
    .unwrap();

    let ns = Namespace::new();
    let poll = ["--model-poll-secs", "0.2"];
    let api = start_api(&ns, &repo, "hot", &poll).await;
    let worker = start_worker(&ns, &repo, &["--threads", "2", "--model-poll-secs", "0.2"]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let png = solid_png(16, 16, [255, 0, 0]);

    // Keep submitting while the new version appears.
    let submitter = keep_submitting(&client, &base, "hot", &png);
    tokio::time::sleep(Duration::from_millis(300)).await;
    copy_version(&src.join("tiny-embed/1"), &repo.join("hot/2"));
    let ids = submitter.await.unwrap();

    let mut versions = std::collections::BTreeMap::new();
    for id in &ids {
        let job = wait_terminal(&client, &base, id, Duration::from_secs(30)).await;
        assert_eq!(
            job["status"], "succeeded",
            "a job failed during the swap: {job}"
        );
        let v = job["version"].as_u64().unwrap();
        let kind = job["result"]["kind"].as_str().unwrap().to_owned();
        assert_eq!(
            kind,
            if v == 1 {
                "classification"
            } else {
                "embedding"
            },
            "{job}"
        );
        *versions.entry(v).or_insert(0) += 1;
    }
    assert!(
        versions.contains_key(&1) && versions.contains_key(&2),
        "both versions should have served: {versions:?}"
    );

    // The listing shows both versions; the default is the newest.
    let listing: serde_json::Value = client
        .get(format!("{base}/v1/models/hot"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["default_version"], 2, "{listing}");
    // The old version can still be asked for by number.
    let (status, body) = submit(&client, &base, "?model=hot&version=1", "image/png", png).await;
    assert_eq!(status, 202);
    let old = wait_terminal(
        &client,
        &base,
        body["id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(old["result"]["kind"], "classification");

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(repo);
}

/// What the console's "Add a model" panel does to a model in use: a new
/// version registered through `PUT /v1/models/{name}/versions/{v}` while
/// jobs keep coming. None fails, both versions serve, and the old one can
/// still be named. (Versions are immutable, so "replacing" a version is
/// registering the next one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_registered_over_http_under_load_drops_no_job() {
    if !services_available() {
        return;
    }
    let repo =
        std::env::temp_dir().join(format!("inferq-put-load-{}", uuid::Uuid::new_v4().simple()));
    let src = test_models();
    copy_version(&src.join("tiny-invert/1"), &repo.join("busy/1"));
    let ns = Namespace::new();
    // Polling off everywhere: the API learns of the version from the upload,
    // the worker from the first job that names it.
    let api = start_api(
        &ns,
        &repo,
        "busy",
        &["--allow-model-upload", "true", "--model-poll-secs", "0"],
    )
    .await;
    let worker = start_worker(&ns, &repo, &["--threads", "2", "--model-poll-secs", "0"]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let png = solid_png(16, 16, [200, 100, 50]);

    let submitter = keep_submitting(&client, &base, "busy", &png);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = client
        .put(format!("{base}/v1/models/busy/versions/2"))
        .multipart(upload_form(&src.join("tiny-embed/1"), None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let ids = submitter.await.unwrap();

    let mut versions = std::collections::BTreeMap::new();
    for id in &ids {
        let job = wait_terminal(&client, &base, id, Duration::from_secs(30)).await;
        assert_eq!(
            job["status"], "succeeded",
            "a job failed during the upload: {job}"
        );
        let v = job["version"].as_u64().unwrap();
        let want = if v == 1 { "image" } else { "embedding" };
        assert_eq!(job["result"]["kind"], want, "{job}");
        *versions.entry(v).or_insert(0) += 1;
    }
    assert!(
        versions.contains_key(&1) && versions.contains_key(&2),
        "both versions should have served: {versions:?}"
    );
    let old = run_job(&client, &base, "?model=busy&version=1", png).await;
    assert_eq!(old["result"]["kind"], "image");

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(repo);
}

fn upload_form(model: &Path, labels_rel: Option<&str>) -> reqwest::multipart::Form {
    let mut manifest = std::fs::read_to_string(model.join("model.toml")).unwrap();
    if let Some(rel) = labels_rel {
        manifest = manifest.replace("[output]", &format!("[output]\nlabels = \"{rel}\""));
    }
    let mut form = reqwest::multipart::Form::new()
        .part(
            "model",
            reqwest::multipart::Part::bytes(std::fs::read(model.join("model.onnx")).unwrap()),
        )
        .text("manifest", manifest);
    if labels_rel.is_some() {
        form = form.text("labels", "a\nb\n");
    }
    form
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_registered_over_http_are_served() {
    if !services_available() {
        return;
    }
    let repo = std::env::temp_dir().join(format!("inferq-put-{}", uuid::Uuid::new_v4().simple()));
    copy_version(&test_models().join("tiny-embed/1"), &repo.join("base/1"));
    let ns = Namespace::new();
    // Polling off: the worker must find the new model on demand.
    let api = start_api(
        &ns,
        &repo,
        "base",
        &["--allow-model-upload", "true", "--model-poll-secs", "0"],
    )
    .await;
    let worker = start_worker(&ns, &repo, &["--threads", "1", "--model-poll-secs", "0"]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let put = |name: &str, v: u64| format!("{base}/v1/models/{name}/versions/{v}");

    let resp = client
        .put(put("uploaded", 1))
        .multipart(upload_form(&test_models().join("tiny-invert/1"), None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    assert!(repo.join("uploaded/1/model.onnx").is_file());

    let job = run_job(
        &client,
        &base,
        "?model=uploaded",
        solid_png(8, 8, [10, 20, 30]),
    )
    .await;
    assert_eq!(job["result"]["kind"], "image");

    // Versions are immutable.
    let again = client
        .put(put("uploaded", 1))
        .multipart(upload_form(&test_models().join("tiny-invert/1"), None))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let problem: serde_json::Value = again.json().await.unwrap();
    assert_eq!(problem["code"], "version_exists");
    // Labels may not escape the model's directory.
    let escape = client
        .put(put("uploaded", 2))
        .multipart(upload_form(
            &test_models().join("tiny-detect/1"),
            Some("../../../etc/x.txt"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(escape.status(), 400);
    assert!(!repo.join("uploaded/2").exists());
    // A broken manifest is refused before anything is written.
    let broken = reqwest::multipart::Form::new()
        .part("model", reqwest::multipart::Part::bytes(vec![0x08, 0x07]))
        .text("manifest", "kind = \"nonsense\"");
    let resp = client
        .put(put("broken", 1))
        .multipart(broken)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(!repo.join("broken").join("1").exists());

    worker.stop().await;
    api.stop().await;

    // Uploads are off by default.
    let api = start_api(&ns, &repo, "base", &[]).await;
    let resp = client
        .put(format!("{}/v1/models/other/versions/1", api.url()))
        .multipart(upload_form(&test_models().join("tiny-invert/1"), None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    api.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(repo);
}
