//! Execution providers on the real ONNX Runtime library: a model asking for
//! a provider the loaded library lacks (the CPU wheel has no CUDA) fails to
//! load with an error naming the provider and the ones the library has;
//! the CPU provider, the worker's default list and an explicit fallback
//! load and run.

use std::path::{Path, PathBuf};

use inferq_backends::repository::{ModelEntry, ModelRepository};
use inferq_core::manifest::Provider;
use inferq_tests::{ort_library, test_models};
use inferq_worker::engine::{
    available_providers, load_session, load_session_with, ort_environment, provider_available,
};

/// The tiny-mean test model in a new repository, with `runtime` appended to
/// its manifest.
fn tiny_mean_with(runtime: &str) -> (PathBuf, ModelEntry) {
    let dir = std::env::temp_dir().join(format!(
        "inferq-providers-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let version = dir.join("tiny-mean/1");
    std::fs::create_dir_all(&version).unwrap();
    let src = test_models().join("tiny-mean");
    std::fs::copy(src.join("1/model.onnx"), version.join("model.onnx")).unwrap();
    std::fs::copy(src.join("labels.txt"), dir.join("tiny-mean/labels.txt")).unwrap();
    let manifest = std::fs::read_to_string(src.join("1/model.toml")).unwrap();
    std::fs::write(
        version.join("model.toml"),
        format!("{manifest}\n{runtime}\n"),
    )
    .unwrap();
    let scan = ModelRepository::scan(&dir).unwrap();
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let entry = (**scan.repository.get("tiny-mean", None).unwrap()).clone();
    (dir, entry)
}

/// Whether the test can run; under `make test` a missing runtime fails it.
fn runtime_present() -> bool {
    let ok = ort_library().is_file() && test_models().join("tiny-mean/1/model.onnx").is_file();
    if !ok {
        assert!(
            std::env::var("INFERQ_TEST_REQUIRE_MODELS").is_err(),
            "ONNX Runtime or tests/models missing: run `make assets`"
        );
        eprintln!("SKIPPED: ONNX Runtime or tests/models missing; run `make assets`");
    }
    ok
}

fn cleanup(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_cpu_wheel_has_the_cpu_provider_and_not_cuda() {
    if !runtime_present() {
        return;
    }
    ort_environment(Some(&ort_library())).expect("runtime loads");
    let available = available_providers();
    assert_eq!(available.first(), Some(&Provider::Cpu), "{available:?}");
    // The premise of the tests below: the pinned wheel is the CPU build.
    assert!(!provider_available(Provider::Cuda), "{available:?}");
    assert!(!provider_available(Provider::Tensorrt), "{available:?}");
}

#[test]
fn a_missing_provider_fails_the_load_naming_it_and_the_available_ones() {
    if !runtime_present() {
        return;
    }
    let env = ort_environment(Some(&ort_library())).expect("runtime loads");
    let (dir, entry) = tiny_mean_with("[runtime]\nproviders = [\"cuda\", \"cpu\"]");
    let Err(err) = load_session(&env, &entry) else {
        panic!("a CUDA model must not load on the CPU wheel");
    };
    for needle in [
        "`cuda`",
        "CUDAExecutionProvider",
        "it has: cpu",
        "[runtime] providers",
        "fallback = true",
    ] {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
    // The worker's default list does not override a manifest's own list.
    assert!(load_session_with(&env, &entry, &[Provider::Cpu]).is_err());
    cleanup(&dir);

    // Without [runtime], the worker's default decides, and says so.
    let (dir, entry) = tiny_mean_with("");
    let Err(err) = load_session_with(&env, &entry, &[Provider::Tensorrt]) else {
        panic!("a TensorRT default must not load on the CPU wheel");
    };
    assert!(err.contains("`tensorrt`"), "{err}");
    assert!(err.contains("INFERQ_PROVIDERS"), "{err}");
    cleanup(&dir);
}

#[test]
fn cpu_loads_and_runs_and_fallback_is_explicit() {
    if !runtime_present() {
        return;
    }
    let env = ort_environment(Some(&ort_library())).expect("runtime loads");
    let run = |entry: &ModelEntry, defaults: &[Provider]| {
        let mut session = load_session_with(&env, entry, defaults)
            .unwrap_or_else(|e| panic!("{}: {e}", entry.key()));
        inferq_worker::engine::warm_up(&mut session, entry).expect("runs");
    };
    let (dir, entry) = tiny_mean_with("[runtime]\nproviders = [\"cpu\"]");
    run(&entry, &[Provider::Cuda]);
    cleanup(&dir);
    let (dir, entry) = tiny_mean_with("");
    run(&entry, &[Provider::Cpu]);
    cleanup(&dir);
    // fallback = true: the missing provider is skipped and the CPU serves.
    let (dir, entry) = tiny_mean_with("[runtime]\nproviders = [\"cuda\"]\nfallback = true");
    run(&entry, &[Provider::Cpu]);
    cleanup(&dir);
    // cpu first would leave nothing for the providers after it.
    let (dir, entry) = tiny_mean_with("[runtime]\nproviders = [\"cpu\", \"openvino\"]");
    let Err(err) = load_session(&env, &entry) else {
        panic!("cpu must come last");
    };
    assert!(err.contains("list cpu last"), "{err}");
    cleanup(&dir);
}
