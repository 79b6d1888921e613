//! Batch prediction end to end on the real RabbitMQ, Redis, ONNX Runtime
//! and file system: a prefix of good and corrupt images becomes sharded
//! results and errors files plus mirrored per-file outputs; a JSONL input
//! mixes inline, referenced and broken instances; re-posting with the same
//! Idempotency-Key finds the same batch; a batch survives its API process
//! being SIGKILLed and its worker being replaced, with exactly one job per
//! instance; and a batch can be canceled.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use inferq_tests::cluster::{Managed, free_port, port_open, wait_until};
use inferq_tests::*;
use serde_json::{Value, json};

fn temp_root(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("inferq-batch-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

fn put(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn post_batch(
    client: &reqwest::Client,
    base: &str,
    body: &Value,
    key: Option<&str>,
) -> (u16, Value, bool) {
    let mut req = client.post(format!("{base}/v1/batches")).json(body);
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let replayed = resp.headers().contains_key("idempotent-replayed");
    (status, resp.json().await.unwrap(), replayed)
}

async fn get_batch(client: &reqwest::Client, base: &str, id: &str) -> Value {
    let resp = client
        .get(format!("{base}/v1/batches/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Polls until the batch is final, or until `until` holds.
async fn wait_batch(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    timeout: Duration,
    until: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let b = get_batch(client, base, id).await;
        let state = b["state"].as_str().unwrap_or_default();
        if matches!(state, "succeeded" | "failed" | "canceled") || until(&b) {
            return b;
        }
        assert!(
            Instant::now() < deadline,
            "batch {id} after {timeout:?}: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The namespace's job records by status (with the unfinished ones in full)
/// and the queue's depth and consumers.
async fn stall_report(ns: &Namespace) -> String {
    let redis = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:job:*", ns.prefix))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut open = Vec::new();
    for k in keys {
        let text: Option<String> = redis::cmd("GET")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .unwrap_or(None);
        let Some(r) = text.and_then(|t| serde_json::from_str::<Value>(&t).ok()) else {
            continue;
        };
        let status = r["status"].as_str().unwrap_or("?").to_owned();
        if !matches!(
            status.as_str(),
            "succeeded" | "failed" | "canceled" | "expired" | "dead_lettered"
        ) {
            open.push(r.to_string());
        }
        *counts.entry(status).or_default() += 1;
    }
    let queue = match lapin::Connection::connect(inferq_tests::AMQP_URL, Default::default()).await {
        Ok(c) => {
            let ch = c.create_channel().await.unwrap();
            let passive = lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let q = ch
                .queue_declare(ns.queue.as_str().into(), passive, Default::default())
                .await;
            let _ = c.close(200, "bye".into()).await;
            match q {
                Ok(q) => format!(
                    "ready {} consumers {}",
                    q.message_count(),
                    q.consumer_count()
                ),
                Err(e) => format!("{e}"),
            }
        }
        Err(e) => format!("{e}"),
    };
    format!(
        "records {counts:?}; queue {queue}; unfinished: {}",
        open.join("\n")
    )
}

fn never(_: &Value) -> bool {
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prefix_and_jsonl_batches_write_results_errors_and_mirrors() {
    if !services_available() {
        return;
    }
    let root = temp_root("files");
    put(&root, "in/a/red.png", &solid_png(20, 20, [255, 0, 0]));
    put(&root, "in/a/green.png", &solid_png(20, 20, [0, 255, 0]));
    put(&root, "in/b/blue.png", &solid_png(20, 20, [0, 0, 255]));
    put(&root, "in/b/corrupt.png", b"this is not an image at all");
    put(&root, "in/c/cut.png", &solid_png(64, 64, [1, 2, 3])[..60]);
    let repo = private_repository("tiny-mean", "batch");
    let ns = Namespace::new();
    let root_s = root.display().to_string();
    let flags = ["--fetch-local-root", root_s.as_str()];
    let api = start_api(&ns, &repo, "tiny-mean", &flags).await;
    let worker = start_worker(
        &ns,
        &repo,
        &["--threads", "1", "--fetch-local-root", &root_s],
    )
    .await;
    let client = reqwest::Client::new();
    let base = api.url();

    let spec = json!({
        "model": "tiny-mean",
        "input": {"prefix": format!("file://{root_s}/in/")},
        "output": {"prefix": format!("file://{root_s}/out/run1")},
        "shard_size": 2,
    });
    let (status, batch, _) = post_batch(&client, &base, &spec, Some("run-1")).await;
    assert_eq!(status, 202, "{batch}");
    let id = batch["id"].as_str().unwrap().to_owned();
    assert_eq!(batch["mirror"], true);
    assert_eq!(batch["output"], format!("file://{root_s}/out/run1/"));
    // The same request with the same key finds the same batch.
    let (status, again, replayed) = post_batch(&client, &base, &spec, Some("run-1")).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again["id"], id.as_str());
    // The same key for another request is refused.
    let mut other = spec.clone();
    other["shard_size"] = json!(3);
    let (status, problem, _) = post_batch(&client, &base, &other, Some("run-1")).await;
    assert_eq!(status, 422, "{problem}");

    let done = wait_batch(&client, &base, &id, Duration::from_secs(60), never).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        done["counts"],
        json!({"total": 5, "succeeded": 3, "failed": 2})
    );
    let out = root.join("out/run1");
    let mut files: Vec<String> = done["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().rsplit('/').next().unwrap().to_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "prediction.errors-00000-of-00001",
            "prediction.errors_stats-00000-of-00001",
            "prediction.results-00000-of-00002",
            "prediction.results-00001-of-00002"
        ]
    );
    let mut results = read_lines(&out.join("prediction.results-00000-of-00002"));
    assert_eq!(results.len(), 2, "shards hold shard_size lines");
    results.extend(read_lines(&out.join("prediction.results-00001-of-00002")));
    let uris: Vec<&str> = results
        .iter()
        .map(|l| l["instance"]["uri"].as_str().unwrap())
        .collect();
    let expect = |rel: &str| format!("file://{root_s}/in/{rel}");
    assert_eq!(
        uris,
        [
            expect("a/green.png"),
            expect("a/red.png"),
            expect("b/blue.png")
        ]
    );
    for l in &results {
        assert!(
            !l["prediction"]["top_k"].as_array().unwrap().is_empty(),
            "{l}"
        );
        assert!(l["job"].is_string());
    }
    let errors = read_lines(&out.join("prediction.errors-00000-of-00001"));
    let failed: HashSet<&str> = errors
        .iter()
        .map(|l| l["instance"]["uri"].as_str().unwrap())
        .collect();
    assert_eq!(
        failed,
        HashSet::from([
            expect("b/corrupt.png").as_str(),
            expect("c/cut.png").as_str()
        ])
    );
    for l in &errors {
        let code = l["error"]["code"].as_str().unwrap();
        assert!(
            ["unsupported_image_format", "decode_failed", "invalid_image"].contains(&code),
            "{l}"
        );
    }
    // Per-file outputs mirror the input hierarchy.
    for rel in ["a/red.png", "a/green.png", "b/blue.png"] {
        let mirrored: Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("{rel}.json"))).unwrap())
                .unwrap();
        assert!(mirrored.to_string().contains("top_k"), "{rel}: {mirrored}");
    }
    assert!(!out.join("b/corrupt.png.json").exists());

    // A JSONL input: inline, referenced, broken and blank lines.
    let b64 = base64::engine::general_purpose::STANDARD.encode(solid_png(8, 8, [255, 0, 0]));
    let jsonl = [
        json!({"b64": b64}).to_string(),
        String::new(),
        json!({"uri": expect("b/blue.png")}).to_string(),
        json!({"b64": "!!! not base64 !!!"}).to_string(),
        "{not json".to_owned(),
    ]
    .join("\n");
    put(&root, "lists/in.jsonl", jsonl.as_bytes());
    let (status, jb, _) = post_batch(
        &client,
        &base,
        &json!({"model": "tiny-mean",
                "input": {"jsonl": format!("file://{root_s}/lists/in.jsonl")},
                "output": {"prefix": format!("file://{root_s}/out/jsonl/")}}),
        None,
    )
    .await;
    assert_eq!(status, 202, "{jb}");
    assert_eq!(jb["mirror"], false);
    let jdone = wait_batch(
        &client,
        &base,
        jb["id"].as_str().unwrap(),
        Duration::from_secs(60),
        never,
    )
    .await;
    assert_eq!(jdone["state"], "succeeded", "{jdone}");
    assert_eq!(
        jdone["counts"],
        json!({"total": 4, "succeeded": 2, "failed": 2})
    );
    let jr = read_lines(&root.join("out/jsonl/prediction.results-00000-of-00001"));
    assert_eq!(
        jr[0]["instance"]["b64"],
        b64.as_str(),
        "instances are echoed"
    );
    assert_eq!(jr[1]["instance"]["uri"], expect("b/blue.png").as_str());
    let je = read_lines(&root.join("out/jsonl/prediction.errors-00000-of-00001"));
    assert_eq!(je.len(), 2);
    assert!(
        je.iter().all(|l| l["error"]["code"] == "invalid_argument"),
        "{je:?}"
    );
    assert_eq!(je[1]["instance"], "{not json");

    // Bad requests are 4xx problems, before anything is recorded.
    for (bad, want) in [
        (
            json!({"input": {"prefix": "file:///etc/"}, "output": {"prefix": format!("file://{root_s}/o/")}}),
            403,
        ),
        (
            json!({"input": {"prefix": expect(""), "jsonl": expect("x")}, "output": {"prefix": expect("o/")}}),
            400,
        ),
        (
            json!({"model": "nope", "input": {"prefix": expect("")}, "output": {"prefix": expect("o/")}}),
            404,
        ),
        (
            json!({"input": {"prefix": expect("")}, "output": {"prefix": "https://example.com/o/"}}),
            400,
        ),
    ] {
        let (status, problem, _) = post_batch(&client, &base, &bad, None).await;
        assert_eq!(status, want, "{bad} -> {problem}");
        assert!(problem["code"].is_string());
    }
    let resp = client
        .get(format!("{base}/v1/batches/{}", uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(&root);
}

/// The API as its own process, so it can be SIGKILLed mid-batch.
fn api_process(ns: &Namespace, repo: &Path, root: &str, port: u16, log: &Path) -> Managed {
    let mut args = vec![
        "--listen".to_string(),
        format!("127.0.0.1:{port}"),
        "--default-model".into(),
        "tiny-slow".into(),
        "--auth".into(),
        "false".into(),
        "--fetch-local-root".into(),
        root.into(),
        "--batch-lease-secs".into(),
        "2".into(),
        "--batch-window".into(),
        "1".into(),
        "--metrics-listen".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(ns.flags(repo));
    let mut m = Managed::new("api", &binary("inferq-api"), args, log);
    m.start().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || port_open(port)),
        "api did not listen: {}",
        m.log_tail(20)
    );
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_survive_a_killed_api_and_a_replaced_worker_and_can_be_canceled() {
    if !services_available() {
        return;
    }
    let root = temp_root("restart");
    const N: usize = 40;
    for i in 0..N {
        let shade = (i * 6) as u8;
        put(
            &root,
            &format!("in/img-{i:02}.png"),
            &solid_png(32, 32, [shade, 255 - shade, 7]),
        );
    }
    let root_s = root.display().to_string();
    let repo = private_repository("tiny-slow", "batch-restart");
    let ns = Namespace::new();
    let log = root.join("api.log");
    let port = free_port().unwrap();
    let mut api = api_process(&ns, &repo, &root_s, port, &log);
    let worker_flags = ["--threads", "1", "--fetch-local-root", root_s.as_str()];
    let worker = start_worker(&ns, &repo, &worker_flags).await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let spec = json!({
        "input": {"prefix": format!("file://{root_s}/in/")},
        "output": {"prefix": format!("file://{root_s}/out/")},
    });
    let (status, batch, _) = post_batch(&client, &base, &spec, None).await;
    assert_eq!(status, 202, "{batch}");
    let id = batch["id"].as_str().unwrap().to_owned();
    let some_done = |b: &Value| b["counts"]["succeeded"].as_u64().unwrap_or(0) >= 5;
    let mid = wait_batch(&client, &base, &id, Duration::from_secs(60), some_done).await;
    assert_eq!(
        mid["state"], "running",
        "killed too late to test anything: {mid}"
    );
    // A crash: no graceful hand-over, the lease has to run out.
    api.kill().unwrap();
    // And the worker is replaced by a new one.
    worker.stop().await;
    let worker = start_worker(&ns, &repo, &worker_flags).await;
    let port2 = free_port().unwrap();
    let mut api2 = api_process(&ns, &repo, &root_s, port2, &log);
    let base2 = format!("http://127.0.0.1:{port2}");
    let finished = |b: &Value| b["state"] != "running";
    let mut done = wait_batch(&client, &base2, &id, Duration::from_secs(60), finished).await;
    if done["state"] == "running" {
        // Not done in a minute (a healthy run takes seconds): say where the
        // batch stands before waiting longer, so a stall explains itself.
        eprintln!(
            "batch still running after 60 s: {done}\n{}\napi2 log:\n{}",
            stall_report(&ns).await,
            api2.log_tail(40)
        );
        done = wait_batch(&client, &base2, &id, Duration::from_secs(60), never).await;
    }
    assert_eq!(done["state"], "succeeded", "{done}\n{}", api2.log_tail(30));
    assert_eq!(
        done["counts"],
        json!({"total": N, "succeeded": N, "failed": 0})
    );
    let lines = read_lines(&root.join("out/prediction.results-00000-of-00001"));
    assert_eq!(lines.len(), N);
    let jobs: HashSet<&str> = lines.iter().map(|l| l["job"].as_str().unwrap()).collect();
    assert_eq!(jobs.len(), N, "one job per instance");
    // Exactly N job records exist in the store: none was submitted twice.
    let redis = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:job:*", ns.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), N, "jobs in the store");

    // Cancel: a second run stops early and says so.
    let spec2 = json!({
        "input": {"prefix": format!("file://{root_s}/in/")},
        "output": {"prefix": format!("file://{root_s}/out2/")},
    });
    let (_, b2, _) = post_batch(&client, &base2, &spec2, None).await;
    let id2 = b2["id"].as_str().unwrap().to_owned();
    let started = |b: &Value| b["counts"]["succeeded"].as_u64().unwrap_or(0) >= 2;
    wait_batch(&client, &base2, &id2, Duration::from_secs(60), started).await;
    let resp = client
        .post(format!("{base2}/v1/batches/{id2}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let canceled = wait_batch(&client, &base2, &id2, Duration::from_secs(60), never).await;
    assert_eq!(canceled["state"], "canceled", "{canceled}");
    let ran = canceled["counts"]["succeeded"].as_u64().unwrap();
    assert!(ran >= 2 && (ran as usize) < N, "{canceled}");
    let partial = read_lines(&root.join("out2/prediction.results-00000-of-00001"));
    assert_eq!(partial.len() as u64, ran);
    let resp = client
        .post(format!("{base2}/v1/batches/{id2}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409, "a finished batch cannot be canceled");

    api2.stop(Duration::from_secs(10)).unwrap();
    worker.stop().await;
    ns.cleanup().await;
    let _ = std::fs::remove_dir_all(&root);
}

/// A batch over a `gs://` prefix on the GCS emulator (gcp-storage-emulator
/// from PyPI): listing, results written back to a bucket with the input
/// hierarchy mirrored, and a signed `batch.succeeded` webhook at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_prefix_batch_writes_back_to_a_bucket_and_notifies() {
    use inferq_tests::emulators::{Emulator, Kind, emulators_available};
    use inferq_tests::receiver::{Receiver, verify_with_python};
    if !services_available() || !emulators_available() {
        return;
    }
    if std::env::var_os("INFERQ_TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter("info").try_init();
    }
    let emu = Emulator::start(Kind::Gcs).await;
    emu.create_bucket("photos").await;
    emu.create_bucket("results").await;
    emu.upload("photos", "2026/11/red.png", solid_png(24, 24, [255, 0, 0]))
        .await;
    emu.upload("photos", "2026/12/blue.png", solid_png(24, 24, [0, 0, 255]))
        .await;
    emu.upload("photos", "2026/12/broken.png", b"garbage".to_vec())
        .await;
    emu.upload("photos", "elsewhere/skip.png", solid_png(4, 4, [0, 0, 0]))
        .await;
    let receiver = Receiver::start().await;
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([42u8; 32])
    );
    let storage = [
        "--gcs-endpoint",
        emu.endpoint.as_str(),
        "--fetch-allow-buckets",
        "photos,results",
        "--fetch-allow-hosts",
        "127.0.0.1",
        "--webhook-secrets",
        secret.as_str(),
    ];
    let repo = private_repository("tiny-mean", "batch-gcs");
    let ns = Namespace::new();
    let api = start_api(&ns, &repo, "tiny-mean", &storage).await;
    let mut worker_flags = vec!["--threads", "1"];
    worker_flags.extend(storage);
    let worker = start_worker(&ns, &repo, &worker_flags).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let (status, b, _) = post_batch(
        &client,
        &base,
        &json!({"input": {"prefix": "gs://photos/2026/"},
                "output": {"prefix": "gs://results/run/"},
                "webhook": {"url": receiver.url("/batch")}}),
        None,
    )
    .await;
    assert_eq!(status, 202, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let done = wait_batch(&client, &base, &id, Duration::from_secs(60), never).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        done["counts"],
        json!({"total": 3, "succeeded": 2, "failed": 1})
    );
    let (_, results) = emu
        .download("results", "run/prediction.results-00000-of-00001")
        .await;
    let lines: Vec<Value> = String::from_utf8(results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["instance"]["uri"], "gs://photos/2026/11/red.png");
    assert_eq!(lines[1]["instance"]["uri"], "gs://photos/2026/12/blue.png");
    let (_, errors) = emu
        .download("results", "run/prediction.errors-00000-of-00001")
        .await;
    assert!(
        String::from_utf8(errors)
            .unwrap()
            .contains("gs://photos/2026/12/broken.png")
    );
    let (_, mirrored) = emu.download("results", "run/11/red.png.json").await;
    assert!(String::from_utf8(mirrored).unwrap().contains("top_k"));

    let got = receiver
        .wait_for("/batch", 1, Duration::from_secs(30))
        .await;
    assert_eq!(
        got[0].headers["webhook-id"],
        format!("batch_{id}_succeeded_0")
    );
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["type"], "batch.succeeded");
    assert_eq!(body["data"]["counts"]["failed"], 1);
    assert_eq!(verify_with_python(&secret, &got)[0]["verified"], true);
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = get_batch(&client, &base, &id).await;
        if shown["webhook"]["delivery"]["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        shown["webhook"]["delivery"]["state"], "delivered",
        "{shown}"
    );

    worker.stop().await;
    api.stop().await;
    ns.cleanup().await;
}
