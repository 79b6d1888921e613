//! `inferq-worker --processes 2`: one worker process per core, supervised.
//! Killing one process must lose no job, must not stop the other core, and
//! must be followed by a restart that takes jobs again; SIGTERM to the
//! supervisor must drain both processes and leave none behind.

use std::time::{Duration, Instant};

use inferq_tests::*;

/// ~28 ms per job: two processes take ~70 jobs/s.
const FIRST_WAVE: usize = 160;
const SECOND_WAVE: usize = 40;

async fn submit_slow(client: &reqwest::Client, base: &str, n: usize, ids: &mut Vec<String>) {
    for i in 0..n {
        let rgb = [(i * 3) as u8, 20, 200];
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
}

/// The supervised processes: (index from `--supervised-child`, pid).
fn children_of(supervisor: u32) -> Vec<(usize, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so cut at the last ')'.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid != supervisor {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if let Some(i) = args.iter().position(|a| a == "--supervised-child") {
            let index = args[i + 1].split(':').next().unwrap().parse().unwrap();
            out.push((index, pid));
        }
    }
    out.sort();
    out
}

fn is_zombie_or_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'),
        Err(_) => true,
    }
}

async fn metrics(url: &str) -> Option<String> {
    let resp = reqwest::get(url).await.ok()?;
    if resp.status() != 200 {
        return None;
    }
    resp.text().await.ok()
}

/// Sum of one process's completed jobs in the supervisor's merged metrics.
fn completed(text: &str, process: usize) -> u64 {
    let prefix = format!("inferq_jobs_completed_total{{process=\"{process}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_process_loses_no_job_and_it_comes_back() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let api = start_api(&ns, &test_models(), "tiny-mean", &[]).await;
    let client = reqwest::Client::new();
    let base = api.url();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let log = root().join("target/test-logs");
    std::fs::create_dir_all(&log).unwrap();
    let mut sup = WorkerProcess::spawn(
        &ns,
        &test_models(),
        &[
            "--processes",
            "2",
            "--prefetch",
            "2",
            "--metrics-listen",
            &listen,
        ],
        &log.join("supervisor.log"),
    );
    let sup_pid = sup.child.id();
    let url = format!("http://{listen}/metrics");

    // The supervisor's /metrics opens once both processes are up.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics(&url).await.is_none() {
        assert!(Instant::now() < deadline, "supervisor metrics never opened");
        assert!(sup.child.try_wait().unwrap().is_none(), "supervisor exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = children_of(sup_pid);
    assert_eq!(before.len(), 2, "two worker processes: {before:?}");
    let (victim_index, victim) = before[0];
    let (survivor_index, survivor) = before[1];

    let mut ids = Vec::new();
    submit_slow(&client, &base, FIRST_WAVE, &mut ids).await;
    // Both processes are busy before the kill.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics(&url).await.unwrap_or_default();
        if completed(&text, victim_index) >= 5 && completed(&text, survivor_index) >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "processes never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let text = metrics(&url).await.unwrap();
    let survivor_done_at_kill = completed(&text, survivor_index);
    send_signal(victim, libc::SIGKILL).unwrap();

    // The supervisor starts a new process in the victim's slot.
    let deadline = Instant::now() + Duration::from_secs(30);
    let replacement = loop {
        let now = children_of(sup_pid);
        if let Some((_, pid)) = now.iter().find(|(i, p)| *i == victim_index && *p != victim) {
            break *pid;
        }
        assert!(
            Instant::now() < deadline,
            "no replacement for the killed process: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // While the slot was empty, the other core kept completing jobs. Its
    // port answers directly (the configured port + 1 + its index).
    let survivor_url = format!(
        "http://127.0.0.1:{}/metrics",
        port + 1 + survivor_index as u16
    );
    let survivor_text = metrics(&survivor_url).await.expect("survivor metrics");
    let survivor_done_in_gap = survivor_text
        .lines()
        .filter(|l| l.starts_with("inferq_jobs_completed_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64;
    assert!(
        survivor_done_in_gap > survivor_done_at_kill,
        "the surviving process stalled: {survivor_done_at_kill} -> {survivor_done_in_gap}"
    );

    // More work arrives; the replacement takes its share.
    submit_slow(&client, &base, SECOND_WAVE, &mut ids).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics(&url).await.unwrap_or_default();
        if completed(&text, victim_index) > 0
            && text.contains(&format!(
                "inferq_worker_process_restarts_total{{process=\"{victim_index}\"}} 1"
            ))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replacement never completed a job:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every accepted job succeeded; what the victim held ran again.
    let mut retried = 0;
    for id in &ids {
        let job = wait_terminal(&client, &base, id, Duration::from_secs(120)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        if job["attempts"].as_u64().unwrap() > 1 {
            retried += 1;
        }
    }
    assert!(retried >= 1, "the killed process held no job");
    let after = children_of(sup_pid);
    assert_eq!(
        after,
        vec![(victim_index, replacement), (survivor_index, survivor)],
        "only the killed process was replaced"
    );
    eprintln!(
        "supervisor: {} jobs all succeeded, {retried} ran twice; survivor {} -> {} jobs while the slot was empty",
        ids.len(),
        survivor_done_at_kill,
        survivor_done_in_gap
    );

    // SIGTERM drains both processes and the supervisor exits cleanly.
    sup.signal(libc::SIGTERM);
    let status = sup
        .wait_exit(Duration::from_secs(60))
        .expect("supervisor exits after draining");
    assert!(status.success(), "supervisor exit status {status}");
    for (_, pid) in after {
        assert!(
            is_zombie_or_gone(pid),
            "process {pid} outlived the supervisor"
        );
    }
    api.stop().await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_stop_when_the_supervisor_is_killed() {
    if !services_available() {
        return;
    }
    let ns = Namespace::new();
    let log = root().join("target/test-logs");
    std::fs::create_dir_all(&log).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut sup = WorkerProcess::spawn(
        &ns,
        &test_models(),
        &["--processes", "auto", "--metrics-listen", &listen],
        &log.join("supervisor-killed.log"),
    );
    let sup_pid = sup.child.id();
    let url = format!("http://{listen}/metrics");
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics(&url).await.is_none() {
        assert!(Instant::now() < deadline, "supervisor metrics never opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let children = children_of(sup_pid);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(children.len(), cores, "auto: one process per core");
    sup.signal(libc::SIGKILL);
    sup.wait_exit(Duration::from_secs(10)).expect("killed");
    // Orphans are told to drain (SIGTERM on the parent's death) and exit.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !children.iter().all(|(_, pid)| is_zombie_or_gone(*pid)) {
        assert!(
            Instant::now() < deadline,
            "orphaned worker processes kept running: {children:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ns.cleanup().await;
}
