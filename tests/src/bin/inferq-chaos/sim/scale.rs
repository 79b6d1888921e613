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
//! up at once; down as the HPA behind KEDA does with the shipped
//! `behavior.scaleDown`: never below the highest count the rule asked for
//! within the stabilization window (so a backlog hovering at the boundary
//! does not flap), one worker (SIGTERM, drained) per `cooldown`, and to
//! zero after `cooldown` without backlog.
//!
//! Judged beyond the account: no job may wait in the queue longer than the
//! target is worth while the controller could still add workers — the
//! target's backlog at one worker's rate (measured in the run: jobs per
//! worker-second), plus the first worker's start-up (measured: first add
//! to first job started) and two polls.

use std::collections::VecDeque;
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
    let t0_wall = chrono::Utc::now() - chrono::Duration::from_std(t0.elapsed()).unwrap_or_default();
    // The load's own length, then `settle` for the backlog to drain and
    // the workers to be drained.
    let give_up = Duration::from_secs_f64(
        args.autoscale_jobs as f64 / args.autoscale_rate.max(0.1) + args.settle_secs,
    );
    let stabilization = Duration::from_secs_f64(args.stabilization_secs);
    // (when, what the rule asked for), within the stabilization window.
    let mut asked: VecDeque<(Instant, usize)> = VecDeque::new();
    // Worker-seconds, for one worker's rate; the first start, for start-up.
    let mut worker_secs = 0.0;
    let mut last_poll = Instant::now();
    let mut first_add: Option<chrono::DateTime<chrono::Utc>> = None;
    // While the controller runs fewer than `max_workers`: capacity is free.
    let mut free_until_full: Vec<(f64, f64)> = Vec::new();
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
        worker_secs += current as f64 * last_poll.elapsed().as_secs_f64();
        last_poll = Instant::now();
        let mut desired = ((b / args.target).ceil() as usize).min(args.max_workers);
        if b > 0.0 {
            desired = desired.max(1);
            idle_since = None;
        } else if idle_since.is_none() {
            idle_since = Some(Instant::now());
        }
        asked.push_back((Instant::now(), desired));
        while asked
            .front()
            .is_some_and(|(at, _)| at.elapsed() > stabilization)
        {
            asked.pop_front();
        }
        let t = t0.elapsed().as_secs_f64();
        if desired > current {
            first_add.get_or_insert_with(chrono::Utc::now);
            for _ in current..desired {
                sim.add_worker()?;
            }
            first_start.get_or_insert(t);
            last_change = Instant::now();
            timeline.push(format!("{t:.1}s backlog={b} workers {current}->{desired}"));
        } else {
            // Down to the highest count asked for within the window; to
            // zero only after `cooldown` without backlog (KEDA's
            // cooldownPeriod); one at a time (the HPA policy).
            let stable = asked.iter().map(|(_, d)| *d).max().unwrap_or(desired);
            let idle_long = idle_since.is_some_and(|i| i.elapsed() >= cooldown);
            let floor = if stable == 0 && !idle_long { 1 } else { stable };
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
        if sim.workers.len() < args.max_workers {
            match free_until_full.last_mut() {
                Some((_, end)) if (*end - t).abs() < 1.0 => *end = t + 0.5,
                _ => free_until_full.push((t, t + 0.5)),
            }
        }
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
    let waits = wait_report(
        &acc.records,
        t0_wall,
        first_add,
        worker_secs,
        &free_until_full,
        args.target,
    );
    let mut notes = vec![
        format!(
            "KEDA rule: target {} per worker, max {}, scale-in one per {:.0} s within a {:.0} s stabilization window, to zero after {:.0} s idle, poll 0.5 s; polls failed {polls_failed}",
            args.target,
            args.max_workers,
            args.cooldown_secs,
            args.stabilization_secs,
            args.cooldown_secs
        ),
        format!(
            "first worker started {:.1} s after the first submission; most workers {max_workers}; longest wait in queue {max_wait:.1} s",
            first_start.unwrap_or(f64::NAN)
        ),
        waits.note.clone(),
        format!("timeline: {}", timeline.join("; ")),
    ];
    notes.push(format!(
        "submit latency: {}",
        sub.latency(0.0, f64::INFINITY)
    ));
    let created = sim.job_records()?.saturating_sub(before);
    let mut row = judge("autoscale", &sub, &acc, created, notes);
    row.ok &= sim.workers.is_empty() && waits.ok;
    Ok(row)
}

/// How long jobs waited in the queue while the controller could still
/// add workers, against what the target is worth.
struct Waits {
    note: String,
    ok: bool,
}

fn wait_report(
    records: &[serde_json::Value],
    t0: chrono::DateTime<chrono::Utc>,
    first_add: Option<chrono::DateTime<chrono::Utc>>,
    worker_secs: f64,
    free: &[(f64, f64)],
    target: f64,
) -> Waits {
    let at = |r: &serde_json::Value, field: &str| {
        let s = r[field].as_str()?;
        let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
        Some((t.with_timezone(&chrono::Utc) - t0).as_seconds_f64())
    };
    let finished = records
        .iter()
        .filter(|r| r["finished_at"].is_string())
        .count();
    // Jobs per worker-second: a lower bound of one worker's rate (workers
    // idle at times count too), so the bound below errs on the lenient side.
    let rate = finished as f64 / worker_secs.max(1e-9);
    let startup = first_add
        .and_then(|added| {
            let added = (added - t0).as_seconds_f64();
            records
                .iter()
                .filter_map(|r| at(r, "started_at"))
                .filter(|s| *s >= added)
                .reduce(f64::min)
                .map(|first| first - added)
        })
        .unwrap_or(0.0);
    let bound = target / rate + startup + 1.0;
    let in_free = |t: f64| free.iter().any(|(a, b)| (*a..=*b).contains(&t));
    let waits: Vec<f64> = records
        .iter()
        .filter_map(|r| {
            let created = at(r, "created_at")?;
            Some((created, at(r, "started_at")? - created))
        })
        .filter(|(created, _)| in_free(*created))
        .map(|(_, w)| w)
        .collect();
    let worst = waits.iter().copied().fold(0.0f64, f64::max);
    let over = waits.iter().filter(|w| **w > bound).count();
    Waits {
        note: format!(
            "waits while capacity was free ({} jobs): longest {worst:.2} s, over the bound {over}; bound = target {target} / one worker's rate {rate:.1} jobs/s + first start-up {startup:.2} s + two polls 1 s = {bound:.2} s",
            waits.len()
        ),
        ok: over == 0,
    }
}
