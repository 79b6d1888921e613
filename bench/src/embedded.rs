//! The embedded server row: `inferq` (API and inference threads in one
//! process, in-memory queue and store) under the same closed-loop clients as
//! the production path.
//!
//! It is the reference the production path is held to: the same HTTP API,
//! the same decode/preprocess/inference code on the same pinned cores (one
//! inference thread per worker of the service phase, pinned the same way),
//! but no RabbitMQ, no Redis and no second process. What the production path
//! costs more than this is the price of its queue and store. The model
//! repository is the configured one, so the manifest's shipped
//! `[batching] max_batch` applies. Each row also reports the CPU of the
//! server, the load generator and — as background, since the embedded server
//! does not use them — RabbitMQ and Redis; the server's RSS is sampled. One
//! job per image records InferQ's top-1 class, against which the bare Python
//! pipeline is checked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use inferq_tests::cluster::Managed;
use serde::Serialize;

use crate::cli::Settings;
use crate::deploy::check_running;
use crate::images::BenchImage;
use crate::limit::LimitReport;
use crate::loadgen::{LoopSummary, closed_loop, full_job, http_client};
use crate::procs::{CpuBreakdown, CpuMeter, ProcGroup, broker_pids};
use crate::resources::{MemoryReport, RssSampler};
use crate::stats::Summary;
use crate::table::{Table, num, pct, sig};

/// One concurrency level of the embedded server.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EmbeddedRow {
    pub image: String,
    #[serde(flatten)]
    pub run: LoopSummary,
    /// jobs/s ÷ the in-process full-path images/s for this image.
    pub ratio_to_limit: Option<f64>,
    /// jobs/s ÷ the bare Python pipeline's images/s for this image.
    pub ratio_to_bare: Option<f64>,
    /// Server-reported decode + preprocess + inference per job.
    pub worker_compute: Summary,
    pub queue: Summary,
    /// CPU per process group during this level.
    pub cpu: CpuBreakdown,
}

/// The embedded phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EmbeddedReport {
    /// Inference threads, one per core of `cores`.
    pub threads: usize,
    pub cores: Vec<usize>,
    /// The manifest's `[batching] max_batch` (the shipped value).
    pub max_batch: usize,
    pub rows: Vec<EmbeddedRow>,
    /// Peak RSS of the server over the phase.
    pub memory: MemoryReport,
    /// InferQ's top-1 class index per image.
    pub top1: BTreeMap<String, u64>,
}

