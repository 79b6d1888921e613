//! Metrics: every name in one place, one registry per process.
//!
//! Dashboards and alerts have this single list to check against.
//! Conventions: prefix `inferq_`, base units (`_seconds`, `_bytes`),
//! counters end in `_total`, labels are bounded (model, stage, outcome,
//! code, route) and never carry a job id. [`metrics()`] is the process's
//! registry with every collector registered; [`render`] is what
//! `GET /metrics` answers (Prometheus text format).
//!
//! The two autoscaling signals are [`BACKLOG`] — jobs accepted and not yet
//! final, so *including* the ones workers hold unacked — and
//! [`OLDEST_WAITING_SECONDS`], both read from the shared store, so every
//! API process reports the same cluster-wide value. The store's counter is
//! only as durable as the store: a Redis that loses its data resets it to
//! zero while RabbitMQ still holds the jobs. [`QUEUE_READY`] (the broker's
//! own count of waiting messages, read by the API) plus the workers'
//! [`WORKER_IN_FLIGHT`] is the broker-side truth the autoscaler reads
//! beside it (docs/deploy.md, "Autoscaling").

pub mod listener;

use std::sync::LazyLock;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Jobs accepted by the API (counter; labels: model).
pub const JOBS_SUBMITTED_TOTAL: &str = "inferq_jobs_submitted_total";
/// Submissions refused (counter; labels: code).
pub const JOBS_REJECTED_TOTAL: &str = "inferq_jobs_rejected_total";
/// Jobs finished by a worker (counter; labels: model, outcome = final status).
pub const JOBS_COMPLETED_TOTAL: &str = "inferq_jobs_completed_total";
/// Failed jobs by error code (counter; labels: code).
pub const JOB_ERRORS_TOTAL: &str = "inferq_job_errors_total";
/// Duration of each job stage (histogram; labels: model, stage).
pub const STAGE_DURATION_SECONDS: &str = "inferq_stage_duration_seconds";
/// Jobs per inference call (histogram; labels: model).
pub const BATCH_SIZE: &str = "inferq_batch_size";
/// Jobs accepted and not final, queued or held by a worker (gauge; labels: model).
pub const BACKLOG: &str = "inferq_backlog_jobs";
/// Age of the oldest job not yet started (gauge; labels: model; 0 when none waits).
pub const OLDEST_WAITING_SECONDS: &str = "inferq_oldest_waiting_job_age_seconds";
/// Messages waiting in the job queue that no worker holds yet, as RabbitMQ
/// counts them (gauge; read by every API process with a passive declare).
pub const QUEUE_READY: &str = "inferq_queue_ready_jobs";
/// Jobs a worker holds right now, queued to or running on its threads (gauge).
pub const WORKER_IN_FLIGHT: &str = "inferq_worker_in_flight_jobs";
/// Time to load one model session (histogram; labels: model).
pub const MODEL_LOAD_SECONDS: &str = "inferq_model_load_seconds";
/// HTTP requests (counter; labels: route = the matched route template, method, status).
pub const HTTP_REQUESTS_TOTAL: &str = "inferq_http_requests_total";
/// HTTP request duration (histogram; labels: route, method).
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "inferq_http_request_duration_seconds";
/// Webhook attempts (counter; labels: outcome = delivered, retry, failed).
pub const WEBHOOK_ATTEMPTS_TOTAL: &str = "inferq_webhook_attempts_total";
/// Request-body bytes the API holds reservations for right now (gauge).
pub const BODY_BUDGET_IN_USE_BYTES: &str = "inferq_http_body_budget_in_use_bytes";
/// The API's in-flight request-body budget (gauge).
pub const BODY_BUDGET_LIMIT_BYTES: &str = "inferq_http_body_budget_limit_bytes";
/// Requests that found the body budget spent (counter; labels: outcome =
/// admitted after waiting, shed with 503 after the wait, too_large for the
/// whole budget).
pub const BODY_BUDGET_WAITS_TOTAL: &str = "inferq_http_body_budget_waits_total";
/// Build information (gauge, always 1; labels: version, component).
pub const BUILD_INFO: &str = "inferq_build_info";
/// Restarts of a supervised worker process after it died (counter; labels:
/// process = the child's index under `inferq-worker --processes`).
pub const WORKER_PROCESS_RESTARTS_TOTAL: &str = "inferq_worker_process_restarts_total";
/// Supervised worker processes currently running (gauge).
pub const WORKER_PROCESSES_RUNNING: &str = "inferq_worker_processes_running";
/// This process's resident memory, read from `/proc/self/statm` when
/// `/metrics` is rendered (gauge; the supervisor's merged answer labels each
/// worker process's sample `process`).
pub const PROCESS_RESIDENT_BYTES: &str = "inferq_process_resident_memory_bytes";
/// Resident memory a loaded model takes in this process, summed over its
/// inference threads' sessions: the RSS growth of loading and warming each
/// session (gauge; labels: model, version).
pub const MODEL_RESIDENT_BYTES: &str = "inferq_model_resident_memory_bytes";

