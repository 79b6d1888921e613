//! `inferq-chaos cluster`: InferQ on the simulated cluster of
//! docs/cluster-harness.md — API and worker processes on network-namespace
//! hosts, against the three-node RabbitMQ (the job queue a quorum queue
//! with a replica on each node) and Redis followed through Sentinel — and
//! the scenarios of issue 22 run on it, each ending with an account of
//! every accepted job (docs/scaling.md).
//!
//! The cluster itself is the harness's (`scripts/cluster/up.sh`, which is
//! idempotent and heals); this driver starts and kills only InferQ's
//! processes, the broker node that leads the queue and the Redis primary.
//! Every client submits with its own `Idempotency-Key` and, when an answer
//! does not accept the job, sends the same request again to the next API.

mod deploy;
mod load;
mod scale;
mod scenarios;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;

pub(crate) use deploy::Sim;

/// Options of `inferq-chaos cluster`.
#[derive(Debug, clap::Args)]
pub(crate) struct SimArgs {
    /// Scenarios to run, in this order: broker, redis, api, scale, autoscale,
    /// partition (the leader's host cut off), majority (two broker nodes down).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "broker,redis,api,scale,autoscale,partition,majority"
    )]
    scenarios: Vec<String>,
    /// Model of the jobs (`tiny-*` from tests/models, others from models/).
    #[arg(long, default_value = "tiny-slow")]
    model: String,
    /// Jobs of each fault scenario (broker, redis, api).
    #[arg(long, default_value_t = 900)]
    jobs: u64,
    /// Submissions per second in the fault scenarios.
    #[arg(long, default_value_t = 30.0)]
    rate: f64,
    /// Worker processes in the fault scenarios (one inference thread each).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Jobs per point of the scale-out curve.
    #[arg(long, default_value_t = 400)]
    scale_jobs: u64,
    /// Worker counts of the scale-out curve.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    scale_points: Vec<usize>,
    /// Autoscaler: jobs submitted (at `--autoscale-rate`).
    #[arg(long, default_value_t = 300)]
    autoscale_jobs: u64,
    /// Autoscaler: submissions per second.
    #[arg(long, default_value_t = 10.0)]
    autoscale_rate: f64,
    /// Autoscaler: backlog per worker (KEDA's AverageValue target).
    #[arg(long, default_value_t = 20.0)]
    target: f64,
    /// Autoscaler: most workers.
    #[arg(long, default_value_t = 4)]
    max_workers: usize,
    /// Autoscaler: seconds without backlog before scaling to zero, and
    /// between two scale-ins (the HPA's scale-down policy period).
    #[arg(long, default_value_t = 5.0)]
    cooldown_secs: f64,
    /// Autoscaler: the HPA's scale-down stabilization window — a scale-in
    /// goes only as low as the highest count the rule asked for within it
    /// (the shipped ScaledObject: 300 s; shortened here with the rest of
    /// the loop's times).
    #[arg(long, default_value_t = 10.0)]
    stabilization_secs: f64,
    /// Seconds the leader's host stays cut off in the partition scenario
    /// (the nodes' net_ticktime is 10 s: long enough for them to notice).
    #[arg(long, default_value_t = 30.0)]
    partition_secs: f64,
    /// Seconds two of the three broker nodes stay down in the majority
    /// scenario (shorter than a client's 60 s of retries).
    #[arg(long, default_value_t = 20.0)]
    outage_secs: f64,
    /// Seconds every accepted job of a scenario may take to finish after
    /// the submissions end.
    #[arg(long, default_value_t = 120.0)]
    settle_secs: f64,
    /// Directory holding inferq-api and inferq-worker; default: this binary's.
    #[arg(long)]
    bin_dir: Option<std::path::PathBuf>,
    /// Keep the process logs even on success.
    #[arg(long)]
    keep_logs: bool,
}

/// One scenario's line of the report.
#[derive(Debug, Default)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) accepted: u64,
    pub(crate) final_: u64,
    pub(crate) lost: u64,
    /// Executions beyond the first (sum of `attempts - 1`).
    pub(crate) duplicated: u64,
    /// Idempotency keys that got two different job ids (must be 0).
    pub(crate) keys_with_two_jobs: u64,
    pub(crate) notes: Vec<String>,
    pub(crate) ok: bool,
}

impl Row {
    fn print(&self) {
        println!(
            "{:<10} accepted={} final={} lost={} duplicated={} keys-with-two-jobs={} {}",
            self.name,
            self.accepted,
            self.final_,
            self.lost,
            self.duplicated,
            self.keys_with_two_jobs,
            if self.ok { "OK" } else { "FAILED" }
        );
        for n in &self.notes {
            println!("    {n}");
        }
    }
}

/// Formats a count map as `k=v k=v`.
pub(crate) fn fmt_counts<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the chosen scenarios; `Ok(true)` when every one passed.
pub(crate) async fn main(args: SimArgs) -> anyhow::Result<bool> {
    let t0 = Instant::now();
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no binary directory")?
            .to_owned(),
    };
    let mut sim = Sim::new(&args.model, bin_dir).await?;
    eprintln!(
        "cluster: queue {} prefix {}; logs in {}",
        sim.queue,
        sim.prefix,
        sim.work.display()
    );
    let outcome = run(&mut sim, &args).await;
    sim.shutdown().await;
    let rows = match outcome {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("cluster: logs kept in {}", sim.work.display());
            return Err(e);
        }
    };
    println!();
    println!(
        "== cluster-test report ({:.0} s) ==",
        t0.elapsed().as_secs_f64()
    );
    for r in &rows {
        r.print();
    }
    let ok = rows.iter().all(|r| r.ok);
    if ok && !args.keep_logs {
        let _ = std::fs::remove_dir_all(&sim.work);
    } else {
        eprintln!("cluster: logs kept in {}", sim.work.display());
    }
    Ok(ok)
}

async fn run(sim: &mut Sim, args: &SimArgs) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for name in &args.scenarios {
        let started = Instant::now();
        eprintln!("\n== scenario {name} ==");
        let mut row = match name.as_str() {
            "broker" => scenarios::broker(sim, args, scenarios::BrokerFault::Kill).await?,
            "partition" => {
                let hold = Duration::from_secs_f64(args.partition_secs);
                scenarios::broker(sim, args, scenarios::BrokerFault::Partition(hold)).await?
            }
            "majority" => {
                let hold = Duration::from_secs_f64(args.outage_secs);
                scenarios::broker(sim, args, scenarios::BrokerFault::Majority(hold)).await?
            }
            "redis" => scenarios::redis(sim, args).await?,
            "api" => scenarios::api(sim, args).await?,
            "scale" => scale::curve(sim, args).await?,
            "autoscale" => scale::autoscale(sim, args).await?,
            other => anyhow::bail!("unknown scenario {other:?}"),
        };
        row.notes.push(format!(
            "scenario took {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        row.print();
        rows.push(row);
    }
    Ok(rows)
}
