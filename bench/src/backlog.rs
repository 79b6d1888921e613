//! Throughput with a standing backlog: does the production path hold its
//! rate when the queue is deep?
//!
//! The API starts alone (no workers) and `--backlog` jobs (10,000 by
//! default) of the first bench image are submitted; then the workers are
//! started (pinned as in the service phase, the shipped `max_batch`) and
//! `GET /v1/stats` (`totals.backlog`: accepted and not final) is polled
//! until it reaches zero. Reported: the submit rate, the drain time from the
//! workers' spawn, the rate from the workers being ready to drained, the
//! steady rate between 90 % and 10 % of the backlog left, each group's CPU
//! per job while draining, and RabbitMQ's and Redis' RSS over the phase
//! (the jobs' images sit in the queue meanwhile). The run report compares
//! the steady rate with the closed-loop saturation rate of the service
//! phase.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::cli::Settings;
use crate::deploy::{Deployment, check_running, read_log, ready_line};
use crate::images::BenchImage;
use crate::loadgen::{SubmitBody, http_client, submit_only};
use crate::procs::{CpuBreakdown, CpuMeter, ProcGroup, broker_pids};
use crate::resources::{MemoryReport, RssSampler};
use crate::table::{Table, num, pct, sig};

/// The backlog phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BacklogReport {
    pub image: String,
    pub jobs: u64,
    pub workers: usize,
    pub max_batch: usize,
    /// Submitting the backlog (API only).
    pub submit_secs: f64,
    pub submit_per_sec: f64,
    pub submit_errors: u64,
    /// Worker spawn → every worker logged ready.
    pub ready_secs: Option<f64>,
    /// Worker spawn → backlog 0.
    pub drain_secs: f64,
    /// jobs ÷ (drain − ready).
    pub per_sec: f64,
    /// Rate between 90 % and 10 % of the backlog left.
    pub steady_per_sec: Option<f64>,
    /// steady (or overall) rate ÷ the closed-loop saturation of the service
    /// phase for the same image and max_batch (filled in by the run).
    pub ratio_to_closed_loop: Option<f64>,
    /// CPU per group while draining.
    pub cpu: CpuBreakdown,
    /// RSS of RabbitMQ and Redis over the whole phase.
    pub brokers: MemoryReport,
}

/// How often the backlog is read while draining.
const POLL: Duration = Duration::from_millis(250);

pub(crate) async fn run(
    settings: &Settings,
    image: &BenchImage,
    worker_flags: Vec<Vec<String>>,
    max_batch: usize,
) -> anyhow::Result<BacklogReport> {
    let mut dep = Deployment::start(settings, "backlog", Vec::new())?;
    let result = measure(settings, image, worker_flags, max_batch, &mut dep).await;
    eprintln!("backlog: deleting the queue");
    dep.finish().await;
    result
}

async fn measure(
    settings: &Settings,
    image: &BenchImage,
    worker_flags: Vec<Vec<String>>,
    max_batch: usize,
    dep: &mut Deployment,
) -> anyhow::Result<BacklogReport> {
    let client = http_client();
    dep.wait_ready(&client).await?;
    let base: Arc<str> = dep.api_url().into();
    let brokers = broker_pids();
    let rss = RssSampler::start(brokers.clone(), Duration::from_millis(100));
    let jobs = settings.backlog_jobs;
    eprintln!("backlog: submitting {jobs} jobs of {}", image.name);
    let (submit_secs, submit_errors) = submit_n(
        &client,
        &base,
        &image.image,
        jobs,
        settings.submit_concurrency,
    )
    .await;
    let queued = backlog(&client, &base).await?;
    if queued < jobs {
        bail!("only {queued} of {jobs} jobs are queued ({submit_errors} submit errors)");
    }
    // Start the workers.
    dep.spec.per_worker_flags = worker_flags;
    let mut groups = vec![ProcGroup::new(
        "api",
        dep.cluster.api.pid().into_iter().collect(),
    )];
    let spawned = Instant::now();
    for i in 0..dep.spec.per_worker_flags.len() {
        let mut w = dep.spec.worker(i)?;
        w.start()?;
        dep.cluster.workers.push(w);
    }
    let worker_pids: Vec<u32> = dep.cluster.workers.iter().filter_map(|w| w.pid()).collect();
    groups.push(ProcGroup::new("workers", worker_pids));
    groups.extend(
        brokers
            .iter()
            .map(|(name, p)| ProcGroup::new(name, vec![*p])),
    );
    groups.push(ProcGroup::loadgen());
    let meter = CpuMeter::start(groups);
    eprintln!(
        "backlog: draining with {} workers",
        dep.cluster.workers.len()
    );
    let deadline = spawned + Duration::from_secs(60) + Duration::from_secs(jobs / 5);
    let mut ready_secs = None;
    let mut samples = vec![(0.0, queued)];
    loop {
        tokio::time::sleep(POLL).await;
        if ready_secs.is_none()
            && dep
                .cluster
                .workers
                .iter()
                .all(|w| ready_line(&read_log(w)).is_some())
        {
            ready_secs = Some(spawned.elapsed().as_secs_f64());
        }
        for w in &mut dep.cluster.workers {
            check_running(w)?;
        }
        let left = backlog(&client, &base).await?;
        samples.push((spawned.elapsed().as_secs_f64(), left));
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{left} of {jobs} jobs still queued after {:?}",
                spawned.elapsed()
            );
        }
    }
    let drain_secs = spawned.elapsed().as_secs_f64();
    let cpu = meter.finish(jobs);
    let busy = drain_secs - ready_secs.unwrap_or(0.0);
    Ok(BacklogReport {
        image: image.name.clone(),
        jobs,
        workers: dep.cluster.workers.len(),
        max_batch,
        submit_secs,
        submit_per_sec: crate::stats::rate(jobs, submit_secs),
        submit_errors,
        ready_secs,
        drain_secs,
        per_sec: crate::stats::rate(jobs, busy),
        steady_per_sec: steady_rate(&samples, queued),
        ratio_to_closed_loop: None,
        cpu,
        brokers: rss.finish(),
    })
}

