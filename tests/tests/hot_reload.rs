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
    let submitter = {
        let (client, base, png) = (client.clone(), base.clone(), png.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..60 {
                let (status, body) =
                    submit(&client, &base, "?model=hot", "image/png", png.clone()).await;
                assert_eq!(status, 202, "{body}");
                ids.push(body["id"].as_str().unwrap().to_owned());
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            ids
        })
    };
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
