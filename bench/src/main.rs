//! `inferq-bench`: measures InferQ on this machine and prints the numbers.
//!
//! See `inferq-bench --help` and docs/performance.md. The logic lives in
//! the modules: [`cli`] (flags), [`limit`] (in-process ceiling), [`bare`]
//! (the bare Python pipeline), [`embedded`] (the embedded server),
//! [`service`] (full path and submit path), [`backlog`] (a standing
//! backlog), [`coldstart`], [`loadgen`] (closed-loop clients), [`deploy`]
//! (processes), [`resources`] (own CPU, RSS), [`procs`] (CPU per process
//! group, broker processes), [`stats`] (histograms), [`targets`] (the
//! issue-19 targets), [`report`], [`cpu_table`] and [`table`] (output).

mod backlog;
mod bare;
mod cli;
mod coldstart;
mod cpu_table;
mod deploy;
mod embedded;
mod images;
mod limit;
mod loadgen;
mod procs;
mod report;
mod resources;
mod run;
mod service;
mod stats;
mod table;
mod targets;

use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    let settings = cli::Settings::from_cli(cli::Cli::parse())?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let report = runtime.block_on(run::run(settings.clone()))?;
    print!("{}", report.text());
    let (json, md) = report.write(&settings.out)?;
    println!("wrote {} and {}", json.display(), md.display());
    if !report.errors.is_empty() {
        anyhow::bail!("{} phase(s) failed (see above)", report.errors.len());
    }
    Ok(())
}
