//! Command line of `inferq-bench` and the settings derived from it.
//!
//! The flags choose which phases run (`--only`), how long each measurement
//! lasts (`--secs`, or `--quick` for a smoke run), the client concurrency
//! levels of the service phase, the worker processes and where the binaries
//! and the report live. [`Settings`] turns them into the durations the
//! phases use, so the phases never look at raw flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

/// The measurements `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Phase {
    /// In-process limit: decode, preprocess and inference on pinned threads.
    Limit,
    /// Bare Python pipeline (Pillow + numpy + onnxruntime), one pinned process per core.
    Bare,
    /// The embedded server (`inferq`, in-memory queue), closed-loop clients.
    Embedded,
    /// The full path: API + workers on RabbitMQ and Redis, closed-loop clients.
    Service,
    /// POST /v1/jobs alone (API, no workers).
    Submit,
    /// A standing backlog (`--backlog` jobs) drained by the workers.
    Backlog,
    /// Worker spawn to ready, and first-job latency.
    Coldstart,
}

pub(crate) const ALL_PHASES: [Phase; 7] = [
    Phase::Limit,
    Phase::Bare,
    Phase::Embedded,
    Phase::Service,
    Phase::Submit,
    Phase::Backlog,
    Phase::Coldstart,
];

/// Benchmarks InferQ on this machine: the in-process limit, a bare Python
/// pipeline, the embedded server, the full service path with each process
/// group's CPU, the submit path alone, a standing backlog, cold start and
/// memory, and the targets computed from them. Prints tables and
/// writes <out>/bench.json and <out>/bench.md. Needs RabbitMQ on
/// 127.0.0.1:5672 and Redis on 127.0.0.1:6379 (`make services`).
#[derive(Debug, Clone, Parser)]
#[command(name = "inferq-bench", version)]
pub(crate) struct Cli {
    /// Seconds per measurement: each service concurrency level and each
    /// submit run; each limit sub-measurement takes at most 3 s of it.
    /// With --quick: at most 1.5 s, and 0.5 s per limit sub-measurement.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Client concurrency levels of the service phase.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    pub concurrency: Vec<usize>,
    /// Worker processes in the service phase, one inference thread each,
    /// pinned to different cores (round robin over the allowed cores).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Concurrent clients of the submit-path phase. 16 by default: by
    /// Little's law 64 clients at 5,000 jobs/s wait 12.8 ms on average, so a
    /// p99 target of 5 ms can only be met with fewer requests in flight.
    #[arg(long, default_value_t = 16)]
    pub submit_concurrency: usize,
    /// Directory with inferq-api and inferq-worker.
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
    /// Where bench.json, bench.md and the process logs go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// Run only these phases.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Vec<Phase>,
    /// Short phases (a smoke run, about a minute in all); numbers are rough.
    #[arg(long)]
    pub quick: bool,
    /// `[batching] max_batch` values the service phase runs with, each in
    /// its own deployment (1 = batching off). The model's manifest is
    /// copied with the value set; the default compares off with the
    /// shipped EfficientNet setting (2) and with 4.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub max_batch: Vec<usize>,
    /// Model repository (the real models).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Model to measure (must exist as version --model-version).
    #[arg(long, default_value = "efficientnet-lite0")]
    pub model: String,
    #[arg(long, default_value_t = 1)]
    pub model_version: u64,
    /// Jobs queued before the workers start in the backlog phase (500 with
    /// --quick unless given).
    #[arg(long)]
    pub backlog: Option<u64>,
    /// Python with Pillow, numpy and onnxruntime for the bare pipeline
    /// (default: the project's venv, .cache/venv/bin/python).
    #[arg(long)]
    pub python: Option<PathBuf>,
}

