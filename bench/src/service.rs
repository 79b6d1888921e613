//! The full service path and the submit path alone.
//!
//! Service: the API and `--workers` worker processes (one inference thread
//! each, pinned to different cores) on the real RabbitMQ and Redis; after a
//! warm-up, closed-loop clients at each concurrency level POST an image and
//! long-poll it to the end. Each level reports jobs/s, latency, errors, the
//! ratio to the in-process limit for the same image (and, filled in by the
//! run, to the bare Python pipeline) and the CPU of each process group (API,
//! workers, RabbitMQ, Redis, the load generator; see [`crate::procs`]); the
//! peak RSS of the API and workers, and of RabbitMQ and Redis with their
//! growth from the start of each run, is sampled over the whole phase. The
//! manifest's shipped `max_batch` always runs, besides `--max-batch`, since
//! the targets are about the shipped setting.
//!
//! Submit path: the API alone (no workers), so every POST only validates,
//! records and publishes (with a publisher confirm) — the API's own ceiling.
//! The jobs pile up in the queue; the namespace cleanup deletes it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use inferq_core::manifest::ModelManifest;
use serde::Serialize;

use crate::cli::Settings;
use crate::deploy::{Deployment, pinned_worker_flags, worker_cores};
use crate::images::{BenchImage, tiny_png};
use crate::limit::LimitReport;
use crate::loadgen::{LoopSummary, SubmitBody, closed_loop, full_job, http_client, submit_only};
use crate::procs::{CpuBreakdown, CpuMeter, ProcGroup, broker_pids};
use crate::resources::{MemoryReport, RssSampler};
use crate::stats::Summary;

/// One concurrency level of the service phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServiceRow {
    /// The model's `[batching] max_batch` in this run (1 = no batching).
    pub max_batch: usize,
    pub image: String,
    #[serde(flatten)]
    pub run: LoopSummary,
    /// jobs/s ÷ the in-process full-path images/s for this image.
    pub ratio_to_limit: Option<f64>,
    /// jobs/s ÷ the bare Python pipeline's images/s for this image.
    pub ratio_to_bare: Option<f64>,
    /// Worker-reported decode + preprocess + inference per job.
    pub worker_compute: Summary,
    /// Worker-reported time in the queue per job.
    pub queue: Summary,
    /// CPU per process group during this level.
    pub cpu: Option<CpuBreakdown>,
}

/// The service phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServiceReport {
    pub workers: usize,
    /// The core each worker's single inference thread is pinned to.
    pub worker_cores: Vec<usize>,
    pub rows: Vec<ServiceRow>,
    /// Peaks over every run.
    pub memory: MemoryReport,
    /// Peaks of each run, by `max_batch`.
    pub memory_by_batch: std::collections::BTreeMap<usize, MemoryReport>,
    /// The model manifest's own `[batching] max_batch`.
    pub shipped_max_batch: usize,
    /// RabbitMQ and Redis RSS over every run (growth from the first run's
    /// start).
    pub brokers: MemoryReport,
    /// RabbitMQ and Redis RSS of each run, by `max_batch`.
    pub brokers_by_batch: std::collections::BTreeMap<usize, MemoryReport>,
}

/// The submit-path phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SubmitRow {
    /// `png-32x32` or `uri`.
    pub input: String,
    #[serde(flatten)]
    pub run: LoopSummary,
}

/// Runs the service phase for every image and concurrency level.
pub(crate) async fn service(
    settings: &Settings,
    images: &[BenchImage],
    limit: Option<&LimitReport>,
) -> anyhow::Result<ServiceReport> {
    let worker_cores = worker_cores(settings.workers);
    let flags: Vec<Vec<String>> = worker_cores
        .iter()
        .map(|&c| pinned_worker_flags(c))
        .collect();
    let shipped = shipped_max_batch(settings)?;
    let mut batches = settings.max_batches.clone();
    if !batches.contains(&shipped) {
        eprintln!("service: adding the shipped max_batch {shipped}");
        batches.push(shipped);
    }
    let brokers = broker_pids();
    let mut rows = Vec::new();
    let mut memory = MemoryReport::default();
    let mut memory_by_batch = std::collections::BTreeMap::new();
    let mut broker_memory = MemoryReport::default();
    let mut brokers_by_batch = std::collections::BTreeMap::new();
    for &max_batch in &batches {
        let mut run = settings.clone();
        run.model_dir = batching_repository(settings, max_batch)?;
        eprintln!(
            "service: max_batch {max_batch} ({})",
            run.model_dir.display()
        );
        let mut dep = Deployment::start(&run, &format!("service-batch{max_batch}"), flags.clone())?;
        let broker_rss = RssSampler::start(brokers.clone(), std::time::Duration::from_millis(100));
        let result = measure_service(&run, images, limit, &mut dep, max_batch, &brokers).await;
        dep.finish().await;
        let (more, mem) = result?;
        let broker_mem = broker_rss.finish();
        rows.extend(more);
        memory.merge(&mem);
        memory_by_batch.insert(max_batch, mem);
        broker_memory.merge(&broker_mem);
        brokers_by_batch.insert(max_batch, broker_mem);
    }
    Ok(ServiceReport {
        workers: settings.workers,
        worker_cores,
        rows,
        memory,
        memory_by_batch,
        shipped_max_batch: shipped,
        brokers: broker_memory,
        brokers_by_batch,
    })
}

