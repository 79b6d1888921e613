//! Runs the selected phases in order and assembles the report.
//!
//! Order matters: the limit phase runs first (its images/s are the
//! denominator of the service ratios), then the service, the submit path and
//! cold start, each with its own processes and namespace. A failing phase is
//! recorded in the report's `errors` and the others still run, except that
//! a missing prerequisite (binaries, model, ONNX Runtime, RabbitMQ/Redis) is
//! reported before anything starts.

use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::{Phase, Settings};
use crate::report::{Host, Report, SCHEMA_VERSION};
use crate::{coldstart, images, limit, service};

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
    let needs_services = settings.phases.iter().any(|p| *p != Phase::Limit);
    if needs_services {
        for bin in ["inferq-api", "inferq-worker"] {
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
        service: None,
        submit: None,
        coldstart: None,
        errors: Vec::new(),
    };
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
    if settings.runs(Phase::Coldstart) {
        match coldstart::run(&settings, &imgs[0]).await {
            Ok(c) => report.coldstart = Some(c),
            Err(e) => errors.push(failed("coldstart", e)),
        }
    }
    report.errors = errors;
    Ok(report)
}

/// Logs a phase's failure and returns the line for the report.
fn failed(phase: &str, e: anyhow::Error) -> String {
    eprintln!("{phase} phase failed: {e:#}");
    format!("{phase}: {e:#}")
}
