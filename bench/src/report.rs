//! The benchmark report: one serialisable structure, written as
//! `bench.json` (for tools and later comparison) and `bench.md` (for
//! people), and printed as aligned tables.
//!
//! Phases that were not run (`--only`) or failed are `null` in the JSON and
//! missing from the tables; a failed phase's error is kept in `errors`, so a
//! partial report still says what went wrong.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::backlog::BacklogReport;
use crate::bare::BareRow;
use crate::cli::Settings;
use crate::coldstart::ColdStartReport;
use crate::embedded::EmbeddedReport;
use crate::limit::LimitReport;
use crate::service::{ServiceReport, SubmitRow};
use crate::table::{Table, num, pct, sig};
use crate::targets::{Target, TargetInputs};
use crate::{backlog, bare, cpu_table, embedded, targets};

/// Bumped when the JSON shape changes incompatibly.
pub(crate) const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub schema_version: u32,
    pub started_at: String,
    pub host: Host,
    pub settings: Settings,
    pub limit: Option<LimitReport>,
    pub bare: Option<Vec<BareRow>>,
    pub embedded: Option<EmbeddedReport>,
    pub service: Option<ServiceReport>,
    pub submit: Option<Vec<SubmitRow>>,
    pub backlog: Option<BacklogReport>,
    /// The benchmarked model alone, then the whole repository (schema 2;
    /// schema 1 had one object, the repository's).
    pub coldstart: Vec<ColdStartReport>,
    /// The issue-19 targets computed from this run.
    pub targets: Option<Targets>,
    /// `phase: error` for every phase that failed.
    pub errors: Vec<String>,
}

/// The targets and the measured values they were computed from.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Targets {
    pub inputs: TargetInputs,
    pub results: Vec<Target>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Host {
    /// CPUs this process may run on.
    pub allowed_cores: Vec<usize>,
    pub os: String,
    pub cpu_model: Option<String>,
    /// 1-minute load average when the bench started: other work on the
    /// machine competes for the same cores.
    pub load_avg_at_start: Option<f64>,
}

/// A start-up load average above this gets a warning in the report.
const BUSY_LOAD: f64 = 0.5;

/// The 1-minute load average (`/proc/loadavg`).
pub(crate) fn load_avg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Host {
    pub(crate) fn detect() -> Host {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        });
        Host {
            allowed_cores: inferq_worker::pinning::allowed_cores(),
            os: std::env::consts::OS.into(),
            cpu_model,
            load_avg_at_start: load_avg(),
        }
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

