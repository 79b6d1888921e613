//! `inferq-chaos`: whole-system fault injection (`chaos`) and memory soak
//! (`soak`) against the real binaries.
//!
//! Both modes start the same private deployment: an own `redis-server`
//! (random port, temporary directory; with an fsync-always append-only file
//! in chaos mode, so that killing Redis is an honest durability test), the
//! real `inferq-api` and N `inferq-worker` processes from `target/<profile>/`,
//! on a unique queue and key prefix on the shared RabbitMQ. Whatever happens —
//! success, error, Ctrl-C, SIGTERM — the processes are killed, the queue is
//! deleted and, if the harness had stopped the RabbitMQ application, it is
//! started again. See docs/reliability.md.

mod account;
mod chaos;
mod sim;
mod soak;
mod wipe;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use inferq_tests::cluster::{Cluster, ClusterSpec, RedisServer};
use inferq_tests::load::Image;

/// Fault injection and memory soak for InferQ (see docs/reliability.md).
#[derive(Debug, Parser)]
#[command(name = "inferq-chaos")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Submit jobs while killing workers and restarting RabbitMQ and Redis
    /// (once on its AOF, once empty); then check that every accepted job
    /// finished, and succeeded.
    Chaos {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: chaos::ChaosArgs,
    },
    /// Run many jobs without faults and compare the memory of the API and
    /// the workers early and late in the run.
    Soak {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: soak::SoakArgs,
    },
    /// InferQ on the simulated cluster (scripts/cluster, root): broker
    /// leader, Redis primary and API SIGKILLs, the scale-out curve and an
    /// autoscaling loop, each with an account of every job (docs/scaling.md).
    Cluster {
        #[command(flatten)]
        args: sim::SimArgs,
    },
}

/// Options both modes share.
#[derive(Debug, clap::Args)]
struct Common {
    /// Model the jobs use (the API's default model). Names starting with
    /// `tiny-` are looked up in tests/models, others in models/.
    #[arg(long, default_value = "efficientnet-lite0")]
    model: String,
    /// Model repository; default: chosen from the model name as above.
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 24)]
    concurrency: usize,
    /// RabbitMQ to use (the harness declares and deletes its own queue on it).
    #[arg(long, default_value = inferq_tests::AMQP_URL)]
    amqp_url: String,
    /// Directory holding inferq-api and inferq-worker; default: the one
    /// this binary is in (so `cargo run --release` uses release binaries).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Keep the work directory (process logs, Redis data) even on success.
    #[arg(long)]
    keep_logs: bool,
}

/// The running deployment, shared with the fault injectors.
pub struct Deployment {
    pub cluster: Mutex<Cluster>,
    pub redis: Mutex<RedisServer>,
    pub api_url: String,
    pub amqp_port: u16,
    /// Set while the harness has the RabbitMQ application stopped.
    pub rabbitmq_stopped: AtomicBool,
    /// The images jobs are made of, used round-robin.
    pub images: Vec<Image>,
    pub model: String,
    /// The key prefix of this run in Redis.
    pub key_prefix: String,
}

/// Seconds since `t`, for log lines.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// The images the clients send: a JPEG photo, PNGs below and above the
/// old 256 KiB inline limit (466 KB and 792 KB: before every upload
/// travelled in the queue message these waited in Redis as blobs, and a
/// Redis that lost its data failed them with `blob_missing`), and a tiny PNG.
fn images() -> anyhow::Result<Vec<Image>> {
    let dir = inferq_tests::root().join("tests/images");
    let mut out = Vec::new();
    for name in [
        "photo-640x480.jpg",
        "chelsea.png",
        "coffee.png",
        "astronaut.png",
    ] {
        let path = dir.join(name);
        out.push(Image::from_file(&path).with_context(|| format!("reading {}", path.display()))?);
    }
    out.push(Image::png(inferq_tests::solid_png(32, 24, [200, 30, 90])));
    Ok(out)
}

