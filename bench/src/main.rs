//! `inferq-bench`: measures InferQ on this machine and prints the numbers.
//!
//! See `inferq-bench --help` and docs/performance.md. The logic lives in
//! the modules: [`cli`] (flags), [`limit`] (in-process ceiling), [`service`]
//! (full path and submit path), [`coldstart`], [`loadgen`] (closed-loop
//! clients), [`deploy`] (processes), [`resources`] (CPU, RSS), [`stats`]
//! (histograms), [`report`] and [`table`] (output).

mod cli;
mod coldstart;
mod deploy;
mod images;
mod limit;
mod loadgen;
mod report;
mod resources;
mod run;
mod service;
mod stats;
mod table;

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
