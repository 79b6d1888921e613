//! Schemathesis against the embedded server: the OpenAPI document is the
//! contract, and a property-based client holds the server to it.
//!
//! Schemathesis (PyPI, in `.cache/test-venv`) reads `/openapi.json` from a
//! running embedded server and sends every operation the examples, the
//! schema's boundary cases ("coverage") and random requests, valid and
//! invalid. The checks: no 5xx, every status is one the document lists for
//! that operation, the content type is the documented one, and the body
//! conforms to the documented schema. The seed is fixed so a failure
//! reproduces; the server runs the tiny test models from a private copy of
//! the repository, because the generated requests include model
//! registrations.

use std::process::Command;
use std::time::Instant;

use inferq_tests::*;

/// Every test model, copied: generated `PUT …/versions/{v}` requests may
/// register a model, which must not touch the shared repository.
fn model_copy() -> std::path::PathBuf {
    let repo = std::env::temp_dir().join(format!(
        "inferq-schemathesis-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let status = Command::new("cp")
        .arg("-r")
        .arg(test_models())
        .arg(&repo)
        .status()
        .expect("cp the test models");
    assert!(status.success());
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_conforms_to_its_openapi_document() {
    let schemathesis = test_tool("schemathesis");
    if !schemathesis.is_file() {
        let msg = "schemathesis missing: run `make test-venv`";
        assert!(
            std::env::var("INFERQ_TEST_REQUIRE_SERVICES").is_err(),
            "{msg}"
        );
        eprintln!("SKIPPED: {msg}");
        return;
    }
    if !ort_library().is_file() || !test_models().join("tiny-mean/1/model.onnx").is_file() {
        assert!(
            std::env::var("INFERQ_TEST_REQUIRE_MODELS").is_err(),
            "ONNX Runtime or the test models missing: run `make assets`"
        );
        return;
    }
    let repo = model_copy();
    // Uploads on, so the registration route is exercised past its 403.
    let server = start_embedded(&repo, "tiny-mean", &["--allow-model-upload", "true"]).await;
    let url = format!("{}/openapi.json", server.url());
    let report = std::env::temp_dir().join(format!(
        "inferq-schemathesis-{}.junit.xml",
        uuid::Uuid::new_v4().simple()
    ));
    let t0 = Instant::now();
    let report_path = report.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis)
            .args(["run", &url])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", "30", "--seed", "20261206"])
            // One worker: with two, Hypothesis's lambda-source cache raced
            // ("AST constructor recursion depth mismatch") in one CI run.
            .args(["--workers", "1", "--request-timeout", "60"])
            .args(["--suppress-health-check", "all", "--no-color"])
            // Nothing written into the source tree: no example database,
            // and its working directory is a temporary one.
            .args(["--generation-database", "none"])
            .current_dir(std::env::temp_dir())
            .args(["--report", "junit", "--report-junit-path"])
            .arg(&report_path)
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "schemathesis ran in {:.0} s\n{stdout}",
        t0.elapsed().as_secs_f64()
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&repo);
    assert!(
        out.status.success(),
        "schemathesis found failures (exit {:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
    // It did test the operations: the JUnit report has one case per
    // operation, and there are dozens.
    let junit = std::fs::read_to_string(&report).expect("the JUnit report");
    let _ = std::fs::remove_file(&report);
    let cases = junit.matches("<testcase").count();
    assert!(cases >= 30, "only {cases} operations tested:\n{junit}");
}
