//! A burst of maximum-size JSON tensor requests stays within a stated
//! memory bound: eight `:predict` bodies of numeric tensors at once, then
//! eight KServe v2 JSON bodies at once, each just under the default JSON
//! body limit (about 25 MB of numbers), against the embedded server
//! (`inferq`, the `tiny-mean` model) running as its own process.
//!
//! Every request gets either its correct answer or a clean `503` problem
//! with `Retry-After` (the body budget's overload answer). The server's peak
//! RSS (`VmHWM`, reset between the two bursts through
//! `/proc/<pid>/clear_refs`) must stay under [`BOUND_MB`]. The budget is set
//! to 64 MiB through `INFERQ_BODY_BUDGET_MIB`, so two of these bodies are
//! parsed at once and the others wait.
//!
//! Before the typed parsing and the budget, `:predict` parsed bodies into
//! `serde_json::Value` (32+ bytes per number) and nothing bounded the
//! bodies held at once: this burst took the process to 600 MB (563 MB for
//! KServe, which already streamed its numbers, but as `f64`), against
//! 150 MB (191 MB) now, from 42 MB idle.
//! `INFERQ_MEMORY_TEST_BIN=<path>` runs the same measurement against another
//! `inferq` binary (e.g. one built from an older commit) and only prints.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use inferq_tests::*;
use serde_json::Value;

/// Peak RSS allowed, in MB, for either burst.
const BOUND_MB: u64 = 300;
/// Requests per burst.
const BURST: usize = 8;
/// Instances per request: 28 tensors of 3 × 224 × 224 numbers written as
/// `0.ddd,` take 25.3 MB, under the default JSON limit of 26.7 MiB.
const INSTANCES: usize = 28;

fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// `n` numbers in [0, 1) as `0.ddd`, comma-separated, nested `[3][224][224]`
/// when `nested`.
fn numbers(out: &mut String, seed: usize, nested: bool) {
    use std::fmt::Write;
    if nested {
        out.push('[');
    }
    for c in 0..3 {
        if nested {
            out.push_str(if c == 0 { "[" } else { ",[" });
        } else if c > 0 {
            out.push(',');
        }
        for y in 0..224 {
            if nested {
                out.push_str(if y == 0 { "[" } else { ",[" });
            } else if y > 0 {
                out.push(',');
            }
            for x in 0..224 {
                if x > 0 {
                    out.push(',');
                }
                let v = (seed + c * 7 + y * 13 + x * 31) % 1000;
                write!(out, "0.{v:03}").unwrap();
            }
            if nested {
                out.push(']');
            }
        }
        if nested {
            out.push(']');
        }
    }
    if nested {
        out.push(']');
    }
}

fn predict_body() -> bytes::Bytes {
    let mut s = String::with_capacity(26 << 20);
    s.push_str(r#"{"instances":["#);
    for i in 0..INSTANCES {
        if i > 0 {
            s.push(',');
        }
        numbers(&mut s, i, true);
    }
    s.push_str("]}");
    s.into()
}

fn kserve_body() -> bytes::Bytes {
    let mut s = String::with_capacity(26 << 20);
    s.push_str(&format!(
        r#"{{"inputs":[{{"name":"input","shape":[{INSTANCES},3,224,224],"datatype":"FP32","data":["#
    ));
    for i in 0..INSTANCES {
        if i > 0 {
            s.push(',');
        }
        numbers(&mut s, i, false);
    }
    s.push_str("]}]}");
    s.into()
}

/// What one request of a burst got: `true` for an answer, `false` for a
/// clean overload problem; anything else fails the test.
async fn post(client: &reqwest::Client, url: String, body: bytes::Bytes, kserve: bool) -> bool {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().contains_key("retry-after");
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = resp.json().await.unwrap();
    match status {
        200 if kserve => {
            let out = &body["outputs"][0];
            assert_eq!(out["shape"][0], INSTANCES as u64, "{out}");
            true
        }
        200 => {
            let p = body["predictions"].as_array().unwrap();
            assert_eq!(p.len(), INSTANCES);
            assert_eq!(p[0]["kind"], "classification", "{}", p[0]);
            true
        }
        503 | 429 => {
            assert!(retry_after, "{status} without Retry-After: {body}");
            assert_eq!(content_type, "application/problem+json", "{body}");
            assert_eq!(body["code"], "overloaded", "{body}");
            false
        }
        _ => panic!("unexpected {status}: {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_maximum_size_tensor_bodies_stays_under_the_bound() {
    if !models_ready() {
        return;
    }
    let repo = private_repository("tiny-mean", "body-budget");
    let other = std::env::var_os("INFERQ_MEMORY_TEST_BIN");
    let bin = other
        .clone()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| binary("inferq"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = repo.join("server.log");
    let child = Command::new(&bin)
        .args(["--ort-library", &ort_library().display().to_string()])
        .args(["--model-dir", &repo.display().to_string()])
        .args(["--default-model", "tiny-mean"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", ""])
        .args(["--threads", "1", "--pin-threads", "false"])
        .env("INFERQ_BODY_BUDGET_MIB", "64")
        .env("INFERQ_REQUEST_TIMEOUT_SECS", "60")
        .env("INFERQ_MAX_WAIT_SECS", "60")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn inferq");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(child);
    let pid = child.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("inferq exited ({status}); log in {}", log.display());
        }
        assert!(
            Instant::now() < deadline,
            "inferq not ready; log in {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle_mb = status_kb(pid, "VmRSS:") / 1024;

    let mut peaks = Vec::new();
    for (name, body, url, kserve) in [
        (
            ":predict",
            predict_body(),
            format!("{base}/v1/models/tiny-mean:predict"),
            false,
        ),
        (
            "v2 infer",
            kserve_body(),
            format!("{base}/v2/models/tiny-mean/infer"),
            true,
        ),
    ] {
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
        let t = Instant::now();
        let tasks: Vec<_> = (0..BURST)
            .map(|_| {
                let (client, url, body) = (client.clone(), url.clone(), body.clone());
                tokio::spawn(async move { post(&client, url, body, kserve).await })
            })
            .collect();
        let mut answered = 0;
        for task in tasks {
            answered += task.await.unwrap() as usize;
        }
        let peak_mb = status_kb(pid, "VmHWM:") / 1024;
        eprintln!(
            "{name:<9} {BURST} x {:.1} MB at once: {answered} answered, {} shed; peak RSS {peak_mb} MB ({:.1}s)",
            body.len() as f64 / 1e6,
            BURST - answered,
            t.elapsed().as_secs_f64()
        );
        assert!(answered > 0, "{name}: every request was shed");
        peaks.push((name, peak_mb));
    }
    drop(child);
    eprintln!("idle RSS {idle_mb} MB; bound {BOUND_MB} MB");
    if other.is_some() {
        return; // measuring another binary: numbers only
    }
    for (name, peak) in peaks {
        assert!(
            peak <= BOUND_MB,
            "{name}: peak RSS {peak} MB above {BOUND_MB} MB"
        );
    }
}

/// The test model and ONNX Runtime are there (or, under `make test`, must be).
fn models_ready() -> bool {
    let there = test_models().join("tiny-mean/1/model.onnx").is_file();
    assert!(
        there || std::env::var_os("INFERQ_TEST_REQUIRE_MODELS").is_none(),
        "tests/models/tiny-mean is missing (make test-models)"
    );
    there
}
