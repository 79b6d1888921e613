//! KServe v2 / Open Inference Protocol inference, end to end.
//!
//! The real Triton client (`tritonclient[http]` from PyPI, driven by
//! scripts/kserve_client.py) classifies the cat and coffee photos with
//! EfficientNet-Lite0 through RabbitMQ, Redis and a worker: encoded images
//! as binary BYTES, base64 text in JSON, the classification extension and a
//! raw FP32 tensor. Then every model kind, the integer datatypes and the
//! refusals against the embedded server, comparing each v2 answer with the
//! same input run as an ordinary job.

use base64::Engine;
use inferq_tests::*;
use serde_json::{Value, json};

const CAT_CLASSES: [u64; 3] = [281, 282, 285]; // tabby, tiger cat, Egyptian cat
const ESPRESSO: u64 = 967;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_classifies_photos_through_the_queue() {
    if !services_available() || !real_model_ready("efficientnet-lite0", "assets") {
        return;
    }
    let ns = Namespace::new();
    let api = start_api(&ns, &real_models(), "efficientnet-lite0", &[]).await;
    let worker = start_worker(&ns, &real_models(), &[]).await;
    let url = api.url().trim_start_matches("http://").to_owned();
    let images = root().join("tests/images").display().to_string();
    let args = [
        "--url",
        &url,
        "--model",
        "efficientnet-lite0",
        "--images",
        &images,
    ];
    let r = run_json_script(
        test_python(),
        "kserve_client.py",
        args.map(String::from).to_vec(),
    )
    .await;

    assert_eq!(r["live"], true);
    assert_eq!(r["ready"], true);
    assert_eq!(r["model_ready"], true);
    let meta = &r["metadata"];
    assert_eq!(meta["name"], "efficientnet-lite0");
    // Version 2 (int8, not the default) is there once `make assets` built it.
    let versions = meta["versions"].as_array().expect("versions");
    assert!(versions.contains(&json!("1")), "{meta}");
    assert_eq!(
        meta["inputs"][0],
        json!({"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]})
    );
    assert_eq!(
        meta["outputs"][0],
        json!({"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]})
    );

    // Two photos in one request, binary both ways.
    let bin = &r["binary"];
    assert_eq!(bin["id"], "two-photos");
    assert_eq!(bin["shape"], json!([2, 1000]));
    assert_eq!(bin["dtype"], "float32");
    let top1 = |v: &Value| v.as_u64().unwrap();
    assert!(
        CAT_CLASSES.contains(&top1(&bin["top1"][0])),
        "cat classified as {}",
        bin["top1"][0]
    );
    assert_eq!(top1(&bin["top1"][1]), ESPRESSO);
    for s in bin["row_sums"].as_array().unwrap() {
        assert!((s.as_f64().unwrap() - 1.0).abs() < 1e-3, "{s}");
    }

    // Base64 in JSON, at an explicit version: the same answer.
    assert_eq!(r["json"]["top1"], bin["top1"][0]);
    assert_eq!(r["json"]["model_version"], "1");

    // The classification extension: "score:index:label", best first.
    let classes: Vec<&str> = r["classification"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(classes.len(), 3, "{classes:?}");
    let first: Vec<&str> = classes[0].splitn(3, ':').collect();
    assert_eq!(first[1], ESPRESSO.to_string(), "{classes:?}");
    assert_eq!(first[2], "espresso");
    let scores: Vec<f64> = classes
        .iter()
        .map(|c| c.split(':').next().unwrap().parse().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

    // A tensor preprocessed by the client: the cat again.
    assert!(CAT_CLASSES.contains(&top1(&r["tensor_top1"])), "{r}");

    // Compressed requests and answers, both algorithms each way.
    for pair in ["gzip-deflate", "deflate-gzip"] {
        assert_eq!(r["compressed"][pair], bin["top1"], "{pair}");
    }
    // Only the extensions that work, and the model configuration.
    assert_eq!(
        r["server_metadata"]["extensions"],
        json!([
            "binary_tensor_data",
            "classification",
            "model_configuration"
        ])
    );
    let config = &r["config"];
    assert_eq!(config["name"], "efficientnet-lite0");
    assert_eq!(config["platform"], "onnxruntime_onnx");
    assert!(config["max_batch_size"].as_u64().unwrap() >= 1, "{config}");
    assert_eq!(
        config["input"][0],
        json!({"name": "input", "data_type": "TYPE_FP32", "format": "FORMAT_NCHW", "dims": [3, 224, 224]})
    );
    assert_eq!(
        config["output"][0],
        json!({"name": "probabilities", "data_type": "TYPE_FP32", "dims": [1000]})
    );
    // The health bodies the KServe SDK reads, and `error` on an unknown route.
    let health = &r["health_bodies"];
    assert_eq!(health["live"], json!([200, {"live": true}]));
    assert_eq!(health["ready"], json!([200, {"ready": true}]));
    assert_eq!(health["unknown_route"][0], 404);
    assert!(health["unknown_route"][1]["error"].is_string(), "{health}");

    // Errors reach the client's exception with the server's message.
    let err = r["unknown_model_error"].as_str().unwrap();
    assert!(err.contains("no-such-model"), "{err}");
    drop(worker);
}

async fn infer(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let resp = client.post(url).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-4
}

/// A binary request: JSON header, then the raw tail.
fn binary_request(header: Value, tail: &[u8]) -> (Vec<u8>, usize) {
    let mut body = serde_json::to_vec(&header).unwrap();
    let n = body.len();
    body.extend_from_slice(tail);
    (body, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_datatype_and_refusal() {
    let server = start_embedded(&test_models(), "tiny-mean", &["--threads", "1"]).await;
    let base = server.url();
    let client = reqwest::Client::new();
    let red = solid_png(64, 48, [255, 0, 0]);
    let v2 = |m: &str| format!("{base}/v2/models/{m}/infer");
    let bytes_input = |png: &[u8]| json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64(png)]}]});

    // Classification: the score tensor holds the job's probabilities.
    let job = run_job(&client, &base, "?model=tiny-mean&top_k=3", red.clone()).await;
    let (status, body) = infer(&client, &v2("tiny-mean"), bytes_input(&red)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_name"], "tiny-mean");
    let out = &body["outputs"][0];
    assert_eq!(out["name"], "probabilities");
    let probs = floats(&out["data"]);
    assert_eq!(out["shape"], json!([1, probs.len()]));
    for c in job["result"]["top_k"].as_array().unwrap() {
        let i = c["index"].as_u64().unwrap() as usize;
        assert!(close(probs[i], c["probability"].as_f64().unwrap()), "{i}");
    }

    // INT32 (JSON) and UINT8 (binary) tensors for an int32 NHWC model give
    // the answer a tensor job gives.
    let pixels: Vec<u8> = (0..224 * 224).flat_map(|_| [200u8, 30, 90]).collect();
    let nested: Vec<Vec<Vec<u8>>> = pixels
        .chunks(224 * 3)
        .map(|row| row.chunks(3).map(|p| p.to_vec()).collect())
        .collect();
    let (status, job) = submit_json(
        &client,
        &base,
        json!({"model": "tiny-nhwc-int32", "input": {"tensor": [nested.clone()]}}),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let job = wait_terminal(
        &client,
        &base,
        job["id"].as_str().unwrap(),
        std::time::Duration::from_secs(30),
    )
    .await;
    let want = top1(&job) as usize;
    let (status, body) = infer(
        &client,
        &v2("tiny-nhwc-int32"),
        json!({"inputs": [{"name": "input", "shape": [1, 224, 224, 3], "datatype": "INT32", "data": [nested]}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let probs = floats(&body["outputs"][0]["data"]);
    let argmax = (0..probs.len())
        .max_by(|a, b| probs[*a].total_cmp(&probs[*b]))
        .unwrap();
    assert_eq!(argmax, want);
    let (req, n) = binary_request(
        json!({"inputs": [{"name": "input", "shape": [1, 224, 224, 3], "datatype": "UINT8",
                           "parameters": {"binary_data_size": pixels.len()}}],
               "outputs": [{"name": "probabilities", "parameters": {"classification": 2, "binary_data": true}}]}),
        &pixels,
    );
    let resp = client
        .post(v2("tiny-nhwc-int32"))
        .header("Inference-Header-Content-Length", n)
        .body(req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let header: usize = resp.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let raw = resp.bytes().await.unwrap();
    let head: Value = serde_json::from_slice(&raw[..header]).unwrap();
    let out = &head["outputs"][0];
    assert_eq!(out["datatype"], "BYTES");
    assert_eq!(out["shape"], json!([1, 2]));
    assert_eq!(out["parameters"]["binary_data_size"], raw.len() - header);
    let len = u32::from_le_bytes(raw[header..header + 4].try_into().unwrap()) as usize;
    let first = std::str::from_utf8(&raw[header + 4..header + 4 + len]).unwrap();
    assert_eq!(
        first.split(':').nth(1).unwrap(),
        want.to_string(),
        "{first}"
    );

    // Keypoints, in the manifest's order, in original-image pixels.
    let (status, body) = infer(&client, &v2("tiny-pose"), bytes_input(&red)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["shape"], json!([1, 3, 3]));
    let k = floats(&body["outputs"][0]["data"]);
    for (got, want) in k
        .iter()
        .zip([32.0, 12.0, 0.9, 16.0, 24.0, 0.8, 48.0, 36.0, 0.1])
    {
        assert!(close(*got, want), "{k:?}");
    }

    // Several people: the best person's points, every person's row and the count.
    let (status, body) = infer(&client, &v2("tiny-multipose"), bytes_input(&red)).await;
    assert_eq!(status, 200, "{body}");
    let outs = body["outputs"].as_array().unwrap();
    let names: Vec<&str> = outs.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["keypoints", "persons", "person_count"]);
    assert_eq!(outs[1]["shape"], json!([1, 2, 14]));
    assert_eq!(outs[2]["data"], json!([2]));
    let rows = floats(&outs[1]["data"]);
    #[rustfmt::skip]
    let want = [
        36.0, 6.0, 60.0, 36.0, 0.8,  48.0, 12.0, 0.9,  40.0, 24.0, 0.8,  56.0, 24.0, 0.7,
        4.0, 6.0, 28.0, 36.0, 0.6,   16.0, 12.0, 0.9,  8.0, 24.0, 0.8,   24.0, 24.0, 0.7,
    ];
    assert_eq!(rows.len(), want.len());
    for (got, want) in rows.iter().zip(want) {
        assert!(close(*got, want), "{rows:?}");
    }
    let best = floats(&outs[0]["data"]);
    assert!(close(best[0], 48.0) && close(best[1], 12.0), "{best:?}");

    // Detections: two boxes (and their count), two photos padded alike.
    let (status, body) = infer(
        &client,
        &v2("tiny-detect"),
        json!({"inputs": [{"name": "image", "shape": [2, 1], "datatype": "BYTES", "data": [[b64(&red)], [b64(&red)]]}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let outs = body["outputs"].as_array().unwrap();
    assert_eq!(outs[0]["name"], "detections");
    assert_eq!(outs[0]["shape"], json!([2, 2, 6]));
    assert_eq!(
        outs[1],
        json!({"name": "detection_count", "datatype": "INT32", "shape": [2], "data": [2, 2]})
    );
    let job = run_job(&client, &base, "?model=tiny-detect", red.clone()).await;
    let d = floats(&outs[0]["data"]);
    let best = &job["result"]["detections"][0];
    assert!(
        close(d[0], best["box"]["x1"].as_f64().unwrap()),
        "{d:?} {best}"
    );
    assert!(close(d[4], best["score"].as_f64().unwrap()));
    assert_eq!(d[5] as u64, best["class"].as_u64().unwrap());

    // Image-to-image: the output image, base64 in JSON.
    let (status, body) = infer(&client, &v2("tiny-invert"), bytes_input(&red)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["datatype"], "BYTES");
    let png = base64::engine::general_purpose::STANDARD
        .decode(body["outputs"][0]["data"][0].as_str().unwrap())
        .unwrap();
    let img = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!(img.get_pixel(0, 0).0, [0, 255, 255]);

    // Embedding and raw tensors (an FP32 JSON tensor in).
    let (status, body) = infer(&client, &v2("tiny-embed"), bytes_input(&red)).await;
    assert_eq!(status, 200, "{body}");
    let e = floats(&body["outputs"][0]["data"]);
    assert!(close(e[0], 0.6) && close(e[1], 0.8), "{e:?}");
    let plane = vec![vec![0.5f32; 16]; 16];
    let (status, body) = infer(
        &client,
        &v2("tiny-tensor"),
        json!({"inputs": [{"name": "input", "shape": [1, 3, 16, 16], "datatype": "FP32", "data": [[plane.clone(), plane.clone(), plane]]}],
               "outputs": [{"name": "double"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(body["outputs"][0]["name"], "double");

    // Metadata per kind, and the version route.
    let meta: Value = client
        .get(format!("{base}/v2/models/tiny-pose/versions/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["versions"], json!(["1"]));
    assert_eq!(meta["outputs"][0]["shape"], json!([-1, 3, 3]));
    assert_eq!(meta["inputs"][1]["datatype"], "BYTES");

    // Refusals: problem+json that also carries the v2 `error` member.
    let tensor = |shape: Value, dt: &str, data: Value| json!({"inputs": [{"name": "input", "shape": shape, "datatype": dt, "data": data}]});
    for (model, body, status, why) in [
        (
            "tiny-tensor",
            tensor(json!([1, 3, 8, 8]), "FP32", json!(vec![0.0; 192])),
            400,
            "takes [N, 3, 16, 16]",
        ),
        (
            "tiny-tensor",
            tensor(json!([1, 3, 16, 16]), "FP64", json!(vec![0.0; 768])),
            400,
            "FP64",
        ),
        (
            "tiny-nhwc-int32",
            tensor(json!([1, 224, 224, 3]), "FP32", json!(vec![0.5; 150528])),
            400,
            "Int32",
        ),
        ("tiny-mean", json!({"inputs": []}), 400, "exactly one input"),
        (
            "tiny-mean",
            json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64(b"not an image")]}]}),
            415,
            "not a supported image format",
        ),
        (
            "tiny-mean",
            json!({"inputs": [{"name": "pixels", "shape": [1], "datatype": "BYTES", "data": [b64(&red)]}]}),
            400,
            "unknown input",
        ),
        (
            "tiny-mean",
            json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64(&red)]}], "outputs": [{"name": "logits"}]}),
            400,
            "unknown output",
        ),
        (
            "tiny-pose",
            json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64(&red)]}], "outputs": [{"name": "keypoints", "parameters": {"classification": 2}}]}),
            400,
            "classifier",
        ),
        ("nope", bytes_input(&red), 404, "nope"),
    ] {
        let (got, problem) = infer(&client, &v2(model), body).await;
        assert_eq!(got, status, "{model}: {problem}");
        let error = problem["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{model}: {problem}");
        assert_eq!(problem["detail"], problem["error"]);
    }
    let resp = client
        .post(v2("tiny-mean"))
        .header("Inference-Header-Content-Length", "999")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client
        .get(format!("{base}/v2/models/tiny-mean/versions/9"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

/// Runs curl with `args`; its stdout.
async fn curl(args: Vec<String>) -> String {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "60"])
            .args(&args)
            .output()
            .expect("curl (with HTTP/2) is installed")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "curl {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

/// HTTP/2 cleartext with prior knowledge (curl) and HTTP/1.1 on the same
/// listener; gzip
/// request bodies and deflate answers over both; a decode failure is the
/// client's fault (422), not the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_compression_and_job_failures() {
    let server = start_embedded(&test_models(), "tiny-mean", &["--threads", "1"]).await;
    let base = server.url();
    let red = solid_png(64, 48, [255, 0, 0]);
    let request = json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64(&red)]}]});
    let dir = tempfile_dir();
    let body = dir.join("request.json.gz");
    std::fs::write(&body, gzip(&serde_json::to_vec(&request).unwrap())).unwrap();
    let infer = format!("{base}/v2/models/tiny-mean/infer");

    // h2c GETs, then a gzip POST, then HTTP/1.1, on the same port. One
    // request per curl run: curl 7.88 (Debian 12) fails to reuse a
    // prior-knowledge connection (curl issue 10634, fixed in 8.0).
    for uri in ["/v2/health/live", "/v2/models/tiny-mean/config"] {
        let out = curl(vec![
            "--http2-prior-knowledge".into(),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_version} %{http_code}".into(),
            format!("{base}{uri}"),
        ])
        .await;
        assert_eq!(out, "2 200", "{uri}");
    }
    let answer = curl(vec![
        "--http2-prior-knowledge".into(),
        "-H".into(),
        "Content-Type: application/json".into(),
        "-H".into(),
        "Content-Encoding: gzip".into(),
        "--compressed".into(),
        "--data-binary".into(),
        format!("@{}", body.display()),
        "-w".into(),
        "\\n%{http_version} %{http_code}".into(),
        infer.clone(),
    ])
    .await;
    let (json_part, tail) = answer.rsplit_once('\n').unwrap();
    assert_eq!(tail, "2 200", "{answer}");
    let h2: Value = serde_json::from_str(json_part).unwrap();
    assert_eq!(h2["outputs"][0]["name"], "probabilities", "{h2}");
    let http1 = curl(vec![
        "--http1.1".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_version} %{http_code}".into(),
        format!("{base}/v2/health/ready"),
    ])
    .await;
    assert_eq!(http1, "1.1 200");

    // Compressed both ways with a plain HTTP/1.1 client (no automatic
    // decompression in reqwest here): the answer is deflate (zlib). 32
    // images, so that the answer passes the 1 KiB below which it is sent as is.
    let client = reqwest::Client::new();
    let many: Vec<String> = (0..32).map(|_| b64(&red)).collect();
    let batch =
        json!({"inputs": [{"name": "image", "shape": [32], "datatype": "BYTES", "data": many}]});
    let resp = client
        .post(&infer)
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .header("Accept-Encoding", "deflate")
        .body(gzip(&serde_json::to_vec(&batch).unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-encoding"], "deflate");
    let raw = resp.bytes().await.unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&raw[..]), &mut plain).unwrap();
    let answer: Value = serde_json::from_slice(&plain).unwrap();
    let rows = answer["outputs"][0]["shape"][1].as_u64().unwrap() as usize;
    let first = &answer["outputs"][0]["data"].as_array().unwrap()[..rows];
    assert_eq!(
        first,
        h2["outputs"][0]["data"].as_array().unwrap().as_slice()
    );
    assert_eq!(answer["outputs"][0]["shape"][0], 32);
    assert!(raw.len() < plain.len(), "{} >= {}", raw.len(), plain.len());

    // A PNG whose header is fine but whose pixels are missing passes the
    // API's checks and fails in the worker: 422 decode_failed, the job's code.
    let mut broken = red[..33].to_vec();
    broken.extend_from_slice(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]);
    let (status, problem) = infer_at(&client, &infer, json!({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64(&broken)]}]})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["code"], "decode_failed", "{problem}");
    assert!(
        problem["error"]
            .as_str()
            .unwrap()
            .contains("instance 0 failed"),
        "{problem}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

async fn infer_at(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    infer(client, url, body).await
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("inferq-kserve-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
