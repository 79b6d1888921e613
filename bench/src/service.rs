//! The full service path and the submit path alone.
//!
//! Service: the API and `--workers` worker processes (one inference thread
//! each, pinned to different cores) on the real RabbitMQ and Redis; after a
//! warm-up, closed-loop clients at each concurrency level POST an image and
//! long-poll it to the end. Each level reports jobs/s, latency, errors, the
//! ratio to the in-process limit for the same image and the bench's own CPU;
//! the API's and workers' peak RSS is sampled over the whole phase.
//!
//! Submit path: the API alone (no workers), so every POST only validates,
//! records and publishes (with a publisher confirm) — the API's own ceiling.
//! The jobs pile up in the queue; the namespace cleanup deletes it.

use std::sync::Arc;

use serde::Serialize;

use crate::cli::Settings;
use crate::deploy::{Deployment, pinned_worker_flags};
use crate::images::{BenchImage, tiny_png};
use crate::limit::LimitReport;
use crate::loadgen::{LoopSummary, SubmitBody, closed_loop, full_job, http_client, submit_only};
use crate::resources::{MemoryReport, RssSampler};
use crate::stats::Summary;

/// One concurrency level of the service phase.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceRow {
    pub image: String,
    #[serde(flatten)]
    pub run: LoopSummary,
    /// jobs/s ÷ the in-process full-path images/s for this image.
    pub ratio_to_limit: Option<f64>,
    /// Worker-reported decode + preprocess + inference per job.
    pub worker_compute: Summary,
    /// Worker-reported time in the queue per job.
    pub queue: Summary,
}

/// The service phase.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    pub workers: usize,
    /// The core each worker's single inference thread is pinned to.
    pub worker_cores: Vec<usize>,
    pub rows: Vec<ServiceRow>,
    pub memory: MemoryReport,
}

/// The submit-path phase.
#[derive(Debug, Clone, Serialize)]
pub struct SubmitRow {
    /// `png-32x32` or `uri`.
    pub input: String,
    #[serde(flatten)]
    pub run: LoopSummary,
}

/// Runs the service phase for every image and concurrency level.
pub async fn service(
    settings: &Settings,
    images: &[BenchImage],
    limit: Option<&LimitReport>,
) -> anyhow::Result<ServiceReport> {
    let allowed = inferq_worker::pinning::allowed_cores();
    let worker_cores: Vec<usize> = (0..settings.workers)
        .map(|i| allowed[i % allowed.len()])
        .collect();
    let flags = worker_cores
        .iter()
        .map(|&c| pinned_worker_flags(c))
        .collect();
    let mut dep = Deployment::start(settings, "service", flags)?;
    let result = measure_service(settings, images, limit, &mut dep).await;
    dep.finish().await;
    let (rows, memory) = result?;
    Ok(ServiceReport {
        workers: settings.workers,
        worker_cores,
        rows,
        memory,
    })
}

async fn measure_service(
    settings: &Settings,
    images: &[BenchImage],
    limit: Option<&LimitReport>,
    dep: &mut Deployment,
) -> anyhow::Result<(Vec<ServiceRow>, MemoryReport)> {
    let client = http_client();
    dep.wait_ready(&client).await?;
    let base: Arc<str> = dep.api_url().into();
    let sampler = RssSampler::start(dep.pids(), std::time::Duration::from_millis(100));
    let job = |image: &BenchImage| {
        let (client, base, image) = (client.clone(), base.clone(), image.image.clone());
        move || full_job(client.clone(), base.clone(), image.clone())
    };
    eprintln!("service: warm-up {:?}", settings.warmup_secs);
    let warm = closed_loop(settings.workers * 2, settings.warmup_secs, job(&images[0])).await;
    if warm.ok == 0 {
        anyhow::bail!(
            "no job succeeded during the warm-up: {:?}",
            warm.error_samples
        );
    }
    let mut rows = Vec::new();
    for image in images {
        for &c in &settings.concurrency {
            eprintln!("service: {} at concurrency {c}", image.name);
            let r = closed_loop(c, settings.measure_secs, job(image)).await;
            let run = r.summary(c);
            let ratio = limit
                .and_then(|l| l.full_rate(&image.name))
                .filter(|&l| l > 0.0)
                .map(|l| run.per_sec / l);
            rows.push(ServiceRow {
                image: image.name.clone(),
                run,
                ratio_to_limit: ratio,
                worker_compute: r.compute.summary(),
                queue: r.queue.summary(),
            });
        }
    }
    Ok((rows, sampler.finish()))
}

/// Runs the submit-path phase: a tiny PNG and a by-reference job.
pub async fn submit(settings: &Settings) -> anyhow::Result<Vec<SubmitRow>> {
    let mut dep = Deployment::start(settings, "submit", Vec::new())?;
    let result = measure_submit(settings, &mut dep).await;
    eprintln!("submit: deleting the queue");
    dep.finish().await;
    result
}

async fn measure_submit(
    settings: &Settings,
    dep: &mut Deployment,
) -> anyhow::Result<Vec<SubmitRow>> {
    let client = http_client();
    dep.wait_ready(&client).await?;
    let base: Arc<str> = dep.api_url().into();
    let inputs = [
        ("png-32x32", SubmitBody::Image(tiny_png())),
        ("uri", SubmitBody::Uri("gs://bench/x.jpg".into())),
    ];
    let mut rows = Vec::new();
    for (name, body) in inputs {
        eprintln!(
            "submit: {name} at concurrency {}",
            settings.submit_concurrency
        );
        let body = Arc::new(body);
        let (client, base) = (client.clone(), base.clone());
        let r = closed_loop(
            settings.submit_concurrency,
            settings.measure_secs,
            move || submit_only(client.clone(), base.clone(), body.clone()),
        )
        .await;
        rows.push(SubmitRow {
            input: name.into(),
            run: r.summary(settings.submit_concurrency),
        });
    }
    Ok(rows)
}
