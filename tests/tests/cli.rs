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

/// `inferq --help` lists every command; `inferq serve …` runs the embedded
/// server; `submit -` reads the image from standard input, with the
/// documented exit statuses for `submit --wait` and `get`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_stdin_and_exit_statuses() {
    let help = Command::new(binary("inferq"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for c in ["serve", "submit", "get", "batch", "models", "Exit status"] {
        assert!(help.contains(c), "{c} missing from:\n{help}");
    }

    let repo = private_repository("tiny-mean", "cli-serve");
    let port = inferq_tests::cluster::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut server = Command::new(binary("inferq"))
        .args(["serve", "--listen", &listen, "--metrics-listen", ""])
        .args(["--ort-library", &ort_library().display().to_string()])
        .args(["--model-dir", &repo.display().to_string()])
        .args(["--default-model", "tiny-mean", "--threads", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    let ready = async {
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), ready)
        .await
        .expect("inferq serve answers /readyz");

    let b = base.clone();
    let (code, jobs, err) = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(binary("inferq"))
            .args(["submit", "--wait", "-"])
            .env("INFERQ_URL", &b)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&solid_png(8, 8, [0, 255, 0]))
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let docs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), docs, err)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(jobs[0]["status"], "succeeded", "{jobs:?}");
    assert_eq!(jobs[0]["input"]["width"], 8);

    // A PNG whose header passes the API's check but whose pixel data is
    // cut off: the job fails, and `submit --wait` and `get` agree on 1.
    let bad = std::env::temp_dir().join(format!("inferq-cli-bad-{port}.png"));
    let png = solid_png(64, 64, [9, 9, 9]);
    std::fs::write(&bad, &png[..png.len() / 2]).unwrap();
    let (b, bad_s) = (base.clone(), bad.display().to_string());
    let (code, jobs, err) =
        tokio::task::spawn_blocking(move || inferq(&b, &["submit", "--wait", &bad_s]))
            .await
            .unwrap();
    assert_eq!(code, 1, "{err}");
    assert_eq!(jobs[0]["status"], "failed");
    let (b, id) = (base.clone(), jobs[0]["id"].as_str().unwrap().to_owned());
    let (code, _, _) = tokio::task::spawn_blocking(move || inferq(&b, &["get", &id]))
        .await
        .unwrap();
    assert_eq!(code, 1);
    // Unreachable API: a refused request, status 2.
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        inferq(
            "http://127.0.0.1:9",
            &["get", "00000000-0000-4000-8000-000000000001"],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 2, "{err}");
    let _ = std::fs::remove_file(bad);
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = std::fs::remove_dir_all(repo);
}

/// `--output DIR` saves each job's image output under its input's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submit_saves_image_outputs() {
    let repo = std::env::temp_dir().join(format!("inferq-cli-img-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(repo.join("tiny-invert/1")).unwrap();
    for f in ["model.onnx", "model.toml"] {
        std::fs::copy(
            test_models().join("tiny-invert/1").join(f),
            repo.join("tiny-invert/1").join(f),
        )
        .unwrap();
    }
    let server = start_embedded(&repo, "tiny-invert", &["--threads", "1"]).await;
    let dir = repo.join("saved");
    let inputs = repo.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::write(inputs.join("red.png"), solid_png(40, 30, [255, 0, 0])).unwrap();
    std::fs::write(inputs.join("blue.png"), solid_png(40, 30, [0, 0, 255])).unwrap();
    let args: Vec<String> = vec![
        "submit".into(),
        "--output".into(),
        dir.display().to_string(),
        inputs.join("red.png").display().to_string(),
        inputs.join("blue.png").display().to_string(),
    ];
    let b = server.url();
    let (code, jobs, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        inferq(&b, &args)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        jobs.len(),
        2,
        "--output DIR waits and prints the final records"
    );
    assert!(err.contains("saved 2 image outputs"), "{err}");
    // The negative of red is cyan.
    let saved = image::open(dir.join("red.png")).unwrap().to_rgb8();
    let p = saved.get_pixel(saved.width() / 2, saved.height() / 2);
    assert!(p[0] < 30 && p[1] > 225 && p[2] > 225, "{p:?}");
    assert!(dir.join("blue.png").is_file());
    server.stop().await;
    let _ = std::fs::remove_dir_all(repo);
}

/// A 429/503 is retried after its Retry-After with the same
/// Idempotency-Key (a fake API answers 503 once, then accepts).
#[test]
fn submit_retries_after_retry_after_with_the_same_key() {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let mut keys = Vec::new();
        for answer in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut length, mut key) = (0usize, String::new());
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if let Some(v) = lower.strip_prefix("idempotency-key:") {
                    key = v.trim().to_owned();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            keys.push(key);
            let (status, extra, body) = if answer == 0 {
                (
                    "503 Service Unavailable",
                    "Retry-After: 1\r\nContent-Type: application/problem+json\r\n",
                    r#"{"code":"unavailable","detail":"broker away"}"#,
                )
            } else {
                (
                    "202 Accepted",
                    "Content-Type: application/json\r\n",
                    r#"{"id":"00000000-0000-4000-8000-000000000001","status":"queued"}"#,
                )
            };
            let mut s = stream;
            write!(
                s,
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
        keys
    });
    let started = std::time::Instant::now();
    let dir = std::env::temp_dir().join(format!("inferq-cli-retry-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("a.png");
    std::fs::write(&img, solid_png(4, 4, [1, 2, 3])).unwrap();
    let (code, docs, err) = inferq(&base, &["submit", &img.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(docs[0]["status"], "queued");
    assert!(err.contains("503") && err.contains("retrying"), "{err}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    let keys = server.join().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(!keys[0].is_empty() && keys[0] == keys[1], "{keys:?}");
    let _ = std::fs::remove_dir_all(dir);
}