/// Stage label values.
pub mod stage {
    pub const QUEUE: &str = "queue";
    pub const FETCH: &str = "fetch";
    pub const DECODE: &str = "decode";
    pub const PREPROCESS: &str = "preprocess";
    pub const INFERENCE: &str = "inference";
    pub const STORE: &str = "store";
    pub const TOTAL: &str = "total";
}

/// The process's collectors.
pub struct Metrics {
    pub registry: Registry,
    pub jobs_submitted: IntCounterVec,
    pub jobs_rejected: IntCounterVec,
    pub jobs_completed: IntCounterVec,
    pub job_errors: IntCounterVec,
    pub stage_seconds: HistogramVec,
    pub batch_size: HistogramVec,
    pub backlog: IntGaugeVec,
    pub oldest_waiting: GaugeVec,
    pub worker_in_flight: IntGauge,
    pub queue_ready: IntGauge,
    pub model_load_seconds: HistogramVec,
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    pub webhook_attempts: IntCounterVec,
    pub body_budget_in_use: IntGauge,
    pub body_budget_limit: IntGauge,
    pub body_budget_waits: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub process_restarts: IntCounterVec,
    pub processes_running: IntGauge,
    pub process_resident: IntGauge,
    pub model_resident: IntGaugeVec,
}

