//! The Python client (`clients/python`) against real embedded servers: its
//! pytest suite (unit tests, then integration tests with EfficientNet-Lite0,
//! an image model, a `file://` batch, API keys and a 429) and
//! `mypy --strict` over its sources and tests.
//!
//! Needs `.cache/pyclient-venv` (`make pyclient-venv`, which `make test`
//! runs). Without it the test is skipped with a message, unless
//! `INFERQ_TEST_REQUIRE_SERVICES=1` (set by `make test`), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use inferq_tests::*;

/// A 32-hex-digit API key for the limited server (keys need 16+ characters).
const KEY: &str = "5f0c2d4e8a7b6c1d9e3f2a4b6c8d0e1f";

/// The client venv's Python, or `None` (skip) when it is not installed.
fn venv_python() -> Option<PathBuf> {
    let py = root().join(".cache/pyclient-venv/bin/python");
    if py.is_file() {
        return Some(py);
    }
    let msg = "the Python client venv .cache/pyclient-venv is missing; run `make pyclient-venv`";
    if std::env::var("INFERQ_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// A model repository of symlinks: the real default model and two test models.
fn model_dir(tmp: &Path) -> PathBuf {
    let dir = tmp.join("models");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(
        real_models().join("efficientnet-lite0"),
        dir.join("efficientnet-lite0"),
    )
    .unwrap();
    for m in ["tiny-invert", "tiny-slow"] {
        std::os::unix::fs::symlink(test_models().join(m), dir.join(m)).unwrap();
    }
    dir
}

/// Runs a command to completion off the async runtime (the servers live on
/// it), printing its output; returns whether it succeeded.
async fn run(what: &str, mut cmd: Command) -> bool {
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    println!(
        "== {what} ({:.1} s, {})\n{}{}",
        started.elapsed().as_secs_f64(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_client_tests_and_types_pass() {
    if !real_model_ready("efficientnet-lite0", "models") {
        return;
    }
    let Some(python) = venv_python() else {
        return;
    };
    let tmp =
        std::env::temp_dir().join(format!("inferq-pyclient-{}", uuid::Uuid::new_v4().simple()));
    let files = tmp.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let models = model_dir(&tmp);
    let files_arg = files.display().to_string();

    let server = start_embedded(
        &models,
        "efficientnet-lite0",
        &[
            "--threads",
            "2",
            "--pin-threads",
            "false",
            "--fetch-local-root",
            &files_arg,
        ],
    )
    .await;
    let api_keys = format!("py:submit+read:{KEY}");
    let limited = start_embedded(
        &models,
        "tiny-slow",
        &[
            "--threads",
            "1",
            "--pin-threads",
            "false",
            "--max-backlog",
            "1",
            "--auth",
            "true",
            "--api-keys",
            &api_keys,
        ],
    )
    .await;

    let client_dir = root().join("clients/python");
    let mut pytest = Command::new(&python);
    pytest
        .args([
            "-m",
            "pytest",
            "clients/python/tests",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(root())
        .env("INFERQ_TEST_URL", server.url())
        .env("INFERQ_TEST_FILE_ROOT", &files)
        .env("INFERQ_TEST_LIMITED_URL", limited.url())
        .env("INFERQ_TEST_API_KEY", KEY)
        .env_remove("INFERQ_URL")
        .env_remove("INFERQ_API_KEY");
    let tests_ok = run("pytest clients/python/tests", pytest).await;

    let mut mypy = Command::new(&python);
    mypy.args([
        "-m",
        "mypy",
        "--strict",
        "--cache-dir",
        "/dev/null",
        "src",
        "tests",
    ])
    .current_dir(&client_dir);
    let types_ok = run("mypy --strict clients/python/{src,tests}", mypy).await;

    server.stop().await;
    limited.stop().await;
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(tests_ok, "the Python client's tests failed (output above)");
    assert!(types_ok, "mypy --strict found errors (output above)");
}
