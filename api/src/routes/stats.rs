//! `GET /v1/stats`: the service's live numbers as JSON, per model.
//!
//! The web console's live panel reads this, and so can any script that wants
//! the numbers without running Prometheus. It must be honest in the split
//! deployment, where the API and the workers are separate processes and the
//! workers' Prometheus counters live in the workers. So everything here is
//! read from the shared result store, never from this process's metrics:
//!
//! - the *backlog* (jobs accepted and not final) and the age of the oldest
//!   job no worker has started — the same numbers the autoscaling gauges
//!   report (see [`crate::metrics::refresh_gauges`]);
//! - *throughput*, *outcomes* and *latency percentiles* from the model's
//!   window of recent completions ([`inferq_backends::store::recent`]), which
//!   the write that makes a job final appends to, whichever worker (or API,
//!   for a cancel) made it final.
//!
//! - *memory* per model: the resident bytes of the model's session and the
//!   RSS of the worker process after its jobs, carried by the same
//!   completions (each job's `timings` has them, see
//!   `inferq_core::job::Timings`). Only `process_rss_bytes` at the top is
//!   this process's own figure: the API's RSS (the whole service in the
//!   embedded server).
//! - *workers*: every worker process that finished a job in the window
//!   (named `host/pid` in the jobs' timings), with its newest and largest
//!   RSS and its job count — the per-process view without scraping each
//!   worker's `/metrics` (`inferq_process_resident_memory_bytes`). A worker
//!   that finished nothing in the window is not listed.
//!
//! Every API replica therefore answers the same (but for its own RSS). The window holds at most
//! [`RECENT_CAPACITY`] completions per model: when a busy model finishes
//! more than that within the requested window, the numbers describe the
//! span the window does cover, and `covered_secs` says how long that is.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use inferq_backends::store::recent::{Completion, RECENT_CAPACITY};
use inferq_core::JobStatus;
use inferq_core::job::Timings;
use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;
use crate::routes::jobs::query;
use crate::state::AppState;

/// Window used when the request names none (seconds).
pub const DEFAULT_WINDOW_SECS: f64 = 60.0;
/// Longest window a request may ask for (seconds).
pub const MAX_WINDOW_SECS: f64 = 3600.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// Seconds of recent completions to summarise.
    window: Option<f64>,
}

/// Nearest-rank percentiles of one duration, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// `None` for no samples.
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = ((p / 100.0) * values.len() as f64).ceil() as usize;
            round3(values[i.clamp(1, values.len()) - 1])
        };
        Some(Percentiles {
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: round3(values[values.len() - 1]),
        })
    }
}

/// One model's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ModelStats {
    pub model: String,
    /// Jobs accepted and not yet final: waiting or running.
    pub backlog: u64,
    /// Age of the oldest job no worker has started (0 when none waits).
    pub oldest_waiting_secs: f64,
    /// Jobs that became final within the window.
    pub completed: u64,
    /// Those jobs by final status.
    pub outcomes: BTreeMap<String, u64>,
    /// Completed jobs per second over the window.
    pub throughput_per_sec: f64,
    /// Seconds the numbers describe: the window, or less when more jobs
    /// finished in it than the store keeps.
    pub covered_secs: f64,
    /// Acceptance to result of the succeeded jobs (`timings.total_ms`).
    pub latency_ms: Option<Percentiles>,
    /// Each stage of the succeeded jobs: `queue`, `fetch`, `decode`,
    /// `preprocess`, `inference`.
    pub stages_ms: BTreeMap<String, Percentiles>,
    /// Mean jobs per inference call of the succeeded jobs.
    pub mean_batch_size: Option<f64>,
    /// Memory of the workers that ran the succeeded jobs; `None` when no
    /// job in the window carries memory figures.
    pub memory: Option<MemoryStats>,
}

/// Memory figures of one model, from its newest completions (bytes).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MemoryStats {
    /// Resident memory of one session of the model (a worker holds one per
    /// inference thread), as measured when the newest job's worker loaded it.
    pub session_resident_bytes: u64,
    /// RSS of the worker process after the newest job.
    pub worker_rss_bytes: u64,
    /// Largest worker RSS after any job in the window.
    pub worker_rss_max_bytes: u64,
}

