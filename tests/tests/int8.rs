//! The int8 EfficientNet-Lite0 (models/efficientnet-lite0/2, built by
//! `make assets` with scripts/quantize_int8.py) served by the embedded
//! process on the real ONNX Runtime: it loads, answers jobs on the test
//! photos, and is the model's default exactly when its manifest does not
//! opt out (`default = false`, written by the build when the int8 version
//! did not earn it).
//!
//! Where the float model's answer is clear (its top-1 leads the runner-up
//! by at least 0.1 in probability: coffee, the JPEG photo, two people) the
//! int8 top-1 must be the same class. Where it is a near tie (chelsea.png:
//! tiger cat and Egyptian cat both 0.385 in float; astronaut.png: 0.129 vs
//! 0.123, which int8 answers with the runner-up) int8 rounding may swap
//! them, so its top-1 must be one of the float top-2.

use std::path::PathBuf;

use inferq_tests::*;

const PHOTOS: [(&str, &str); 5] = [
    ("chelsea.png", "image/png"),
    ("coffee.png", "image/png"),
    ("astronaut.png", "image/png"),
    ("photo-640x480.jpg", "image/jpeg"),
    ("two-people.jpg", "image/jpeg"),
];

/// A clear answer: the top-1 leads the runner-up by this much probability.
const CLEAR_MARGIN: f64 = 0.1;

/// (class index, probability) of the first `n` classes of a finished job.
fn classes(job: &serde_json::Value, n: usize) -> Vec<(u64, f64)> {
    job["result"]["top_k"]
        .as_array()
        .unwrap_or_else(|| panic!("no top_k: {job}"))
        .iter()
        .take(n)
        .map(|c| {
            (
                c["index"].as_u64().unwrap(),
                c["probability"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// A repository with only efficientnet-lite0 versions 1 and 2 (the embedded
/// server then loads two models, not every default one).
fn float_and_int8() -> PathBuf {
    let repo = std::env::temp_dir().join(format!("inferq-int8-{}", uuid::Uuid::new_v4().simple()));
    let src = real_models().join("efficientnet-lite0");
    let dst = repo.join("efficientnet-lite0");
    for v in ["1", "2"] {
        std::fs::create_dir_all(dst.join(v)).unwrap();
        for f in ["model.onnx", "model.toml"] {
            std::fs::copy(src.join(v).join(f), dst.join(v).join(f)).unwrap();
        }
    }
    std::fs::copy(src.join("labels.txt"), dst.join("labels.txt")).unwrap();
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int8_version_serves_the_float_top1_on_the_test_photos() {
    if !real_model_ready("efficientnet-lite0", "assets") {
        return;
    }
    let int8 = real_models().join("efficientnet-lite0/2/model.toml");
    if !int8.is_file() {
        assert!(
            std::env::var("INFERQ_TEST_REQUIRE_MODELS").is_err(),
            "models/efficientnet-lite0/2 missing: run `make assets`"
        );
        eprintln!("SKIPPED: int8 version not built; run `make assets`");
        return;
    }
    let repo = float_and_int8();
    let server = start_embedded(&repo, "efficientnet-lite0", &["--threads", "1"]).await;
    let client = reqwest::Client::new();
    let base = server.url();

    let mut clear = 0;
    for (file, ct) in PHOTOS {
        let mut jobs = Vec::new();
        for version in [1, 2] {
            let (status, body) = submit(
                &client,
                &base,
                &format!("?version={version}"),
                ct,
                image(file),
            )
            .await;
            assert_eq!(status, 202, "{file} v{version}: {body}");
            let job = wait_terminal(
                &client,
                &base,
                body["id"].as_str().unwrap(),
                std::time::Duration::from_secs(60),
            )
            .await;
            assert_eq!(job["status"], "succeeded", "{file} v{version}: {job}");
            assert_eq!(job["version"], version, "{job}");
            jobs.push(job);
        }
        let (float, int8) = (classes(&jobs[0], 2), classes(&jobs[1], 1));
        let why = format!("{file}: float top-2 {float:?}, int8 top-1 {int8:?}");
        eprintln!("{why}");
        if float[0].1 - float[1].1 >= CLEAR_MARGIN {
            clear += 1;
            assert_eq!(int8[0].0, float[0].0, "{why}");
        } else {
            assert!(float.iter().any(|c| c.0 == int8[0].0), "{why}");
        }
    }
    // coffee.png, photo-640x480.jpg, two-people.jpg: the premise of the test.
    assert!(
        clear >= 3,
        "only {clear} test photos have a clear float answer"
    );

    // The default version follows the int8 manifest's own verdict.
    let manifest = std::fs::read_to_string(&int8).unwrap();
    let opted_out = manifest.lines().any(|l| l.trim() == "default = false");
    let model: serde_json::Value = client
        .get(format!("{base}/v1/models/efficientnet-lite0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expected = if opted_out { 1 } else { 2 };
    assert_eq!(model["default_version"], expected, "{model}");
    let job = run_job(&client, &base, "", image("chelsea.png")).await;
    assert_eq!(job["version"], expected, "{job}");

    server.stop().await;
    let _ = std::fs::remove_dir_all(repo);
}
