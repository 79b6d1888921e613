//! Workers die; jobs do not. Workers run as separate processes here so they
//! can be killed with SIGKILL (no chance to clean up) or asked to drain with
//! SIGTERM.

use std::collections::HashSet;
use std::time::Duration;

use inferq_tests::*;

const JOBS: usize = 40;

/// Submits `JOBS` jobs for the ~28 ms tiny-slow model.
async fn submit_slow_jobs(client: &reqwest::Client, base: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let rgb = [(i * 5) as u8, 0, 255];
        let (status, body) = submit(
            client,
            base,
            "?model=tiny-slow",
            "image/png",
            solid_png(32, 32, rgb),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Counts jobs currently in each state.
async fn statuses(client: &reqwest::Client, base: &str, ids: &[String]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for id in ids {
        let body: serde_json::Value = client
            .get(format!("{base}/v1/jobs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.push(body);
    }
    out
}

/// Waits until at least `n` of the jobs have succeeded.
async fn wait_for_successes(client: &reqwest::Client, base: &str, ids: &[String], n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let all = statuses(client, base, ids).await;
        if all.iter().filter(|j| j["status"] == "succeeded").count() >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never processed {n} jobs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One worker process (1 thread, prefetch 2) per test run.
const FLAGS: [&str; 4] = ["--threads", "1", "--prefetch", "2"];

/// An API, a worker process and `JOBS` slow jobs, `successes` of them done.
struct Scenario {
    ns: Namespace,
    api: InProcess,
    client: reqwest::Client,
    base: String,
    ids: Vec<String>,
    worker: WorkerProcess,
}

async fn mid_stream(log: &str, successes: usize) -> Scenario {
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let worker = WorkerProcess::spawn(&ns, &test_models(), &FLAGS, &log_path(log));
    let ids = submit_slow_jobs(&client, &base).await;
    wait_for_successes(&client, &base, &ids, successes).await;
    Scenario {
        ns,
        api,
        client,
        base,
        ids,
        worker,
    }
}

fn log_path(name: &str) -> std::path::PathBuf {
    let dir = root().join("target/test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_worker_loses_no_job() {
    if !services_available() {
        return;
    }
    // Wait until the victim is mid-stream, then kill it without warning.
    let Scenario {
        ns,
        api,
        client,
        base,
        ids,
        worker: mut victim,
    } = mid_stream("sigkill-victim.log", 5).await;
    let flags = FLAGS;
    victim.signal(libc::SIGKILL);
    victim.wait_exit(Duration::from_secs(10)).expect("killed");
    let before: HashSet<String> = statuses(&client, &base, &ids)
        .await
        .iter()
        .filter(|j| j["status"] == "running")
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !before.is_empty() || ids.len() == JOBS,
        "nothing in flight when killed"
    );

    // A survivor picks up everything, including what the victim held.
    let survivor = WorkerProcess::spawn(
        &ns,
        &test_models(),
        &flags,
        &log_path("sigkill-survivor.log"),
    );
    let mut retried = 0;
    for id in &ids {
        let job = wait_terminal(&client, &base, id, Duration::from_secs(120)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        if job["attempts"].as_u64().unwrap() > 1 {
            retried += 1;
        }
    }
    // The jobs the victim had started ran again on the survivor.
    assert!(
        retried >= 1,
        "no job was retried; in flight at kill: {before:?}"
    );
    for id in &before {
        let job: serde_json::Value = client
            .get(format!("{base}/v1/jobs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(job["attempts"].as_u64().unwrap() >= 2, "{job}");
    }
    eprintln!("sigkill: {JOBS} jobs all succeeded; {retried} ran twice");
    drop(survivor);
    api.stop().await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_jobs_and_exits() {
    if !services_available() {
        return;
    }
    let Scenario {
        ns,
        api,
        client,
        base,
        ids,
        mut worker,
    } = mid_stream("sigterm-worker.log", 3).await;
    let flags = FLAGS;
    worker.signal(libc::SIGTERM);
    let status = worker
        .wait_exit(Duration::from_secs(30))
        .expect("worker exits after draining");
    assert!(status.success(), "worker exit status {status}");

    // Nothing it started was abandoned: no job is left running.
    let after = statuses(&client, &base, &ids).await;
    let running: Vec<_> = after.iter().filter(|j| j["status"] == "running").collect();
    assert!(running.is_empty(), "left running after drain: {running:?}");
    let finished = after.iter().filter(|j| j["status"] == "succeeded").count();
    assert!(
        finished < JOBS,
        "the worker should have stopped consuming before the end"
    );

    // The rest is still queued and a new worker finishes it, each job once.
    let _next = WorkerProcess::spawn(&ns, &test_models(), &flags, &log_path("sigterm-next.log"));
    for id in &ids {
        let job = wait_terminal(&client, &base, id, Duration::from_secs(120)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["attempts"], 1, "drained jobs must not run twice: {job}");
    }
    api.stop().await;
    ns.cleanup().await;
}