/// What the phases use, derived from the flags.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    pub phases: Vec<Phase>,
    /// One limit sub-measurement (per image, per batch size).
    #[serde(serialize_with = "secs")]
    pub limit_secs: Duration,
    /// One service concurrency level, one submit run.
    #[serde(serialize_with = "secs")]
    pub measure_secs: Duration,
    /// Warm-up before the service measurements.
    #[serde(serialize_with = "secs")]
    pub warmup_secs: Duration,
    pub concurrency: Vec<usize>,
    pub workers: usize,
    pub submit_concurrency: usize,
    pub batch_sizes: Vec<usize>,
    /// Service runs, one per `[batching] max_batch`.
    pub max_batches: Vec<usize>,
    pub quick: bool,
    pub bin_dir: PathBuf,
    pub out: PathBuf,
    pub model_dir: PathBuf,
    pub model: String,
    pub model_version: u64,
    /// Jobs of the backlog phase.
    pub backlog_jobs: u64,
    /// `--python`, when given.
    pub python: Option<PathBuf>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Settings {
    pub(crate) fn from_cli(cli: Cli) -> anyhow::Result<Settings> {
        anyhow::ensure!(
            cli.secs > 0.0 && cli.secs.is_finite(),
            "--secs must be positive"
        );
        anyhow::ensure!(
            !cli.concurrency.is_empty() && cli.concurrency.iter().all(|&c| c > 0),
            "--concurrency needs positive numbers, e.g. 1,4,16,64"
        );
        anyhow::ensure!(cli.workers > 0, "--workers must be at least 1");
        anyhow::ensure!(
            !cli.max_batch.is_empty() && cli.max_batch.iter().all(|&b| (1..=64).contains(&b)),
            "--max-batch needs values within 1..=64, e.g. 1,2,4"
        );
        anyhow::ensure!(cli.backlog != Some(0), "--backlog must be at least 1");
        anyhow::ensure!(
            cli.submit_concurrency > 0,
            "--submit-concurrency must be at least 1"
        );
        let phases = if cli.only.is_empty() {
            ALL_PHASES.to_vec()
        } else {
            // In the fixed order, once each.
            ALL_PHASES
                .into_iter()
                .filter(|p| cli.only.contains(p))
                .collect()
        };
        let (limit, measure, warmup) = if cli.quick {
            (0.5, cli.secs.min(1.5), 0.5)
        } else {
            (cli.secs.min(3.0), cli.secs, 2.0)
        };
        Ok(Settings {
            phases,
            limit_secs: Duration::from_secs_f64(limit),
            measure_secs: Duration::from_secs_f64(measure),
            warmup_secs: Duration::from_secs_f64(warmup),
            concurrency: cli.concurrency,
            workers: cli.workers,
            submit_concurrency: cli.submit_concurrency,
            batch_sizes: vec![1, 2, 4, 8, 16],
            max_batches: cli.max_batch,
            quick: cli.quick,
            bin_dir: cli.bin_dir,
            out: cli.out,
            model_dir: cli.model_dir.unwrap_or_else(inferq_tests::real_models),
            model: cli.model,
            model_version: cli.model_version,
            backlog_jobs: cli.backlog.unwrap_or(if cli.quick { 500 } else { 10_000 }),
            python: cli.python,
        })
    }

    pub(crate) fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> anyhow::Result<Settings> {
        let argv = std::iter::once("inferq-bench").chain(args.iter().copied());
        Settings::from_cli(Cli::try_parse_from(argv)?)
    }

    #[test]
    fn defaults_run_every_phase() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.phases, ALL_PHASES.to_vec());
        assert_eq!(s.concurrency, vec![1, 4, 16, 64]);
        assert_eq!(s.measure_secs, Duration::from_secs(5));
        assert_eq!(s.limit_secs, Duration::from_secs(3));
        assert_eq!(s.bin_dir, PathBuf::from("target/release"));
        assert_eq!(s.max_batches, vec![1, 2, 4]);
        assert_eq!(s.backlog_jobs, 10_000);
        assert!(s.runs(Phase::Bare) && s.runs(Phase::Embedded) && s.runs(Phase::Backlog));
    }

    #[test]
    fn new_sections_can_be_picked_alone_and_quick_shrinks_the_backlog() {
        let s = settings(&["--only", "backlog,embedded,bare"]).unwrap();
        assert_eq!(s.phases, vec![Phase::Bare, Phase::Embedded, Phase::Backlog]);
        assert_eq!(settings(&["--quick"]).unwrap().backlog_jobs, 500);
        let s = settings(&["--quick", "--backlog", "2000"]).unwrap();
        assert_eq!(s.backlog_jobs, 2000);
    }

    #[test]
    fn only_keeps_the_fixed_order_and_drops_repeats() {
        let s = settings(&["--only", "coldstart,limit,limit"]).unwrap();
        assert_eq!(s.phases, vec![Phase::Limit, Phase::Coldstart]);
        assert!(s.runs(Phase::Limit) && !s.runs(Phase::Service));
    }

    #[test]
    fn quick_shortens_every_phase() {
        let s = settings(&["--quick", "--concurrency", "2,8"]).unwrap();
        assert!(s.quick);
        assert_eq!(s.concurrency, vec![2, 8]);
        assert!(s.measure_secs <= Duration::from_millis(1500));
        assert!(s.limit_secs <= Duration::from_millis(500));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(settings(&["--concurrency", "0"]).is_err());
        assert!(settings(&["--secs", "0"]).is_err());
        assert!(settings(&["--workers", "0"]).is_err());
        assert!(settings(&["--only", "nothing"]).is_err());
        assert!(settings(&["--max-batch", "0"]).is_err());
        assert!(settings(&["--max-batch", "65"]).is_err());
        assert!(settings(&["--backlog", "0"]).is_err());
    }
}
