//! Cold start: how long a new worker takes to serve.
//!
//! With the API up and no worker, one job is submitted and waits in the
//! queue. Then a worker process is spawned (default threads: one per allowed
//! core, as in production) and we measure: spawn → its "inferq-worker ready"
//! log line (polling the log every 5 ms), the `startup_ms` it logs itself
//! (from its `main` to ready, so without exec and dynamic loading), spawn →
//! the queued job terminal, and the latency of a job submitted right after
//! ready. Each run spawns a fresh worker; the report keeps every run and the
//! median.
//!
//! Two repositories are measured: the benchmarked model alone (what the
//! other sections load, and what a worker dedicated to one model starts
//! with), then the whole shipped repository (what `make run-worker` loads:
//! every seed model, each on every inference thread).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use inferq_backends::repository::ModelRepository;
use serde::Serialize;

use crate::cli::Settings;
use crate::deploy::{Deployment, check_running, read_log, ready_line};
use crate::images::BenchImage;
use crate::loadgen::{full_job, http_client};
use crate::service::batching_repository;

/// One cold start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct ColdRun {
    pub spawn_to_ready_ms: f64,
    /// As logged by the worker (`startup_ms`), if readable.
    pub logged_startup_ms: Option<f64>,
    /// Spawn → the job queued before the spawn is terminal.
    pub first_job_ms: f64,
    /// Submit → terminal for a job submitted right after ready.
    pub after_ready_job_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ColdStartReport {
    /// What the worker loaded, e.g. "efficientnet-lite0:1 alone".
    pub models: String,
    pub image: String,
    pub runs: Vec<ColdRun>,
    pub median: ColdRun,
}

/// Median of each field separately.
pub(crate) fn median(runs: &[ColdRun]) -> ColdRun {
    fn mid(mut v: Vec<f64>) -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    let field = |f: fn(&ColdRun) -> f64| mid(runs.iter().map(f).collect());
    let logged: Vec<f64> = runs.iter().filter_map(|r| r.logged_startup_ms).collect();
    ColdRun {
        spawn_to_ready_ms: field(|r| r.spawn_to_ready_ms),
        logged_startup_ms: (!logged.is_empty()).then(|| mid(logged)),
        first_job_ms: field(|r| r.first_job_ms),
        after_ready_job_ms: field(|r| r.after_ready_job_ms),
    }
}

/// Cold starts on the benchmarked model alone (at the shipped `max_batch`),
/// then on the whole repository.
pub(crate) async fn run(
    settings: &Settings,
    image: &BenchImage,
    shipped_max_batch: usize,
) -> anyhow::Result<Vec<ColdStartReport>> {
    let mut alone = settings.clone();
    alone.model_dir = batching_repository(settings, shipped_max_batch)?;
    let repositories = [
        (
            alone,
            "coldstart-model",
            format!("{}:{} alone", settings.model, settings.model_version),
        ),
        (
            settings.clone(),
            "coldstart",
            format!(
                "the repository, {} model versions",
                model_versions(&settings.model_dir)
            ),
        ),
    ];
    let mut reports = Vec::new();
    for (settings, phase, models) in repositories {
        eprintln!("coldstart: {models}");
        let mut dep = Deployment::start(&settings, phase, Vec::new())?;
        let result = measure(&settings, image, &mut dep).await;
        dep.finish().await;
        let runs = result?;
        reports.push(ColdStartReport {
            models,
            image: image.name.clone(),
            median: median(&runs),
            runs,
        });
    }
    Ok(reports)
}

/// Model versions the worker would load from `root` (the repository's own
/// scan; 0 when it cannot be read).
fn model_versions(root: &Path) -> usize {
    ModelRepository::scan(root).map_or(0, |scan| scan.repository.entries().count())
}

async fn measure(
    settings: &Settings,
    image: &BenchImage,
    dep: &mut Deployment,
) -> anyhow::Result<Vec<ColdRun>> {
    let client = http_client();
    dep.wait_ready(&client).await?;
    let base: Arc<str> = dep.api_url().into();
    let runs = if settings.quick { 1 } else { 3 };
    let mut out = Vec::new();
    for i in 0..runs {
        eprintln!("coldstart: run {}/{runs}", i + 1);
        // Queue a job before the worker exists.
        let first = {
            let (client, base, img) = (client.clone(), base.clone(), image.image.clone());
            let resp = client
                .post(format!("{base}/v1/jobs"))
                .header("content-type", img.content_type)
                .body(img.bytes.clone())
                .send()
                .await
                .context("submitting the queued job")?;
            if resp.status() != 202 {
                bail!("queued job: submit answered {}", resp.status());
            }
            let job: serde_json::Value = resp.json().await?;
            let id = job["id"].as_str().context("job id")?.to_owned();
            (client, base, id)
        };
        let mut worker = dep.spec.worker(i)?;
        let _ = std::fs::remove_file(worker.log_path());
        let spawned = Instant::now();
        worker.start()?;
        let (client2, base2, id) = first;
        let first_job = tokio::spawn(async move {
            let url = format!("{base2}/v1/jobs/{id}?wait=30");
            loop {
                let job: serde_json::Value = client2
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                match job["status"].as_str() {
                    Some("queued" | "running") => continue,
                    Some("succeeded") => return Ok(spawned.elapsed()),
                    _ => return Err(format!("queued job ended {job}")),
                }
            }
        });
        let deadline = spawned + Duration::from_secs(60);
        let logged = loop {
            if let Some(logged) = ready_line(&read_log(&worker)) {
                break logged;
            }
            check_running(&mut worker)?;
            if Instant::now() > deadline {
                bail!("worker not ready within 60 s:\n{}", worker.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let ready = spawned.elapsed();
        let t = Instant::now();
        full_job(client.clone(), base.clone(), image.image.clone())
            .await
            .map_err(anyhow::Error::msg)
            .context("job after ready")?;
        let after_ready = t.elapsed();
        let first_job = tokio::time::timeout(Duration::from_secs(60), first_job)
            .await
            .context("queued job not finished within 60 s")?
            .context("queued-job task")?
            .map_err(anyhow::Error::msg)?;
        tokio::task::spawn_blocking(move || worker.stop(Duration::from_secs(5)))
            .await
            .ok();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        out.push(ColdRun {
            spawn_to_ready_ms: ms(ready),
            logged_startup_ms: logged,
            first_job_ms: ms(first_job),
            after_ready_job_ms: ms(after_ready),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ready: f64, logged: Option<f64>) -> ColdRun {
        ColdRun {
            spawn_to_ready_ms: ready,
            logged_startup_ms: logged,
            first_job_ms: ready * 2.0,
            after_ready_job_ms: 10.0,
        }
    }

    #[test]
    fn median_per_field_odd_and_even() {
        let m = median(&[
            run(300.0, Some(3.0)),
            run(100.0, None),
            run(200.0, Some(1.0)),
        ]);
        assert_eq!(m.spawn_to_ready_ms, 200.0);
        assert_eq!(m.first_job_ms, 400.0);
        assert_eq!(m.logged_startup_ms, Some(2.0));
        let m = median(&[run(100.0, None), run(200.0, None)]);
        assert_eq!(m.spawn_to_ready_ms, 150.0);
        assert_eq!(m.logged_startup_ms, None);
        assert_eq!(median(&[]), ColdRun::default());
    }
}