fn amqp_port(url: &str) -> u16 {
    url.rsplit_once('@')
        .map_or(url, |(_, host)| host)
        .split('/')
        .next()
        .and_then(|hp| hp.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(5672)
}

/// Waits until the API answers `/readyz` with 200 (broker and store up).
pub async fn wait_ready(client: &reqwest::Client, api: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{api}/readyz")).send().await
            && r.status() == 200
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn delete_queue(amqp_url: &str, queue: &str) {
    let connect = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default());
    if let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), connect).await {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
                .await;
        }
        let _ = conn.close(200, "bye".into()).await;
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() -> &'static str {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted (Ctrl-C)",
        _ = term.recv() => "terminated (SIGTERM)",
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (common, aof) = match cli.mode {
        Mode::Chaos { ref common, .. } => (common, true),
        Mode::Soak { ref common, .. } => (common, false),
        Mode::Cluster { args } => {
            let run = sim::main(args);
            return match tokio::select! { r = run => r, why = interrupted() => Err(anyhow::anyhow!(why)) }
            {
                Ok(true) => Ok(()),
                Ok(false) => std::process::exit(1),
                Err(e) => Err(e),
            };
        }
    };
    let root = inferq_tests::root();
    let model_dir = common.model_dir.clone().unwrap_or_else(|| {
        if common.model.starts_with("tiny-") {
            root.join("tests/models")
        } else {
            root.join("models")
        }
    });
    anyhow::ensure!(
        model_dir.join(&common.model).is_dir(),
        "model {} not found in {} (run `make assets`)",
        common.model,
        model_dir.display()
    );
    let bin_dir = match &common.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no binary directory")?
            .to_owned(),
    };
    let ns = inferq_tests::Namespace::new();
    let work = std::env::temp_dir().join(format!("inferq-chaos-{}", ns.prefix));
    std::fs::create_dir_all(&work)?;
    eprintln!(
        "inferq-chaos: queue {} prefix {}; logs in {}",
        ns.queue,
        ns.prefix,
        work.display()
    );

    let redis = RedisServer::start(&work.join("redis"), aof).context("starting redis-server")?;
    let spec = ClusterSpec {
        bin_dir,
        amqp_url: common.amqp_url.clone(),
        queue: ns.queue.clone(),
        key_prefix: ns.prefix.clone(),
        redis_url: redis.url(),
        model_dir,
        default_model: common.model.clone(),
        workers: common.workers,
        log_dir: work.clone(),
        api_flags: Vec::new(),
        worker_flags: Vec::new(),
        per_worker_flags: Vec::new(),
    };
    let cluster = Cluster::start(&spec).context("starting inferq-api and workers")?;
    let deployment = Arc::new(Deployment {
        api_url: cluster.api_url(),
        cluster: Mutex::new(cluster),
        redis: Mutex::new(redis),
        amqp_port: amqp_port(&common.amqp_url),
        rabbitmq_stopped: AtomicBool::new(false),
        images: images()?,
        model: common.model.clone(),
        key_prefix: ns.prefix.clone(),
    });

    let concurrency = common.concurrency.max(1);
    let run = async {
        let client = reqwest::Client::new();
        anyhow::ensure!(
            wait_ready(&client, &deployment.api_url, Duration::from_secs(60)).await,
            "inferq-api not ready within 60 s:\n{}",
            deployment.cluster.lock().unwrap().api.log_tail(20)
        );
        match &cli.mode {
            Mode::Chaos { args, .. } => chaos::run(deployment.clone(), args, concurrency).await,
            Mode::Soak { args, .. } => soak::run(deployment.clone(), args, concurrency).await,
            Mode::Cluster { .. } => unreachable!("handled above"),
        }
    };
    let outcome = tokio::select! {
        r = run => r,
        why = interrupted() => Err(anyhow::anyhow!(why)),
    };

    // Clean up, whatever happened.
    if deployment.rabbitmq_stopped.load(Ordering::SeqCst) {
        eprintln!("inferq-chaos: starting the RabbitMQ application again");
        let port = deployment.amqp_port;
        if let Err(e) =
            tokio::task::spawn_blocking(move || inferq_tests::cluster::start_rabbitmq(port)).await?
        {
            eprintln!("inferq-chaos: WARNING: {e}; start it with `rabbitmqctl start_app`");
        }
    }
    deployment
        .cluster
        .lock()
        .unwrap()
        .stop(Duration::from_secs(2));
    let _ = deployment.redis.lock().unwrap().kill();
    delete_queue(&common.amqp_url, &ns.queue).await;
    match &outcome {
        Ok(true) if !common.keep_logs => {
            let _ = std::fs::remove_dir_all(&work);
        }
        _ => eprintln!("inferq-chaos: logs kept in {}", work.display()),
    }
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        Err(e) => Err(e),
    }
}
