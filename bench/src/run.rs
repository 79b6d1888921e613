//! Runs the selected phases in order and assembles the report.
//!
//! Order matters: the limit phase runs first (its images/s are the
//! denominator of the ratios), then the bare Python pipeline, the embedded
//! server, the service, the submit path, the backlog and cold start, each
//! with its own processes (and namespace, where RabbitMQ and Redis are
//! used). After the phases, [`compare`] fills in what needs more than one
//! phase — the ratios to the bare pipeline, the top-1 check, the backlog's
//! ratio to the closed loop — and the targets are computed. A failing phase
//! is recorded in the report's `errors` and the others still run, except
//! that a missing prerequisite (binaries, model, ONNX Runtime, the venv's
//! python, RabbitMQ/Redis) is reported before anything starts.

use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::{Phase, Settings};
use crate::deploy::{pinned_worker_flags, worker_cores};
use crate::report::{Host, Report, SCHEMA_VERSION, Targets};
use crate::targets::{TargetInputs, evaluate};
use crate::{backlog, bare, coldstart, embedded, images, limit, service};

/// Fails early, with what to do, when something the phases need is missing.
fn preflight(settings: &Settings) -> anyhow::Result<()> {
    let ort = inferq_tests::ort_library();
    if !ort.is_file() {
        bail!(
            "ONNX Runtime library not found at {} (run `make assets`, or set ORT_DYLIB_PATH)",
            ort.display()
        );
    }
    let model = settings
        .model_dir
        .join(&settings.model)
        .join(settings.model_version.to_string())
        .join("model.onnx");
    if !model.is_file() {
        bail!("{} not found (run `make assets`)", model.display());
    }
    if settings.runs(Phase::Bare) {
        let python = bare::python(settings);
        if !python.is_file() {
            bail!(
                "{} not found for the bare pipeline (run `make assets`, or pass --python)",
                python.display()
            );
        }
    }
    let mut bins = Vec::new();
    if settings.runs(Phase::Embedded) {
        bins.push("inferq");
    }
    let needs_services = settings
        .phases
        .iter()
        .any(|p| !matches!(p, Phase::Limit | Phase::Bare | Phase::Embedded));
    if needs_services {
        bins.extend(["inferq-api", "inferq-worker"]);
    }
    for bin in bins {
        let p = settings.bin_dir.join(bin);
        if !p.is_file() {
            let release = settings.bin_dir.ends_with("release");
            bail!(
                "{bin} not built ({} missing): run cargo build{} --bins, or pass --bin-dir",
                p.display(),
                if release { " --release" } else { "" }
            );
        }
    }
    if needs_services {
        for (what, port) in [("RabbitMQ", 5672), ("Redis", 6379)] {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
                bail!("{what} is not listening on 127.0.0.1:{port} (run `make services`)");
            }
        }
    }
    Ok(())
}