/// How long the server gets to answer /readyz.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the embedded server on `cores` (one inference thread each).
pub(crate) async fn run(
    settings: &Settings,
    images: &[BenchImage],
    limit: Option<&LimitReport>,
    cores: &[usize],
    max_batch: usize,
) -> anyhow::Result<EmbeddedReport> {
    let log_dir = settings.out.join("logs").join("embedded");
    let _ = std::fs::remove_dir_all(&log_dir);
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let port = inferq_tests::cluster::free_port()?;
    let cores_arg: Vec<String> = cores.iter().map(usize::to_string).collect();
    let args: Vec<String> = [
        "--ort-library".to_string(),
        inferq_tests::ort_library().display().to_string(),
        "--model-dir".into(),
        // The benchmarked model alone, as in the service runs.
        crate::service::batching_repository(settings, max_batch)?
            .display()
            .to_string(),
        "--default-model".into(),
        settings.model.clone(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--metrics-listen".into(),
        String::new(),
        "--threads".into(),
        cores.len().to_string(),
        "--cores".into(),
        cores_arg.join(","),
        "--max-backlog".into(),
        "0".into(),
        "--max-inflight-requests".into(),
        "100000".into(),
        "--queue-capacity".into(),
        "100000".into(),
    ]
    .to_vec();
    let mut server = Managed::new(
        "inferq",
        &settings.bin_dir.join("inferq"),
        args,
        &log_dir.join("inferq.log"),
    );
    server.start().context("starting inferq")?;
    let base: Arc<str> = format!("http://127.0.0.1:{port}").into();
    let result = measure(settings, images, limit, &mut server, base, cores, max_batch).await;
    tokio::task::spawn_blocking(move || server.stop(Duration::from_secs(5)))
        .await
        .ok();
    result
}

async fn measure(
    settings: &Settings,
    images: &[BenchImage],
    limit: Option<&LimitReport>,
    server: &mut Managed,
    base: Arc<str>,
    cores: &[usize],
    max_batch: usize,
) -> anyhow::Result<EmbeddedReport> {
    let client = http_client();
    wait_ready(&client, &base, server).await?;
    let pid = server.pid().context("inferq has no pid")?;
    let sampler = RssSampler::start(vec![("inferq".into(), pid)], Duration::from_millis(100));
    let job = |image: &BenchImage| {
        let (client, base, image) = (client.clone(), base.clone(), image.image.clone());
        move || full_job(client.clone(), base.clone(), image.clone())
    };
    eprintln!("embedded: warm-up {:?}", settings.warmup_secs);
    let warm = closed_loop(cores.len() * 2, settings.warmup_secs, job(&images[0])).await;
    if warm.ok == 0 {
        bail!(
            "no job succeeded during the warm-up: {:?}",
            warm.error_samples
        );
    }
    let mut top1 = BTreeMap::new();
    for image in images {
        let url = format!("{base}/v1/jobs");
        let job = inferq_tests::load::one_job(&client, &url, &base, &image.image)
            .await
            .map_err(|e| anyhow::anyhow!("top-1 job for {}: {e}", image.name))?;
        let class = job["result"]["top_k"][0]["index"]
            .as_u64()
            .with_context(|| format!("no top-1 in {job}"))?;
        top1.insert(image.name.clone(), class);
    }
    let mut groups = vec![ProcGroup::new("inferq", vec![pid])];
    groups.extend(
        broker_pids()
            .into_iter()
            .map(|(name, p)| ProcGroup::new(&name, vec![p])),
    );
    groups.push(ProcGroup::loadgen());
    let mut rows = Vec::new();
    for image in images {
        for &c in &settings.concurrency {
            eprintln!("embedded: {} at concurrency {c}", image.name);
            let meter = CpuMeter::start(groups.clone());
            let r = closed_loop(c, settings.measure_secs, job(image)).await;
            let cpu = meter.finish(r.ok);
            let run = r.summary(c);
            let ratio_to_limit = limit
                .and_then(|l| l.full_rate(&image.name))
                .filter(|&l| l > 0.0)
                .map(|l| run.per_sec / l);
            rows.push(EmbeddedRow {
                image: image.name.clone(),
                run,
                ratio_to_limit,
                ratio_to_bare: None,
                worker_compute: r.compute.summary(),
                queue: r.queue.summary(),
                cpu,
            });
        }
    }
    Ok(EmbeddedReport {
        threads: cores.len(),
        cores: cores.to_vec(),
        max_batch,
        rows,
        memory: sampler.finish(),
        top1,
    })
}

async fn wait_ready(
    client: &reqwest::Client,
    base: &str,
    server: &mut Managed,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let url = format!("{base}/readyz");
    loop {
        let ready = client
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(());
        }
        check_running(server)?;
        if Instant::now() > deadline {
            bail!(
                "inferq not ready within {READY_TIMEOUT:?}; its log:\n{}",
                server.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The embedded server's table.
pub(crate) fn table(e: &EmbeddedReport) -> Table {
    let mut t = Table::new(
        &format!(
            "Embedded: inferq (in-memory queue), {} pinned inference thread(s) (cores {:?}), max_batch {}, closed loop",
            e.threads, e.cores, e.max_batch
        ),
        &[
            "image",
            "conc",
            "jobs/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "errors",
            "vs limit",
            "vs bare",
            "compute p50 ms",
            "queue p50 ms",
            "mean batch",
        ],
    );
    for r in &e.rows {
        t.row(vec![
            r.image.clone(),
            r.run.concurrency.to_string(),
            sig(r.run.per_sec),
            sig(r.run.latency.p50_ms),
            sig(r.run.latency.p90_ms),
            sig(r.run.latency.p99_ms),
            sig(r.run.latency.max_ms),
            r.run.errors.to_string(),
            pct(r.ratio_to_limit),
            pct(r.ratio_to_bare),
            sig(r.worker_compute.p50_ms),
            sig(r.queue.p50_ms),
            num(r.run.mean_batch, 2),
        ]);
        if let Some(err) = r.run.error_samples.first() {
            t.note(format!("{} c={}: {err}", r.image, r.run.concurrency));
        }
    }
    if let Some(kib) = e.memory.peak_kib.get("inferq") {
        t.note(format!(
            "inferq peak RSS {:.1} MiB; the same clients and images as the service rows",
            *kib as f64 / 1024.0
        ));
    }
    t
}
