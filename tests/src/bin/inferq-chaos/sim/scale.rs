//! Scale-out curve and autoscaling loop (issue 22, items 1 and 4).
//!
//! The curve: for each worker count, the jobs are queued with no worker
//! running, then the workers start and drain them; throughput is the jobs
//! over the span from the first job started to the last finished (from the
//! records), CPU per job the workers' user + system time over the jobs
//! (process start and model load included).
//!
//! The autoscaler applies KEDA's rule to the metric the shipped
//! ScaledObject reads (k8s/components/keda/scaledobject.yaml:
//! `inferq_backlog_jobs`, jobs accepted and not yet final, from the API's
//! metrics endpoint): desired = ceil(backlog / target) within [0, max],
//! at least one worker while there is any backlog (activation threshold 0);
//! up at once, down one worker at a time (SIGTERM, drained) after
//! `cooldown` without a change, to zero after `cooldown` without backlog.

use std::time::{Duration, Instant};

use super::load::{self, LoadSpec};
use super::scenarios::judge;
use super::{Row, Sim, SimArgs};

/// Item 1: throughput and CPU per job with 1, 2, 4 worker processes.
pub(crate) async fn curve(sim: &mut Sim, args: &SimArgs) -> anyhow::Result<Row> {
    let mut notes = Vec::new();
    let mut total = Row {
        name: "scale".into(),
        ok: true,
        ..Default::default()
    };
    for &n in &args.scale_points {
        sim.set_workers(0)?;
        let before = sim.job_records()?;
        let spec = LoadSpec {
            jobs: args.scale_jobs,
            rate: 0.0,
            clients: 16,
            give_up: Duration::from_secs(60),
        };
        let (_, handle, _) = load::spawn(sim.api_urls(), spec);
        let sub = handle.await?;
        let started = Instant::now();
        sim.set_workers(n)?;
        let acc = load::account(
            &sim.api_urls(),
            &sub.ids(),
            Duration::from_secs_f64(args.settle_secs),
        )
        .await;
        let drained = started.elapsed().as_secs_f64();
        let cpu = sim.worker_cpu_secs();
        let first = acc
            .records
            .iter()
            .filter_map(|r| r["started_at"].as_str())
            .min()
            .map(str::to_owned);
        let last = acc
            .records
            .iter()
            .filter_map(|r| r["finished_at"].as_str())
            .max()
            .map(str::to_owned);
        let span = match (first, last) {
            (Some(a), Some(b)) => {
                load::span(&serde_json::json!({"a": a, "b": b}), "a", "b").unwrap_or(f64::NAN)
            }
            _ => f64::NAN,
        };
        let jobs = acc.terminal.max(1) as f64;
        notes.push(format!(
            "workers={n}: {:.1} jobs/s ({} jobs in {span:.2} s from first start to last finish; {drained:.1} s incl. worker start), CPU per job {:.1} ms",
            jobs / span,
            acc.terminal,
            cpu / jobs * 1e3
        ));
        let created = sim.job_records()?.saturating_sub(before);
        let row = judge(&format!("scale-{n}"), &sub, &acc, created, Vec::new());
        total.accepted += row.accepted;
        total.final_ += row.final_;
        total.lost += row.lost;
        total.duplicated += row.duplicated;
        total.keys_with_two_jobs += row.keys_with_two_jobs;
        total.ok &= row.ok;
        if !row.ok {
            notes.extend(row.notes);
        }
    }
    sim.set_workers(0)?;
    total.notes = notes;
    Ok(total)
}

/// The backlog the ScaledObject's query reads: `inferq_backlog_jobs` of
/// one API (each reports the cluster-wide value), summed over models.
async fn backlog(http: &reqwest::Client, metrics: &[String]) -> Option<f64> {
    for url in metrics {
        let Ok(r) = http.get(url).send().await else {
            continue;
        };
        let Ok(text) = r.text().await else { continue };
        return Some(
            text.lines()
                .filter(|l| l.starts_with("inferq_backlog_jobs"))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum(),
        );
    }
    None
}