impl Report {
    /// The tables, in the order the phases ran.
    pub(crate) fn tables(&self) -> Vec<Table> {
        let mut out = Vec::new();
        if let Some(l) = &self.limit {
            let mut t = Table::new(
                &format!(
                    "Limit: in-process, {} pinned threads (cores {:?}), {}",
                    l.cores.len(),
                    l.cores,
                    l.model
                ),
                &[
                    "image",
                    "full img/s",
                    "full p50 ms",
                    "full p99 ms",
                    "decode ms",
                    "preproc ms",
                    "infer img/s",
                    "infer p50 ms",
                    "infer p99 ms",
                ],
            );
            for i in &l.images {
                t.row(vec![
                    format!(
                        "{} ({}x{}, {} KB)",
                        i.image,
                        i.width,
                        i.height,
                        i.bytes / 1000
                    ),
                    sig(i.full.images_per_sec),
                    sig(i.full.latency.p50_ms),
                    sig(i.full.latency.p99_ms),
                    sig(i.decode.p50_ms),
                    sig(i.preprocess.p50_ms),
                    sig(i.inference.images_per_sec),
                    sig(i.inference.latency.p50_ms),
                    sig(i.inference.latency.p99_ms),
                ]);
            }
            t.note("full = decode + preprocess + inference + softmax/top-k on every core; decode/preproc = p50 on one core; infer = inference alone, batch 1, every core");
            out.push(t);
            let sizes: Vec<usize> = l
                .images
                .first()
                .map(|i| i.batch.iter().map(|b| b.batch).collect())
                .unwrap_or_default();
            let mut headers = vec!["image".to_string()];
            headers.extend(sizes.iter().map(|b| format!("batch {b} img/s")));
            let mut t = Table::new(
                "Limit: inference alone by batch size (every core)",
                &headers.iter().map(String::as_str).collect::<Vec<_>>(),
            );
            for i in &l.images {
                let mut row = vec![i.image.clone()];
                row.extend(i.batch.iter().map(|b| sig(b.images_per_sec)));
                t.row(row);
            }
            if !l.batch_axis_dynamic {
                t.note(format!(
                    "batch axis is fixed (input shape {:?}): no sweep",
                    l.input_shape
                ));
            }
            out.push(t);
        }
        if let Some(rows) = &self.bare {
            out.push(bare::table(rows));
        }
        if let Some(e) = &self.embedded {
            out.push(embedded::table(e));
        }
        if let Some(s) = &self.service {
            let mut t = Table::new(
                &format!(
                    "Service: API + {} worker(s), 1 pinned thread each (cores {:?}), closed loop",
                    s.workers, s.worker_cores
                ),
                &[
                    "batch",
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
                    "gen CPU s",
                    "gen CPU %",
                ],
            );
            for r in &s.rows {
                t.row(vec![
                    r.max_batch.to_string(),
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
                    num(Some(r.run.loadgen_cpu.cpu_secs), 2),
                    num(Some(r.run.loadgen_cpu.pct_of_one_core), 1),
                ]);
                if let Some(e) = r.run.error_samples.first() {
                    t.note(format!("{} c={}: {e}", r.image, r.run.concurrency));
                }
            }
            t.note("batch = the model's [batching] max_batch in that run (1 = off), mean batch = the jobs' mean batch size as the worker reports it");
            t.note(format!(
                "shipped max_batch (the manifest's) = {}",
                s.shipped_max_batch
            ));
            t.note("vs limit = jobs/s ÷ the in-process full-path img/s for the same image; vs bare = jobs/s ÷ the bare Python pipeline's img/s; compute = decode + preprocess + inference and queue = time queued, both as the worker reports them; gen CPU = this load generator's own CPU time");
            out.push(t);
            let batches: Vec<usize> = s.memory_by_batch.keys().copied().collect();
            let mut header = vec!["process".to_string()];
            header.extend(batches.iter().map(|b| format!("batch {b} MiB")));
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            let mut t = Table::new("Memory: peak RSS during the service phase", &header);
            let peak = |b: &usize, name: &str| {
                s.memory_by_batch[b]
                    .peak_kib
                    .get(name)
                    .map(|k| mib(*k))
                    .unwrap_or_else(|| "-".into())
            };
            for name in s.memory.peak_kib.keys() {
                let mut row = vec![name.clone()];
                row.extend(batches.iter().map(|b| peak(b, name)));
                t.row(row);
            }
            let mut total = vec!["total (same sample)".to_string()];
            total.extend(
                batches
                    .iter()
                    .map(|b| mib(s.memory_by_batch[b].total_peak_kib)),
            );
            t.row(total);
            let broker = |b: &usize, name: &str, growth: bool| {
                let m = s.brokers_by_batch.get(b);
                let kib = if growth {
                    m.and_then(|m| m.growth_kib(name))
                } else {
                    m.and_then(|m| m.peak_kib.get(name).copied())
                };
                kib.map(mib).unwrap_or_else(|| "-".into())
            };
            for name in s.brokers.peak_kib.keys() {
                for growth in [false, true] {
                    let label = if growth {
                        format!("{name} growth")
                    } else {
                        name.clone()
                    };
                    let mut row = vec![label];
                    row.extend(batches.iter().map(|b| broker(b, name, growth)));
                    t.row(row);
                }
            }
            t.note("batch n = the run with [batching] max_batch = n; total = API + workers; rabbitmq (beam.smp on 5672) and redis (redis-server on 6379) are the shared local brokers, growth = peak − RSS at the start of that run");
            out.push(t);
        }
        if self.embedded.is_some() || self.service.is_some() {
            out.push(cpu_table::table(
                self.embedded.as_ref(),
                self.service.as_ref(),
            ));
        }
        if let Some(rows) = &self.submit {
            let mut t = Table::new(
                "Submit path: API only, POST /v1/jobs, no workers",
                &[
                    "input",
                    "conc",
                    "jobs/s",
                    "p50 ms",
                    "p99 ms",
                    "errors",
                    "gen CPU %",
                ],
            );
            for r in rows {
                t.row(vec![
                    r.input.clone(),
                    r.run.concurrency.to_string(),
                    sig(r.run.per_sec),
                    sig(r.run.latency.p50_ms),
                    sig(r.run.latency.p99_ms),
                    r.run.errors.to_string(),
                    num(Some(r.run.loadgen_cpu.pct_of_one_core), 1),
                ]);
                if let Some(e) = r.run.error_samples.first() {
                    t.note(format!("{}: {e}", r.input));
                }
            }
            out.push(t);
        }
        if let Some(b) = &self.backlog {
            out.push(backlog::table(b));
        }
        for c in &self.coldstart {
            let mut t = Table::new(
                &format!("Cold start: new worker process, {} ({})", c.models, c.image),
                &[
                    "run",
                    "spawn→ready ms",
                    "logged startup_ms",
                    "queued job done ms",
                    "job after ready ms",
                ],
            );
            let row = |name: String, r: &crate::coldstart::ColdRun| {
                vec![
                    name,
                    sig(r.spawn_to_ready_ms),
                    num(r.logged_startup_ms, 1),
                    sig(r.first_job_ms),
                    sig(r.after_ready_job_ms),
                ]
            };
            for (i, r) in c.runs.iter().enumerate() {
                t.row(row((i + 1).to_string(), r));
            }
            if c.runs.len() > 1 {
                t.row(row("median".into(), &c.median));
            }
            t.note("queued job done = spawn → a job submitted before the spawn is terminal");
            out.push(t);
        }
        if let Some(x) = &self.targets {
            out.push(targets::table(&x.inputs, &x.results));
        }
        out
    }