/// The `[batching] max_batch` of the configured model's manifest.
pub(crate) fn shipped_max_batch(settings: &Settings) -> anyhow::Result<usize> {
    let path = settings
        .model_dir
        .join(&settings.model)
        .join(settings.model_version.to_string())
        .join("model.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(ModelManifest::parse(&text, &path)?.batching.max_batch)
}

async fn measure_service(
    settings: &Settings,
    images: &[BenchImage],
    limit: Option<&LimitReport>,
    dep: &mut Deployment,
    max_batch: usize,
    brokers: &[(String, u32)],
) -> anyhow::Result<(Vec<ServiceRow>, MemoryReport)> {
    let client = http_client();
    dep.wait_ready(&client).await?;
    let base: Arc<str> = dep.api_url().into();
    let mut groups = vec![
        ProcGroup::new("api", dep.cluster.api.pid().into_iter().collect()),
        ProcGroup::new(
            "workers",
            dep.cluster.workers.iter().filter_map(|w| w.pid()).collect(),
        ),
    ];
    groups.extend(
        brokers
            .iter()
            .map(|(name, p)| ProcGroup::new(name, vec![*p])),
    );
    groups.push(ProcGroup::loadgen());
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
            let meter = CpuMeter::start(groups.clone());
            let r = closed_loop(c, settings.measure_secs, job(image)).await;
            let cpu = meter.finish(r.ok);
            let run = r.summary(c);
            let ratio = limit
                .and_then(|l| l.full_rate(&image.name))
                .filter(|&l| l > 0.0)
                .map(|l| run.per_sec / l);
            rows.push(ServiceRow {
                max_batch,
                image: image.name.clone(),
                run,
                ratio_to_limit: ratio,
                ratio_to_bare: None,
                worker_compute: r.compute.summary(),
                queue: r.queue.summary(),
                cpu: Some(cpu),
            });
        }
    }
    Ok((rows, sampler.finish()))
}

/// The model repository for a service run with `max_batch`: a copy under
/// `<out>/models/batch-<n>` holding only the benchmarked model, whose model
/// and labels are links to the originals and whose manifest has
/// `[batching] max_batch = n` (`max_delay_ms` 0; the manifest as it is when
/// it already says so). Only that model, so that every run (and the
/// embedded server) loads the same set: the shipped `models/` also holds the
/// pose, image-to-image and heatmap models, which would add their memory and
/// load time to whichever run used it.
pub(crate) fn batching_repository(
    settings: &Settings,
    max_batch: usize,
) -> anyhow::Result<PathBuf> {
    let model = settings.model_dir.join(&settings.model);
    let version = model.join(settings.model_version.to_string());
    let manifest_path = version.join("model.toml");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let current = ModelManifest::parse(&text, &manifest_path)?.batching;
    let unchanged = current.max_batch == max_batch && current.max_delay_ms == 0;
    let root = std::path::absolute(
        settings
            .out
            .join("models")
            .join(format!("batch-{max_batch}")),
    )?;
    let _ = std::fs::remove_dir_all(&root);
    let copy = root.join(&settings.model);
    let copy_version = copy.join(settings.model_version.to_string());
    std::fs::create_dir_all(&copy_version)?;
    // Files beside the versions (labels.txt) and in the version (model.onnx).
    for (from, to) in [(&model, &copy), (&version, &copy_version)] {
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            if entry.file_type()?.is_file() && entry.file_name() != "model.toml" {
                std::os::unix::fs::symlink(
                    std::path::absolute(entry.path())?,
                    to.join(entry.file_name()),
                )?;
            }
        }
    }
    let manifest = if unchanged {
        text
    } else {
        with_batching(&text, max_batch)
    };
    std::fs::write(copy_version.join("model.toml"), manifest)?;
    Ok(root)
}

/// Manifest text with its `[batching]` table (if any) replaced by one with
/// `max_batch`.
fn with_batching(manifest: &str, max_batch: usize) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in manifest.lines() {
        let header = line.trim_start().starts_with('[');
        if header {
            skipping = line.trim() == "[batching]";
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "\n[batching]\nmax_batch = {max_batch}\nmax_delay_ms = 0\n"
    ));
    out
}

/// Runs the submit-path phase: a tiny PNG and a by-reference job.
pub(crate) async fn submit(settings: &Settings) -> anyhow::Result<Vec<SubmitRow>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batching_table_is_replaced_not_duplicated() {
        let text = "kind = \"classification\"\n[input]\nname = \"x\"\n\
                    [batching]\nmax_batch = 8\nmax_delay_ms = 3\n[output]\nname = \"y\"\n";
        let out = with_batching(text, 2);
        assert_eq!(out.matches("[batching]").count(), 1);
        assert!(out.contains("max_batch = 2") && !out.contains("max_batch = 8"));
        assert!(!out.contains("max_delay_ms = 3"));
        assert!(out.contains("[output]\nname = \"y\""));
        assert!(out.contains("[input]\nname = \"x\""));
    }
}