impl MemoryStats {
    /// From timings newest first; jobs without figures (older records,
    /// no `/proc`) are left out.
    pub fn of(timed: &[&Timings]) -> Option<Self> {
        let mut measured = timed.iter().filter(|t| t.rss_after_bytes > 0);
        let newest = measured.next()?;
        let max = measured
            .map(|t| t.rss_after_bytes)
            .fold(newest.rss_after_bytes, u64::max);
        Some(MemoryStats {
            session_resident_bytes: newest.model_bytes,
            worker_rss_bytes: newest.rss_after_bytes,
            worker_rss_max_bytes: max,
        })
    }
}

/// One worker process, as the jobs it finished in the window describe it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WorkerStats {
    /// `host/pid` of the process.
    pub worker: String,
    /// Jobs it finished in the window (all models).
    pub jobs: u64,
    /// Its RSS after its newest job (bytes).
    pub rss_bytes: u64,
    /// Its largest RSS after any job in the window (bytes).
    pub rss_max_bytes: u64,
    /// Seconds since its newest job finished.
    pub last_job_secs_ago: f64,
}

/// The worker processes seen in every model's completions since `since_ms`,
/// by name.
pub fn workers(samples: &[ModelSample], since_ms: u64, now_ms: u64) -> Vec<WorkerStats> {
    // worker -> (jobs, newest finish, rss then, largest rss)
    let mut seen: BTreeMap<&str, (u64, u64, u64, u64)> = BTreeMap::new();
    let named = samples
        .iter()
        .flat_map(|s| &s.recent)
        .filter(|c| c.finished_ms >= since_ms)
        .filter_map(|c| Some((c.finished_ms, c.timings.as_ref()?)))
        .filter(|(_, t)| !t.worker.is_empty() && t.rss_after_bytes > 0);
    for (at, t) in named {
        let e = seen.entry(&t.worker).or_insert((0, 0, 0, 0));
        e.0 += 1;
        if at >= e.1 {
            (e.1, e.2) = (at, t.rss_after_bytes);
        }
        e.3 = e.3.max(t.rss_after_bytes);
    }
    seen.into_iter()
        .map(|(worker, (jobs, at, rss, max))| WorkerStats {
            worker: worker.to_owned(),
            jobs,
            rss_bytes: rss,
            rss_max_bytes: max,
            last_job_secs_ago: round3(now_ms.saturating_sub(at) as f64 / 1000.0),
        })
        .collect()
}

/// The sums over every model.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub backlog: u64,
    pub completed: u64,
    pub throughput_per_sec: f64,
}

/// The answer of `GET /v1/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub generated_at: chrono::DateTime<chrono::Utc>,
    pub window_secs: f64,
    /// RSS of the process that answered (bytes; `None` without `/proc`).
    pub process_rss_bytes: Option<u64>,
    pub totals: Totals,
    pub models: Vec<ModelStats>,
    /// The worker processes that finished jobs in the window.
    pub workers: Vec<WorkerStats>,
}

/// Reads one stage's duration out of a job's timings.
type StageOf = fn(&Timings) -> f64;

/// The stages reported in `stages_ms`, by name.
const STAGES: [(&str, StageOf); 5] = [
    ("queue", |t| t.queue_ms),
    ("fetch", |t| t.fetch_ms),
    ("decode", |t| t.decode_ms),
    ("preprocess", |t| t.preprocess_ms),
    ("inference", |t| t.inference_ms),
];

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// What the store told us about one model, before summarising.
pub struct ModelSample {
    pub model: String,
    pub backlog: u64,
    pub oldest_waiting_ms: Option<u64>,
    /// Newest first, as the store returns them.
    pub recent: Vec<Completion>,
}

