//! The `inferq` command-line client against a real (embedded) server:
//! `submit --wait`, `get`, and `batch` with its summary and exit status.

use std::process::Command;

use inferq_tests::*;
use serde_json::Value;

fn inferq(base: &str, args: &[&str]) -> (i32, Vec<Value>, String) {
    let out = Command::new(binary("inferq"))
        .args(args)
        .env("INFERQ_URL", base)
        .output()
        .expect("run inferq");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let docs = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        docs,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submit_get_and_batch_from_the_command_line() {
    let root = std::env::temp_dir().join(format!("inferq-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(root.join("in/x")).unwrap();
    let root = root.canonicalize().unwrap();
    std::fs::write(root.join("in/x/red.png"), solid_png(16, 16, [255, 0, 0])).unwrap();
    std::fs::write(root.join("in/blue.png"), solid_png(16, 16, [0, 0, 255])).unwrap();
    let root_s = root.display().to_string();
    let repo = private_repository("tiny-mean", "cli");
    let server = start_embedded(
        &repo,
        "tiny-mean",
        &["--threads", "1", "--fetch-local-root", &root_s],
    )
    .await;
    let base = server.url();
    let red = root.join("in/x/red.png").display().to_string();
    let blue_uri = format!("file://{root_s}/in/blue.png");

    // The CLI blocks; run it off the runtime that serves the API.
    let b = base.clone();
    let (code, jobs, err) = tokio::task::spawn_blocking(move || {
        inferq(&b, &["submit", "--wait", "--top-k", "2", &red, &blue_uri])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(jobs.len(), 2);
    for j in &jobs {
        assert_eq!(j["status"], "succeeded", "{j}");
        assert_eq!(j["result"]["top_k"].as_array().unwrap().len(), 2);
    }
    assert_eq!(jobs[1]["input"]["encoding"], "uri");

    let id = jobs[0]["id"].as_str().unwrap().to_owned();
    let b = base.clone();
    let (code, got, _) = tokio::task::spawn_blocking(move || inferq(&b, &["get", &id]))
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(got[0]["id"], jobs[0]["id"]);

    let b = base.clone();
    let (prefix, output) = (
        format!("file://{root_s}/in/"),
        format!("file://{root_s}/out/"),
    );
    let (code, docs, summary) = tokio::task::spawn_blocking(move || {
        inferq(&b, &["batch", "--prefix", &prefix, "--output", &output])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{summary}");
    assert_eq!(docs[0]["state"], "succeeded");
    assert!(summary.contains("2 succeeded, 0 failed of 2"), "{summary}");
    assert!(
        summary.contains("prediction.results-00000-of-00001"),
        "{summary}"
    );
    assert!(root.join("out/x/red.png.json").is_file());

    // A corrupt image makes the batch's exit status 1; a refused request is 2.
    std::fs::write(root.join("in/bad.png"), b"not an image").unwrap();
    let b = base.clone();
    let (prefix, output) = (
        format!("file://{root_s}/in/"),
        format!("file://{root_s}/out2/"),
    );
    let (code, _, summary) = tokio::task::spawn_blocking(move || {
        inferq(&b, &["batch", "--prefix", &prefix, "--output", &output])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{summary}");
    assert!(summary.contains("2 succeeded, 1 failed of 3"), "{summary}");
    let b = base.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        inferq(
            &b,
            &[
                "batch",
                "--prefix",
                "file:///etc/",
                "--output",
                "file:///tmp/o/",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 2);
    assert!(err.contains("403"), "{err}");

    server.stop().await;
    let _ = std::fs::remove_dir_all(&root);
}