pub(crate) async fn run(settings: Settings) -> anyhow::Result<Report> {
    preflight(&settings)?;
    let imgs = images::load_all()?;
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        host: Host::detect(),
        settings: settings.clone(),
        limit: None,
        bare: None,
        embedded: None,
        service: None,
        submit: None,
        backlog: None,
        coldstart: Vec::new(),
        targets: None,
        errors: Vec::new(),
    };
    let cores = worker_cores(settings.workers);
    let shipped = service::shipped_max_batch(&settings)?;
    let mut errors = Vec::new();
    if settings.runs(Phase::Limit) {
        let entry =
            limit::load_model(&settings.model_dir, &settings.model, settings.model_version)?;
        let (imgs, secs, sizes) = (
            imgs.clone(),
            settings.limit_secs,
            settings.batch_sizes.clone(),
        );
        let result = tokio::task::spawn_blocking(move || limit::run(&entry, &imgs, secs, &sizes))
            .await
            .context("limit phase panicked")?;
        match result {
            Ok(l) => report.limit = Some(l),
            Err(e) => errors.push(failed("limit", e)),
        }
    }
    if settings.runs(Phase::Bare) {
        let (s, imgs, c) = (settings.clone(), imgs.clone(), cores.clone());
        let result = tokio::task::spawn_blocking(move || bare::run(&s, &imgs, &c))
            .await
            .context("bare phase panicked")?;
        match result {
            Ok(b) => report.bare = Some(b),
            Err(e) => errors.push(failed("bare", e)),
        }
    }
    if settings.runs(Phase::Embedded) {
        match embedded::run(&settings, &imgs, report.limit.as_ref(), &cores, shipped).await {
            Ok(e) => report.embedded = Some(e),
            Err(e) => errors.push(failed("embedded", e)),
        }
    }
    if settings.runs(Phase::Service) {
        match service::service(&settings, &imgs, report.limit.as_ref()).await {
            Ok(s) => report.service = Some(s),
            Err(e) => errors.push(failed("service", e)),
        }
    }
    if settings.runs(Phase::Submit) {
        match service::submit(&settings).await {
            Ok(s) => report.submit = Some(s),
            Err(e) => errors.push(failed("submit", e)),
        }
    }
    if settings.runs(Phase::Backlog) {
        let flags = cores.iter().map(|&c| pinned_worker_flags(c)).collect();
        match backlog::run(&settings, &imgs[0], flags, shipped).await {
            Ok(b) => report.backlog = Some(b),
            Err(e) => errors.push(failed("backlog", e)),
        }
    }
    if settings.runs(Phase::Coldstart) {
        match coldstart::run(&settings, &imgs[0], shipped).await {
            Ok(c) => report.coldstart = c,
            Err(e) => errors.push(failed("coldstart", e)),
        }
    }
    report.errors = errors;
    compare(&mut report);
    Ok(report)
}

/// Fills in the cross-phase numbers and the targets (for the first image,
/// the 640×480 JPEG).
fn compare(r: &mut Report) {
    let bare_rate = |image: &str| {
        r.bare
            .as_ref()
            .and_then(|rows| rows.iter().find(|b| b.image == image))
            .map(|b| b.out.images_per_sec)
            .filter(|&x| x > 0.0)
    };
    let mut ratios = Vec::new();
    if let Some(s) = &r.service {
        ratios = s.rows.iter().map(|row| bare_rate(&row.image)).collect();
    }
    if let Some(s) = &mut r.service {
        for (row, bare) in s.rows.iter_mut().zip(ratios) {
            row.ratio_to_bare = bare.map(|b| row.run.per_sec / b);
        }
    }
    let mut ratios = Vec::new();
    if let Some(e) = &r.embedded {
        ratios = e.rows.iter().map(|row| bare_rate(&row.image)).collect();
    }
    if let Some(e) = &mut r.embedded {
        for (row, bare) in e.rows.iter_mut().zip(ratios) {
            row.ratio_to_bare = bare.map(|b| row.run.per_sec / b);
        }
    }
    if let Some(rows) = &mut r.bare {
        for row in rows.iter_mut() {
            row.ratio_to_limit = r
                .limit
                .as_ref()
                .and_then(|l| l.full_rate(&row.image))
                .filter(|&l| l > 0.0)
                .map(|l| row.out.images_per_sec / l);
            row.inferq_top1 = r
                .embedded
                .as_ref()
                .and_then(|e| e.top1.get(&row.image).copied());
        }
    }
    if let (Some(b), Some(s)) = (&mut r.backlog, &r.service) {
        let closed = s
            .rows
            .iter()
            .filter(|row| row.image == b.image && row.max_batch == b.max_batch)
            .map(|row| row.run.per_sec)
            .max_by(f64::total_cmp)
            .filter(|&x| x > 0.0);
        b.ratio_to_closed_loop = closed.map(|c| b.steady_per_sec.unwrap_or(b.per_sec) / c);
    }
    let image = images::IMAGE_FILES[0];
    let inputs = TargetInputs::gather(
        image,
        r.limit.as_ref(),
        r.bare.as_deref(),
        r.embedded.as_ref(),
        r.service.as_ref(),
        r.submit.as_deref(),
    );
    r.targets = Some(Targets {
        results: evaluate(&inputs),
        inputs,
    });
}

/// Logs a phase's failure and returns the line for the report.
fn failed(phase: &str, e: anyhow::Error) -> String {
    eprintln!("{phase} phase failed: {e:#}");
    format!("{phase}: {e:#}")
}