/// Submits exactly `n` jobs from `concurrency` clients; seconds taken and
/// errors (a failed submission is retried, so `n` jobs are queued).
async fn submit_n(
    client: &reqwest::Client,
    base: &Arc<str>,
    image: &inferq_tests::load::Image,
    n: u64,
    concurrency: usize,
) -> (f64, u64) {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let body = Arc::new(SubmitBody::Image(image.clone()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, base, body) = (client.clone(), base.clone(), body.clone());
            let (next, errors) = (next.clone(), errors.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    // Up to 5 tries per job; a job that never gets a 202 is
                    // missing from the backlog, which the caller checks.
                    for _ in 0..5 {
                        match submit_only(client.clone(), base.clone(), body.clone()).await {
                            Ok(_) => break,
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    (
        started.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed),
    )
}

/// `totals.backlog` of `GET /v1/stats`.
async fn backlog(client: &reqwest::Client, base: &str) -> anyhow::Result<u64> {
    let v: serde_json::Value = client
        .get(format!("{base}/v1/stats"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .context("GET /v1/stats")?
        .json()
        .await
        .context("reading /v1/stats")?;
    v["totals"]["backlog"]
        .as_u64()
        .with_context(|| format!("no totals.backlog in {v}"))
}

/// The drain rate between the first sample with at most 90 % of `total`
/// left and the first with at most 10 % left; `None` when the samples do
/// not span that range (a drain faster than the polling).
pub(crate) fn steady_rate(samples: &[(f64, u64)], total: u64) -> Option<f64> {
    let at = |frac: f64| {
        samples
            .iter()
            .find(|(_, left)| (*left as f64) <= total as f64 * frac)
            .copied()
    };
    let ((t0, l0), (t1, l1)) = (at(0.9)?, at(0.1)?);
    (t1 > t0 && l0 > l1).then(|| (l0 - l1) as f64 / (t1 - t0))
}

/// The backlog table: one row.
pub(crate) fn table(b: &BacklogReport) -> Table {
    let mut t = Table::new(
        &format!(
            "Backlog: {} queued jobs of {}, then {} worker(s) started (max_batch {})",
            b.jobs, b.image, b.workers, b.max_batch
        ),
        &[
            "submit jobs/s",
            "ready s",
            "drain s",
            "jobs/s",
            "steady jobs/s",
            "vs closed loop",
            "CPU ms/job",
            "rabbitmq peak MiB",
            "rabbitmq growth MiB",
            "redis peak MiB",
        ],
    );
    let mib = |k: Option<u64>| num(k.map(|k| k as f64 / 1024.0), 1);
    t.row(vec![
        sig(b.submit_per_sec),
        num(b.ready_secs, 2),
        num(Some(b.drain_secs), 1),
        sig(b.per_sec),
        b.steady_per_sec.map(sig).unwrap_or_else(|| "-".into()),
        pct(b.ratio_to_closed_loop),
        num(b.cpu.total_ms_per_job(), 1),
        mib(b.brokers.peak_kib.get("rabbitmq").copied()),
        mib(b.brokers.growth_kib("rabbitmq")),
        mib(b.brokers.peak_kib.get("redis").copied()),
    ]);
    let groups: Vec<String> = b
        .cpu
        .groups
        .iter()
        .map(|g| format!("{} {}", g.name, num(g.ms_per_job, 2)))
        .collect();
    t.note(format!(
        "CPU ms per job while draining: {}",
        groups.join(", ")
    ));
    t.note("jobs/s = jobs ÷ (drain − ready); steady = between 90 % and 10 % of the backlog left; vs closed loop = steady ÷ the service phase's highest jobs/s for this image and max_batch; RSS over the whole phase (growth from its start, before the jobs were submitted)");
    if b.submit_errors > 0 {
        t.note(format!(
            "{} submissions failed and were retried",
            b.submit_errors
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_spans_ninety_to_ten_percent() {
        // 1000 jobs: the first second is start-up, then 100 jobs/s.
        let samples: Vec<(f64, u64)> = (0..=12)
            .map(|i| {
                let t = i as f64;
                (
                    t,
                    if i == 0 {
                        1000
                    } else {
                        1000u64.saturating_sub(((t - 1.0) * 100.0) as u64)
                    },
                )
            })
            .collect();
        let r = steady_rate(&samples, 1000).unwrap();
        assert!((r - 100.0).abs() < 1e-9, "{r}");
        // Never below 10 %: no steady rate.
        assert_eq!(steady_rate(&[(0.0, 1000), (1.0, 500)], 1000), None);
        // Drained between two polls.
        assert_eq!(steady_rate(&[(0.0, 1000), (1.0, 0)], 1000), None);
    }
}
