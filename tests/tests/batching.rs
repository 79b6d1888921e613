//! Dynamic batching on the real ONNX Runtime: jobs waiting for the same
//! model run as one batch, each job gets its own answer (the batch is split
//! in the right order), a bad image fails only its own job, and a model
//! whose batch axis is fixed cannot declare batching.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use inferq_backends::repository::{ModelEntry, ModelRepository};
use inferq_core::ErrorCode;
use inferq_core::job::JobId;
use inferq_tests::{ort_library, root, solid_png, test_models};
use inferq_vision::postprocess::Prediction;
use inferq_worker::engine::{Engine, EngineConfig, EngineError, InferError, Outcome, WorkInput};

/// A one-model repository: `model.onnx` from `onnx`, tiny-mean's manifest
/// and labels, plus `batching` appended to the manifest.
fn repository(onnx: &Path, batching: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("inferq-batching-{}", uuid::Uuid::new_v4().simple()));
    let version = dir.join("tiny-mean/1");
    std::fs::create_dir_all(&version).unwrap();
    std::fs::copy(onnx, version.join("model.onnx")).unwrap();
    std::fs::copy(
        test_models().join("tiny-mean/labels.txt"),
        dir.join("tiny-mean/labels.txt"),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(test_models().join("tiny-mean/1/model.toml")).unwrap();
    std::fs::write(
        version.join("model.toml"),
        format!("{manifest}\n{batching}\n"),
    )
    .unwrap();
    dir
}

fn engine(dir: &Path) -> Result<Engine, EngineError> {
    let scan = ModelRepository::scan(dir).unwrap();
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let config = EngineConfig {
        threads: 1,
        cores: Vec::new(),
        pin: false,
        ort_library: Some(ort_library()),
        max_pixels: 10_000_000,
        decode_budget_bytes: 256 << 20,
        providers: vec![inferq_core::manifest::Provider::Cpu],
    };
    Engine::start(&config, &scan.repository)
}

/// The repository's tiny-mean entry, as the engine was given it.
fn tiny_mean(dir: &Path) -> Arc<ModelEntry> {
    ModelRepository::scan(dir)
        .unwrap()
        .repository
        .get("tiny-mean", None)
        .unwrap()
        .clone()
}

fn top1(outcome: &Outcome) -> &str {
    match &outcome.prediction {
        Prediction::Classification { top_k, .. } => &top_k[0].label,
        other => panic!("a classification expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_jobs_run_as_one_batch_and_each_gets_its_own_answer() {
    if !ort_library().is_file() {
        eprintln!("skipped: ONNX Runtime not installed (make assets)");
        return;
    }
    // A long max_delay makes the grouping deterministic: the first job waits
    // for the others, which are all submitted at once.
    let dir = repository(
        &test_models().join("tiny-mean/1/model.onnx"),
        "[batching]\nmax_batch = 4\nmax_delay_ms = 500",
    );
    let engine = Arc::new(engine(&dir).expect("engine starts"));
    let entry = tiny_mean(&dir);
    // Each colour has its own top-1 class (scripts/make_test_models.py).
    let cases: Vec<(Option<&str>, Vec<u8>)> = vec![
        (Some("red"), solid_png(32, 24, [255, 0, 0])),
        (None, b"\x89PNG\r\n\x1a\n not really a png".to_vec()),
        (Some("yellow"), solid_png(16, 16, [255, 255, 0])),
        (Some("white"), solid_png(20, 10, [255, 255, 255])),
        (Some("black"), solid_png(8, 8, [0, 0, 0])),
    ];
    let calls = cases.into_iter().map(|(want, bytes)| {
        let engine = engine.clone();
        let entry = entry.clone();
        async move {
            let got = engine
                .infer(
                    JobId::new(),
                    entry,
                    WorkInput::Encoded(Bytes::from(bytes)),
                    None,
                )
                .await;
            (want, got)
        }
    });
    let results = futures_join_all(calls).await;

    let mut sizes = Vec::new();
    for (want, got) in results {
        match (want, got) {
            (Some(label), Ok(outcome)) => {
                assert_eq!(
                    top1(&outcome),
                    label,
                    "each job gets its own row of the batch"
                );
                sizes.push(outcome.batch_size);
            }
            (None, Err(InferError::Job(e))) => assert_eq!(e.code, ErrorCode::DecodeFailed),
            (want, got) => panic!("{want:?}: unexpected {got:?}"),
        }
    }
    // Five jobs, one undecodable, max_batch 4: the first batch is four jobs
    // (three images once the corrupt one drops out), then the rest.
    assert_eq!(sizes.len(), 4);
    assert!(
        sizes.iter().any(|n| *n >= 2),
        "no job ran in a batch: {sizes:?}"
    );
    assert!(sizes.iter().all(|n| *n <= 4), "{sizes:?}");
    engine.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_job_does_not_wait_with_the_default_delay() {
    if !ort_library().is_file() {
        eprintln!("skipped: ONNX Runtime not installed (make assets)");
        return;
    }
    let dir = repository(
        &test_models().join("tiny-mean/1/model.onnx"),
        "[batching]\nmax_batch = 8",
    );
    let engine = engine(&dir).expect("engine starts");
    let entry = tiny_mean(&dir);
    let png = Bytes::from(solid_png(16, 16, [0, 0, 255]));
    let outcome = engine
        .infer(JobId::new(), entry, WorkInput::Encoded(png), None)
        .await
        .expect("job runs");
    assert_eq!(top1(&outcome), "blue");
    assert_eq!(outcome.batch_size, 1, "nothing else was waiting");
    engine.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_fixed_batch_axis_cannot_declare_batching() {
    let fixed = root().join("tests/fixtures/fixed-batch.onnx");
    if !ort_library().is_file() || !fixed.is_file() {
        eprintln!("skipped: run `make assets` (ONNX Runtime, tests/fixtures/fixed-batch.onnx)");
        return;
    }
    let dir = repository(&fixed, "[batching]\nmax_batch = 4");
    match engine(&dir) {
        Err(EngineError::NoModels(_)) => {}
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a model with a fixed batch axis was loaded with batching"),
    }
    // Without [batching] the same model serves.
    let plain = repository(&fixed, "");
    let engine = engine(&plain).expect("loads without batching");
    assert_eq!(engine.loaded_models(), vec!["tiny-mean:1".to_string()]);
    engine.shutdown();
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(plain);
}

/// Runs the futures concurrently (as spawned tasks) and collects their
/// results in order.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