    /// A warning when the machine was busy before the run.
    pub(crate) fn busy_warning(&self) -> Option<String> {
        let load = self.host.load_avg_at_start.filter(|l| *l >= BUSY_LOAD)?;
        Some(format!(
            "WARNING: load average {load:.2} before the run: other processes were using the \
             cores, so every number below is lower (and noisier) than on an idle machine"
        ))
    }

    pub(crate) fn text(&self) -> String {
        let mut out = self.busy_warning().map(|w| w + "\n\n").unwrap_or_default();
        out.extend(self.tables().iter().map(|t| t.text() + "\n"));
        for e in &self.errors {
            out += &format!("ERROR {e}\n");
        }
        out
    }

    pub(crate) fn markdown(&self) -> String {
        let mut out = format!(
            "# inferq-bench report\n\n{} on {} ({:?}, cores {:?}); {}s per measurement{}.\n\n",
            self.started_at,
            self.host.os,
            self.host.cpu_model.as_deref().unwrap_or("unknown CPU"),
            self.host.allowed_cores,
            self.settings.measure_secs.as_secs_f64(),
            if self.settings.quick {
                " (--quick: rough numbers)"
            } else {
                ""
            }
        );
        if let Some(w) = self.busy_warning() {
            out += &format!("**{w}**\n\n");
        }
        for t in self.tables() {
            out += &t.markdown();
        }
        if !self.errors.is_empty() {
            out += "### Errors\n\n";
            for e in &self.errors {
                out += &format!("- {e}\n");
            }
        }
        out
    }

    /// Writes bench.json and bench.md into `dir`; returns their paths.
    pub(crate) fn write(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = dir.join("bench.json");
        let md = dir.join("bench.md");
        std::fs::write(&json, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", json.display()))?;
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("writing {}", md.display()))?;
        Ok((json, md))
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
