//! TF Serving / Vertex AI, end to end on the real RabbitMQ, Redis and ONNX
//! Runtime.
//!
//! An independent client (scripts/tf_serving_client.py, plain `requests`
//! sending what TF Serving's REST clients and the Vertex SDK send) reads the
//! model status and signature metadata, predicts in the row and columnar
//! formats (encoded images and a tensor it preprocessed itself) and reads
//! failures by their `error` member. The real EfficientNet-Lite0 classifies
//! a photo sent in the columnar format. A batch's JSONL input takes every
//! `:predict` instance shape, repeats each line's `key` in its output line,
//! and writes failures to `prediction.errors_stats-…` (and, as before, to
//! `prediction.errors-…`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use inferq_tests::*;
use serde_json::{Value, json};

const CAT_CLASSES: [u64; 3] = [281, 282, 285]; // tabby, tiger cat, Egyptian cat

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn top1(prediction: &Value) -> u64 {
    prediction["top_k"][0]["index"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tf_serving_client_reads_status_metadata_predictions_and_errors() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let worker = start_worker(&ns, &test_models(), &["--threads", "1"]).await;
    let base = api.url();
    let client = reqwest::Client::new();
    // The same images as ordinary jobs, for the expected classes.
    let red = run_job(&client, &base, "", solid_png(40, 30, [255, 0, 0])).await;
    let blue = run_job(&client, &base, "", solid_png(40, 30, [0, 0, 255])).await;
    let (red, blue) = (top1(&red["result"]), top1(&blue["result"]));
    assert_ne!(red, blue, "the test needs two classes");

    let args = ["--url", &base, "--model", "tiny-mean"]
        .map(String::from)
        .to_vec();
    let r = run_json_script(test_python(), "tf_serving_client.py", args).await;

    let available = json!([{"version": "1", "state": "AVAILABLE",
                             "status": {"error_code": "OK", "error_message": ""}}]);
    assert_eq!(r["status"], available);
    assert_eq!(r["version_status"], available);
    assert_eq!(
        r["model_spec"],
        json!({"name": "tiny-mean", "signature_name": "", "version": "1"})
    );
    assert_eq!(
        r["signature_inputs"],
        json!({"image_bytes": {"dtype": "DT_STRING", "shape": [-1]},
               "input": {"dtype": "DT_FLOAT", "shape": [-1, 3, 224, 224]}})
    );
    assert_eq!(r["signature_outputs"], json!(["probabilities"]));
    assert_eq!(r["method_name"], "tensorflow/serving/predict");

    assert_eq!(r["rows_status"], 200);
    assert_eq!(r["rows"], json!([red, blue]));
    assert_eq!(r["vertex_status"], 200);
    assert_eq!(r["vertex"], json!([blue]));
    assert_eq!(r["vertex_top_k_len"], 2);
    assert_eq!(r["columns_status"], 200);
    assert_eq!(r["columns_keys"], json!(["outputs"]));
    assert_eq!(r["columns"], json!([red, blue]));
    assert_eq!(r["unnamed_status"], 200);
    assert_eq!(r["unnamed"], json!([blue]));
    assert_eq!(r["tensor_status"], 200, "{}", r["tensor"]);
    assert_eq!(r["tensor"], json!([red]));

    let errors = &r["errors"];
    for (name, status, says) in [
        ("unknown_model", 404, "no-such-model"),
        ("bad_instance", 400, "instance 0"),
        ("bad_json", 400, "invalid predict request"),
        ("bad_input_name", 400, "no input named `pixels`"),
    ] {
        assert_eq!(errors[name][0], status, "{name}: {errors}");
        let message = errors[name][1].as_str().unwrap_or_default();
        assert!(message.contains(says), "{name}: {errors}");
    }
    worker.stop().await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn efficientnet_classifies_a_photo_sent_in_columns() {
    if !services_available() || !real_model_ready("efficientnet-lite0", "assets") {
        return;
    }
    let ns = Namespace::new();
    let api = start_api(&ns, &real_models(), "efficientnet-lite0", &[]).await;
    let worker = start_worker(&ns, &real_models(), &[]).await;
    let cat = std::fs::read(root().join("tests/images/chelsea.png")).unwrap();
    let client = reqwest::Client::new();
    let resp = client
        .post(format!(
            "{}/v1/models/efficientnet-lite0:predict",
            api.url()
        ))
        .json(&json!({"inputs": {"image_bytes": [{"b64": b64(&cat)}]},
                      "parameters": {"top_k": 3}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body.get("predictions").is_none(), "{body}");
    let outputs = body["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1);
    assert!(CAT_CLASSES.contains(&top1(&outputs[0])), "{body}");
    worker.stop().await;
    api.stop().await;
}

fn temp_root(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("inferq-tfs-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_jsonl_takes_predict_shapes_echoes_keys_and_writes_errors_stats() {
    if !services_available() {
        return;
    }
    let root_dir = temp_root("batch");
    let root_s = root_dir.display().to_string();
    std::fs::create_dir_all(root_dir.join("in")).unwrap();
    let blue_png = solid_png(20, 20, [0, 0, 255]);
    std::fs::write(root_dir.join("in/blue.png"), &blue_png).unwrap();
    let ns = Namespace::new();
    let flags = ["--fetch-local-root", root_s.as_str()];
    let api = start_api(&ns, &test_models(), "tiny-mean", &flags).await;
    let worker = start_worker(
        &ns,
        &test_models(),
        &["--threads", "1", "--fetch-local-root", &root_s],
    )
    .await;
    let client = reqwest::Client::new();
    let base = api.url();
    let red_png = solid_png(20, 20, [255, 0, 0]);
    let red = top1(&run_job(&client, &base, "", red_png.clone()).await["result"]);
    let blue = top1(&run_job(&client, &base, "", blue_png.clone()).await["result"]);
    assert_ne!(red, blue);

    let blue_uri = format!("file://{root_s}/in/blue.png");
    // tiny-mean's input is pixel / 255 in NCHW: red is ones in R.
    let ones = vec![vec![1u8; 224]; 224];
    let zeros = vec![vec![0u8; 224]; 224];
    let lines = [
        // (line, expected class or None for an error)
        (
            json!({"image_bytes": {"b64": b64(&red_png)}, "key": "k-image-bytes"}),
            Some(red),
        ),
        (json!(b64(&blue_png)), Some(blue)),
        (
            json!({"b64": b64(&red_png), "key": 3, "source": "cam"}),
            Some(red),
        ),
        (json!(blue_uri.clone()), Some(blue)),
        (json!({"uri": blue_uri, "key": "k-uri"}), Some(blue)),
        (json!([ones, zeros.clone(), zeros]), Some(red)),
        (json!({"b64": "%%% not base64", "key": "k-bad"}), None),
        (json!({"key": "k-nothing"}), None),
    ];
    let jsonl: Vec<String> = lines.iter().map(|(l, _)| l.to_string()).collect();
    std::fs::write(root_dir.join("in.jsonl"), jsonl.join("\n")).unwrap();
    let resp = client
        .post(format!("{base}/v1/batches"))
        .json(&json!({"model": "tiny-mean",
                      "input": {"jsonl": format!("file://{root_s}/in.jsonl")},
                      "output": {"prefix": format!("file://{root_s}/out/")}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let batch: Value = resp.json().await.unwrap();
    let id = batch["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let b: Value = client
            .get(format!("{base}/v1/batches/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if matches!(
            b["state"].as_str(),
            Some("succeeded" | "failed" | "canceled")
        ) {
            break b;
        }
        assert!(Instant::now() < deadline, "batch {id}: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        done["counts"],
        json!({"total": 8, "succeeded": 6, "failed": 2})
    );
    let mut files: Vec<&str> = done["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "prediction.errors-00000-of-00001",
            "prediction.errors_stats-00000-of-00001",
            "prediction.results-00000-of-00001",
        ]
    );
    let out = root_dir.join("out");
    let results = read_lines(&out.join("prediction.results-00000-of-00001"));
    let expected: Vec<&(Value, Option<u64>)> = lines.iter().filter(|(_, c)| c.is_some()).collect();
    assert_eq!(results.len(), expected.len());
    for (got, (line, class)) in results.iter().zip(expected) {
        assert_eq!(&got["instance"], line, "the line is echoed as sent");
        assert_eq!(
            top1(&got["prediction"]),
            class.unwrap(),
            "{}",
            got["instance"]
        );
        match line.get("key") {
            Some(key) => assert_eq!(&got["key"], key),
            None => assert!(got.get("key").is_none(), "{got}"),
        }
    }
    assert_eq!(results[2]["source"], "cam", "every extra member is echoed");

    let stats = read_lines(&out.join("prediction.errors_stats-00000-of-00001"));
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[0]["key"], "k-bad");
    assert_eq!(stats[0]["instance"]["b64"], "%%% not base64");
    assert_eq!(stats[0]["error"]["code"], "invalid_argument");
    assert!(
        stats[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("base64"),
        "{}",
        stats[0]
    );
    assert_eq!(stats[1]["key"], "k-nothing");
    assert!(
        stats[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("none of"),
        "{}",
        stats[1]
    );
    // The earlier file name still holds the same lines.
    assert_eq!(
        read_lines(&out.join("prediction.errors-00000-of-00001")),
        stats
    );
    worker.stop().await;
    api.stop().await;
    let _ = std::fs::remove_dir_all(&root_dir);
}
