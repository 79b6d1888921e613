//! The KServe Python SDK's REST client against InferQ, end to end.
//!
//! `kserve.InferenceRESTClient` (PyPI `kserve`, in its own venv because it
//! needs an older CloudEvents SDK and protobuf than the other tools) is what
//! KServe users call. scripts/kserve_sdk_client.py drives it against the
//! production path (API, RabbitMQ, a worker, Redis) with the real
//! EfficientNet-Lite0: v2 health and readiness, binary and JSON BYTES
//! inference, an error, and the v1 `:predict` shape. tritonclient's view of
//! the same routes is in kserve.rs.

use inferq_tests::*;
use serde_json::Value;

const CAT_CLASSES: [u64; 3] = [281, 282, 285]; // tabby, tiger cat, Egyptian cat
const ESPRESSO: u64 = 967;

/// The KServe SDK venv's Python, or `None` (skip) when it is not installed.
fn kserve_python() -> Option<std::path::PathBuf> {
    let py = root().join(".cache/kserve-venv/bin/python");
    if py.is_file() {
        return Some(py);
    }
    let msg = "the KServe SDK venv .cache/kserve-venv is missing; run `make test-venv`";
    assert!(
        std::env::var("INFERQ_TEST_REQUIRE_SERVICES").is_err(),
        "{msg}"
    );
    eprintln!("SKIPPED: {msg}");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kserve_sdk_rest_client_reads_inferq() {
    if !services_available() || !real_model_ready("efficientnet-lite0", "assets") {
        return;
    }
    let Some(python) = kserve_python() else {
        return;
    };
    let ns = Namespace::new();
    let api = start_api(&ns, &real_models(), "efficientnet-lite0", &[]).await;
    let worker = start_worker(&ns, &real_models(), &[]).await;
    let (url, images) = (api.url(), root().join("tests/images").display().to_string());
    let args = [
        "--url",
        &url,
        "--model",
        "efficientnet-lite0",
        "--images",
        &images,
    ];
    let r = run_json_script(
        python,
        "kserve_sdk_client.py",
        args.map(String::from).to_vec(),
    )
    .await;
    eprintln!("{r}");

    // Health as the SDK reads it: the `live`/`ready` members, and model
    // readiness as "2xx or not".
    assert_eq!(r["live"], true, "{r}");
    assert_eq!(r["ready"], true, "{r}");
    assert_eq!(r["model_ready"], true, "{r}");
    assert_eq!(r["unknown_model_ready"], false, "{r}");

    // Binary BYTES in, the probabilities back through InferResponse.
    let bin = &r["binary"];
    assert_eq!(bin["id"], "sdk-binary");
    assert_eq!(bin["model_name"], "efficientnet-lite0");
    assert_eq!(bin["output"], "probabilities");
    assert_eq!(bin["shape"], serde_json::json!([2, 1000]));
    let top1 = |v: &Value| v.as_u64().unwrap();
    assert!(CAT_CLASSES.contains(&top1(&bin["top1"][0])), "{bin}");
    assert_eq!(top1(&bin["top1"][1]), ESPRESSO, "{bin}");
    // Base64 text in JSON: the same class.
    assert_eq!(top1(&r["json_top1"]), ESPRESSO, "{r}");

    // The SDK puts the server's `error` member into its exception.
    let err = &r["unknown_model_error"];
    assert_eq!(err["status"], 404, "{r}");
    assert!(
        err["message"].as_str().unwrap().contains("no-such-model"),
        "{r}"
    );

    // The v1 protocol: one prediction for one instance.
    assert_eq!(r["v1_predictions"], 1, "{r}");

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}
