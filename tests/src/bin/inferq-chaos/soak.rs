//! Soak mode: does memory stay flat over many jobs?
//!
//! Closed-loop clients (the same submit-and-wait as `inferq-load`) run
//! `--checkpoint` jobs, then the load pauses, in-flight jobs finish, and the
//! resident set size (VmRSS) of the API and of each worker is sampled. The
//! same happens again after `--jobs` jobs in total. Sampling at rest, not
//! under load, compares like with like: what a process still holds after
//! its work is done. A process whose RSS grew by more than
//! `--max-growth-pct` between the two samples fails the run. Early growth
//! (allocator arenas filling, ONNX Runtime's first-run allocations) is
//! over before the first sample; a per-job leak of a tensor (~600 KB for a
//! 224×224 float image) would show as gigabytes by the second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Deployment, secs};
use inferq_tests::cluster::rss_kib;
use inferq_tests::load::{one_job, submit_url};

#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// Jobs in total; memory is sampled again after the last one.
    #[arg(long, default_value_t = 100_000)]
    jobs: u64,
    /// Jobs after which memory is sampled the first time.
    #[arg(long, default_value_t = 10_000)]
    checkpoint: u64,
    /// Largest allowed RSS growth between the two samples, in percent.
    #[arg(long, default_value_t = 5.0)]
    max_growth_pct: f64,
}

/// Counters shared by the clients.
#[derive(Default)]
struct Progress {
    claimed: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
}

/// Runs jobs with `concurrency` closed-loop clients until `target` jobs (in
/// total, since the start) are done, printing progress.
async fn load_until(
    d: &Arc<Deployment>,
    p: &Arc<Progress>,
    target: u64,
    concurrency: usize,
    t0: Instant,
) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("http client");
    let url = submit_url(&d.api_url, None);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, d, p) = (client.clone(), url.clone(), d.clone(), p.clone());
        tasks.spawn(async move {
            loop {
                let i = p.claimed.fetch_add(1, Ordering::Relaxed);
                if i >= target {
                    p.claimed.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                let image = &d.images[i as usize % d.images.len()];
                if let Err(e) = one_job(&client, &url, &d.api_url, image).await
                    && p.errors.fetch_add(1, Ordering::Relaxed) < 5
                {
                    eprintln!("soak: job error: {e}");
                }
                p.done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    tick.tick().await;
    let mut last = (Instant::now(), p.done.load(Ordering::Relaxed));
    loop {
        tokio::select! {
            r = tasks.join_next() => if r.is_none() { break },
            _ = tick.tick() => {
                let done = p.done.load(Ordering::Relaxed);
                let rate = (done - last.1) as f64 / last.0.elapsed().as_secs_f64();
                eprintln!("[{:6.1}s] {done} jobs done, {rate:.0}/s", secs(t0));
                last = (Instant::now(), done);
            }
        }
    }
}

/// RSS in KiB of (name, pid) for the API and every worker.
fn sample(d: &Deployment) -> Vec<(String, Option<u64>)> {
    let c = d.cluster.lock().unwrap();
    std::iter::once(&c.api)
        .chain(c.workers.iter())
        .map(|p| (p.name.clone(), p.pid().and_then(rss_kib)))
        .collect()
}

/// Runs the soak and prints the comparison; `Ok(true)` if no process grew
/// beyond the limit and no job failed.
pub(crate) async fn run(
    d: Arc<Deployment>,
    args: &SoakArgs,
    concurrency: usize,
) -> anyhow::Result<bool> {
    anyhow::ensure!(
        args.checkpoint > 0 && args.checkpoint < args.jobs,
        "--checkpoint must be between 1 and --jobs"
    );
    let t0 = Instant::now();
    let p = Arc::new(Progress::default());
    let settle = Duration::from_secs(2);
    eprintln!(
        "soak: {} jobs ({} clients, model {}), memory sampled after {} and {}",
        args.jobs, concurrency, d.model, args.checkpoint, args.jobs
    );
    load_until(&d, &p, args.checkpoint, concurrency, t0).await;
    tokio::time::sleep(settle).await;
    let early = sample(&d);
    let early_secs = secs(t0);
    load_until(&d, &p, args.jobs, concurrency, t0).await;
    let total_secs = secs(t0);
    tokio::time::sleep(settle).await;
    let late = sample(&d);

    let errors = p.errors.load(Ordering::Relaxed);
    let late_jobs = args.jobs - args.checkpoint;
    println!(
        "soak: jobs={} errors={errors} model={} throughput={:.0}/s (after the checkpoint)",
        args.jobs,
        d.model,
        late_jobs as f64 / (total_secs - early_secs)
    );
    let mut ok = errors == 0;
    for ((name, a), (_, b)) in early.iter().zip(&late) {
        let (Some(a), Some(b)) = (a, b) else {
            println!("  {name}: process not running at a sample");
            ok = false;
            continue;
        };
        let growth = 100.0 * (*b as f64 - *a as f64) / *a as f64;
        let verdict = if growth > args.max_growth_pct {
            ok = false;
            "FAIL"
        } else {
            "ok"
        };
        println!(
            "  {name:<9} rss after {}: {:>7.1} MiB  after {}: {:>7.1} MiB  change {growth:+.2}%  {verdict}",
            args.checkpoint,
            *a as f64 / 1024.0,
            args.jobs,
            *b as f64 / 1024.0
        );
    }
    println!(
        "soak: {} (limit +{}%)",
        if ok { "PASS" } else { "FAIL" },
        args.max_growth_pct
    );
    Ok(ok)
}