/// Item 4: scale from zero when jobs arrive, back to zero when idle.
pub(crate) async fn autoscale(sim: &mut Sim, args: &SimArgs) -> anyhow::Result<Row> {
    sim.set_workers(0)?;
    let before = sim.job_records()?;
    let metrics: Vec<String> = sim.apis.iter().map(|a| a.metrics.clone()).collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let cooldown = Duration::from_secs_f64(args.cooldown_secs);
    let spec = LoadSpec {
        jobs: args.autoscale_jobs,
        rate: args.autoscale_rate,
        clients: 16,
        give_up: Duration::from_secs(60),
    };
    let (progress, handle, t0) = load::spawn(sim.api_urls(), spec);
    // The load's own length, then `settle` for the backlog to drain and
    // the workers to be drained.
    let give_up = Duration::from_secs_f64(
        args.autoscale_jobs as f64 / args.autoscale_rate.max(0.1) + args.settle_secs,
    );
    let mut timeline: Vec<String> = Vec::new();
    let mut last_change = Instant::now();
    let mut idle_since: Option<Instant> = None;
    let mut first_start: Option<f64> = None;
    let mut max_workers = 0;
    let mut polls_failed = 0;
    loop {
        let Some(b) = backlog(&http, &metrics).await else {
            polls_failed += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let current = sim.workers.len();
        let mut desired = ((b / args.target).ceil() as usize).min(args.max_workers);
        if b > 0.0 {
            desired = desired.max(1);
            idle_since = None;
        } else if idle_since.is_none() {
            idle_since = Some(Instant::now());
        }
        let t = t0.elapsed().as_secs_f64();
        if desired > current {
            for _ in current..desired {
                sim.add_worker()?;
            }
            first_start.get_or_insert(t);
            last_change = Instant::now();
            timeline.push(format!("{t:.1}s backlog={b} workers {current}->{desired}"));
        } else {
            // To zero only after `cooldown` without backlog (KEDA's
            // cooldownPeriod); above that, one at a time (the HPA policy).
            let idle_long = idle_since.is_some_and(|i| i.elapsed() >= cooldown);
            let floor = if desired == 0 && !idle_long {
                1
            } else {
                desired
            };
            if floor < current && last_change.elapsed() >= cooldown {
                sim.remove_worker()?;
                last_change = Instant::now();
                timeline.push(format!(
                    "{t:.1}s backlog={b} workers {current}->{} (SIGTERM)",
                    current - 1
                ));
            }
        }
        max_workers = max_workers.max(sim.workers.len());
        let done = handle.is_finished();
        if done && b == 0.0 && sim.workers.is_empty() {
            break;
        }
        if t0.elapsed() > give_up {
            timeline.push(format!("GAVE UP after {:.0} s", give_up.as_secs_f64()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = progress;
    let sub = handle.await?;
    let acc = load::account(
        &sim.api_urls(),
        &sub.ids(),
        Duration::from_secs_f64(args.settle_secs),
    )
    .await;
    let max_wait = acc
        .records
        .iter()
        .filter_map(|r| load::span(r, "created_at", "started_at"))
        .fold(0.0f64, f64::max);
    let mut notes = vec![
        format!(
            "KEDA rule: target {} per worker, max {}, cooldown {:.0} s, poll 0.5 s; polls failed {polls_failed}",
            args.target, args.max_workers, args.cooldown_secs
        ),
        format!(
            "first worker started {:.1} s after the first submission; most workers {max_workers}; longest wait in queue {max_wait:.1} s",
            first_start.unwrap_or(f64::NAN)
        ),
        format!("timeline: {}", timeline.join("; ")),
    ];
    notes.push(format!(
        "submit latency: {}",
        sub.latency(0.0, f64::INFINITY)
    ));
    let created = sim.job_records()?.saturating_sub(before);
    let mut row = judge("autoscale", &sub, &acc, created, notes);
    row.ok &= sim.workers.is_empty();
    Ok(row)
}