/// Latency buckets from 0.5 ms to 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let backlog = IntGaugeVec::new(
            Opts::new(
                BACKLOG,
                "Jobs accepted and not yet final (waiting or running), per model",
            ),
            &["model"],
        )
        .expect("valid metric");
        r.register(Box::new(backlog.clone()))
            .expect("registered once");
        let oldest_waiting = GaugeVec::new(
            Opts::new(
                OLDEST_WAITING_SECONDS,
                "Age of the oldest job no worker has started, per model",
            ),
            &["model"],
        )
        .expect("valid metric");
        r.register(Box::new(oldest_waiting.clone()))
            .expect("registered once");
        let worker_in_flight = IntGauge::new(WORKER_IN_FLIGHT, "Jobs this worker holds unacked")
            .expect("valid metric");
        r.register(Box::new(worker_in_flight.clone()))
            .expect("registered once");
        let queue_ready = IntGauge::new(
            QUEUE_READY,
            "Messages waiting in the job queue, not yet delivered, as the broker counts them",
        )
        .expect("valid metric");
        r.register(Box::new(queue_ready.clone()))
            .expect("registered once");
        let build_info = IntGaugeVec::new(
            Opts::new(BUILD_INFO, "Build information; always 1"),
            &["version", "component"],
        )
        .expect("valid metric");
        r.register(Box::new(build_info.clone()))
            .expect("registered once");
        let processes_running = IntGauge::new(
            WORKER_PROCESSES_RUNNING,
            "Supervised worker processes currently running",
        )
        .expect("valid metric");
        r.register(Box::new(processes_running.clone()))
            .expect("registered once");
        let model_resident = IntGaugeVec::new(
            Opts::new(
                MODEL_RESIDENT_BYTES,
                "Resident memory of a loaded model's sessions in this process",
            ),
            &["model", "version"],
        )
        .expect("valid metric");
        r.register(Box::new(model_resident.clone()))
            .expect("registered once");
        Metrics {
            process_resident: gauge(
                &r,
                PROCESS_RESIDENT_BYTES,
                "Resident memory (RSS) of this process",
            ),
            model_resident,
            process_restarts: counter(
                &r,
                WORKER_PROCESS_RESTARTS_TOTAL,
                "Restarts of supervised worker processes after they died",
                &["process"],
            ),
            processes_running,
            jobs_submitted: counter(
                &r,
                JOBS_SUBMITTED_TOTAL,
                "Jobs accepted by the API",
                &["model"],
            ),
            jobs_rejected: counter(
                &r,
                JOBS_REJECTED_TOTAL,
                "Submissions refused, by error code",
                &["code"],
            ),
            jobs_completed: counter(
                &r,
                JOBS_COMPLETED_TOTAL,
                "Jobs finished by workers, by final status",
                &["model", "outcome"],
            ),
            job_errors: counter(&r, JOB_ERRORS_TOTAL, "Failed jobs by error code", &["code"]),
            stage_seconds: histogram(
                &r,
                STAGE_DURATION_SECONDS,
                "Duration of each job stage",
                &["model", "stage"],
                SECONDS_BUCKETS,
            ),
            batch_size: histogram(
                &r,
                BATCH_SIZE,
                "Jobs per inference call",
                &["model"],
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
            ),
            model_load_seconds: histogram(
                &r,
                MODEL_LOAD_SECONDS,
                "Time to load one model session",
                &["model"],
                SECONDS_BUCKETS,
            ),
            http_requests: counter(
                &r,
                HTTP_REQUESTS_TOTAL,
                "HTTP requests by matched route, method and status",
                &["route", "method", "status"],
            ),
            http_seconds: histogram(
                &r,
                HTTP_REQUEST_DURATION_SECONDS,
                "HTTP request duration by matched route",
                &["route", "method"],
                SECONDS_BUCKETS,
            ),
            webhook_attempts: counter(
                &r,
                WEBHOOK_ATTEMPTS_TOTAL,
                "Webhook delivery attempts by outcome",
                &["outcome"],
            ),
            body_budget_in_use: gauge(
                &r,
                BODY_BUDGET_IN_USE_BYTES,
                "Request-body bytes reserved by requests in progress",
            ),
            body_budget_limit: gauge(
                &r,
                BODY_BUDGET_LIMIT_BYTES,
                "The in-flight request-body budget",
            ),
            body_budget_waits: counter(
                &r,
                BODY_BUDGET_WAITS_TOTAL,
                "Requests that found the body budget spent, by outcome",
                &["outcome"],
            ),
            backlog,
            oldest_waiting,
            worker_in_flight,
            queue_ready,
            build_info,
            registry: r,
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Marks this process's component (`api`, `worker`, `worker-supervisor`,
/// `embedded`) in the
/// build-info gauge.
pub fn set_build_info(component: &str) {
    metrics()
        .build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION"), component])
        .set(1);
}

/// The registry in the Prometheus text format, with the process's RSS
/// gauge read just before.
pub fn render() -> String {
    if let Some(rss) = crate::procmem::resident_bytes() {
        metrics()
            .process_resident
            .set(i64::try_from(rss).unwrap_or(i64::MAX));
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&metrics().registry.gather(), &mut out)
        .expect("text encoding cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_renders_with_its_name() {
        let m = metrics();
        m.jobs_submitted.with_label_values(&["m"]).inc();
        m.stage_seconds
            .with_label_values(&["m", stage::TOTAL])
            .observe(0.01);
        m.backlog.with_label_values(&["m"]).set(3);
        m.queue_ready.set(5);
        set_build_info("test");
        let text = render();
        for name in [
            JOBS_SUBMITTED_TOTAL,
            STAGE_DURATION_SECONDS,
            BACKLOG,
            QUEUE_READY,
            BUILD_INFO,
            PROCESS_RESIDENT_BYTES,
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(
            text.contains("inferq_backlog_jobs{model=\"m\"} 3"),
            "{text}"
        );
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("inferq_process_resident_memory_bytes "))
            .and_then(|v| v.parse().ok())
            .expect("an RSS sample");
        assert!(rss > 1e6, "{rss}");
    }
}