/// Summarises one model's sample over the `window_ms` before `now_ms`.
pub fn summarise(sample: ModelSample, now_ms: u64, window_ms: u64) -> ModelStats {
    let since = now_ms.saturating_sub(window_ms);
    let total_kept = sample.recent.len();
    let in_window: Vec<&Completion> = sample
        .recent
        .iter()
        .filter(|c| c.finished_ms >= since)
        .collect();
    // A full list whose oldest entry is still inside the window has dropped
    // completions that were inside it too: describe the span it covers.
    let truncated = total_kept >= RECENT_CAPACITY && in_window.len() == total_kept;
    let covered_ms = match (truncated, in_window.last()) {
        (true, Some(oldest)) => now_ms.saturating_sub(oldest.finished_ms).max(1),
        _ => window_ms.max(1),
    };
    let mut outcomes = BTreeMap::new();
    for c in &in_window {
        *outcomes.entry(c.status.to_string()).or_insert(0) += 1;
    }
    let timed: Vec<&Timings> = in_window
        .iter()
        .filter(|c| c.status == JobStatus::Succeeded)
        .filter_map(|c| c.timings.as_ref())
        .collect();
    let stage = |f: StageOf| Percentiles::of(timed.iter().map(|t| f(t)).collect());
    let stages_ms = STAGES
        .iter()
        .filter_map(|(name, f)| Some((name.to_string(), stage(*f)?)))
        .collect();
    let mean_batch_size = (!timed.is_empty()).then(|| {
        round3(timed.iter().map(|t| t.batch_size as f64).sum::<f64>() / timed.len() as f64)
    });
    let covered_secs = covered_ms as f64 / 1000.0;
    let memory = MemoryStats::of(&timed);
    ModelStats {
        model: sample.model,
        backlog: sample.backlog,
        oldest_waiting_secs: sample
            .oldest_waiting_ms
            .map_or(0.0, |at| round3(now_ms.saturating_sub(at) as f64 / 1000.0)),
        completed: in_window.len() as u64,
        outcomes,
        throughput_per_sec: round3(in_window.len() as f64 / covered_secs),
        covered_secs: round3(covered_secs),
        latency_ms: stage(|t| t.total_ms),
        stages_ms,
        mean_batch_size,
        memory,
    }
}

/// `GET /v1/stats?window=SECONDS`
#[utoipa::path(
    get,
    operation_id = "get_stats",
    path = "/v1/stats",
    tag = "stats",
    params(("window" = Option<f64>, Query, description = "Seconds of recent completions to summarise, 1 to 3600 (default 60)")),
    responses(
        (status = 200, description = "Backlog, throughput and latency per model, from the shared store", body = Stats),
        (status = 400, description = "Bad window", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the read scope", body = crate::http::error::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<Stats>, ApiError> {
    let q = query(q)?;
    let window = q.window.unwrap_or(DEFAULT_WINDOW_SECS);
    if !(window.is_finite() && (1.0..=MAX_WINDOW_SECS).contains(&window)) {
        return Err(ApiError::InvalidArgument(format!(
            "window must be a number of seconds from 1 to {MAX_WINDOW_SECS}"
        )));
    }
    let names: Vec<String> = state.models.current().names().map(str::to_owned).collect();
    let store = &state.store;
    let samples = futures::future::try_join_all(names.into_iter().map(|model| async move {
        let backlog = store.backlog(&model).await?;
        let oldest_waiting_ms = store.oldest_waiting(&model).await?;
        let recent = store.recent_completions(&model).await?;
        Ok::<_, inferq_backends::store::StoreError>(ModelSample {
            model,
            backlog,
            oldest_waiting_ms,
            recent,
        })
    }))
    .await?;
    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis().max(0) as u64;
    let window_ms = (window * 1000.0).round() as u64;
    let workers = workers(&samples, now_ms.saturating_sub(window_ms), now_ms);
    let models: Vec<ModelStats> = samples
        .into_iter()
        .map(|s| summarise(s, now_ms, window_ms))
        .collect();
    let totals = Totals {
        backlog: models.iter().map(|m| m.backlog).sum(),
        completed: models.iter().map(|m| m.completed).sum(),
        throughput_per_sec: round3(models.iter().map(|m| m.throughput_per_sec).sum()),
    };
    Ok(Json(Stats {
        generated_at: now,
        window_secs: window,
        process_rss_bytes: inferq_runtime::procmem::resident_bytes(),
        totals,
        models,
        workers,
    }))
}

#[cfg(test)]
mod tests;
