//! Many HTTP/2 streams on one cleartext connection (h2c with prior
//! knowledge), driven by httpx (scripts/h2_streams.py) against the embedded
//! server: 150 submissions at once, then 16 long-polls at once on a job
//! still queued behind them, then KServe v2 inference per colour — all on a
//! client allowed a single connection.
//!
//! What it shows: the server multiplexes. Each long-poll waits its whole
//! second because the job is still queued, and the 16 of them end together
//! after about one second; answered one stream at a time they would take
//! 16. The v2 answers over h2c equal the HTTP/1.1 answers for the same
//! images. (The per-stream and per-connection window bounds are unit-level
//! settings of the accept loop, api/src/http/server.rs.)

use inferq_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_share_one_h2c_connection() {
    let python = test_python();
    if !python.is_file() || !ort_library().is_file() {
        assert!(
            std::env::var("INFERQ_TEST_REQUIRE_SERVICES").is_err(),
            "{} or ONNX Runtime missing: run `make test-venv` and `make assets`",
            python.display()
        );
        eprintln!("SKIPPED: no test venv or ONNX Runtime");
        return;
    }
    // One inference thread and the ~28 ms model: 150 jobs are seconds of
    // backlog, so the long-polled job stays queued for the whole wait.
    let server = start_embedded(&test_models(), "tiny-slow", &["--threads", "1"]).await;
    let url = server.url();
    let args = [
        "--url",
        &url,
        "--model",
        "tiny-slow",
        "--jobs",
        "150",
        "--polls",
        "16",
    ]
    .into_iter()
    .chain(["--wait", "1"])
    .map(String::from)
    .collect();
    let r = run_json_script(python, "h2_streams.py", args).await;
    eprintln!("{r}");

    for (what, status) in [("submit", 202), ("poll", 200), ("infer", 200)] {
        assert_eq!(
            r[format!("{what}_statuses")],
            json!([status]),
            "{what}: {r}"
        );
        assert_eq!(
            r[format!("{what}_versions")],
            json!(["HTTP/2"]),
            "{what}: {r}"
        );
    }
    // Every poll waited out its second on a job that was not final yet…
    let states = r["poll_job_states"].as_array().unwrap();
    assert!(
        states.iter().all(|s| s == "queued" || s == "running"),
        "{r}"
    );
    assert!(r["poll_min_secs"].as_f64().unwrap() >= 0.9, "{r}");
    // …and the 16 seconds of waiting overlapped on the one connection.
    let polls = r["polls_secs"].as_f64().unwrap();
    assert!(
        polls < 8.0,
        "16 one-second polls took {polls:.1} s: not multiplexed"
    );
    assert_eq!(r["same_as_http1"], json!([true, true, true, true]), "{r}");

    server.stop().await;
}
