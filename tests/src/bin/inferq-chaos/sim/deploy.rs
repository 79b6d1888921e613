//! The InferQ processes of a cluster run: two `inferq-api` on worker hosts
//! w1 and w2 and any number of `inferq-worker` spread over the worker hosts,
//! each started with `ip netns exec` (the process keeps the pid, so SIGKILL
//! and SIGTERM reach InferQ itself), all on one fresh queue and key prefix.
//!
//! Each process gets every RabbitMQ node's URL, rotated so that they do
//! not all start on the same node, and the Redis primary as
//! `redis+sentinel://` over the three Sentinels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use inferq_tests::cluster::Managed;

/// An API process and where it answers.
pub(crate) struct Api {
    pub(crate) proc: Managed,
    pub(crate) url: String,
    pub(crate) metrics: String,
}

/// The running InferQ processes and the cluster they use.
pub(crate) struct Sim {
    pub(crate) env: BTreeMap<String, String>,
    root: PathBuf,
    bin_dir: PathBuf,
    model_dir: PathBuf,
    pub(crate) model: String,
    pub(crate) queue: String,
    pub(crate) prefix: String,
    pub(crate) work: PathBuf,
    amqp_urls: Vec<String>,
    redis_url: String,
    /// (namespace, address) of each worker host.
    hosts: Vec<(String, String)>,
    pub(crate) apis: Vec<Api>,
    pub(crate) workers: Vec<Managed>,
    started_workers: usize,
}

/// Reads the harness's `KEY=VALUE` environment file.
fn read_env(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {} (is the cluster up?)", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// `key=value` pairs of a harness script's answer line.
pub(crate) fn pairs(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl Sim {
    /// Brings the cluster up (or heals it) and starts the two APIs.
    pub(crate) async fn new(model: &str, bin_dir: PathBuf) -> anyhow::Result<Self> {
        let root = inferq_tests::root();
        let status = Command::new("bash")
            .arg(root.join("scripts/cluster/up.sh"))
            .current_dir(&root)
            .status()
            .context("running scripts/cluster/up.sh")?;
        anyhow::ensure!(
            status.success(),
            "scripts/cluster/up.sh failed (root needed)"
        );
        let env = read_env(&root.join(".cache/cluster/env"))?;
        anyhow::ensure!(
            env.get("INFERQ_CLUSTER_MODE").map(String::as_str) == Some("netns"),
            "this driver needs the netns mode of the harness"
        );
        let get = |k: &str| {
            env.get(k)
                .cloned()
                .with_context(|| format!("{k} missing from .cache/cluster/env"))
        };
        let amqp_urls: Vec<String> = get("INFERQ_CLUSTER_AMQP_URLS")?
            .split(',')
            .map(str::to_owned)
            .collect();
        let sentinels = get("INFERQ_CLUSTER_REDIS_SENTINELS")?;
        let master = get("INFERQ_CLUSTER_REDIS_MASTER_NAME")?;
        let mut hosts = Vec::new();
        for ns in get("INFERQ_CLUSTER_WORKER_NETNS")?.split(',') {
            let host = ns.rsplit('-').next().unwrap_or(ns).to_uppercase();
            hosts.push((ns.to_owned(), get(&format!("INFERQ_CLUSTER_{host}_IP"))?));
        }
        anyhow::ensure!(hosts.len() >= 2, "two worker hosts needed for the APIs");
        let model_dir = if model.starts_with("tiny-") {
            root.join("tests/models")
        } else {
            root.join("models")
        };
        anyhow::ensure!(
            model_dir.join(model).is_dir(),
            "model {model} not found in {} (run `make assets`)",
            model_dir.display()
        );
        let ns = inferq_tests::Namespace::new();
        let work = std::env::temp_dir().join(format!("inferq-cluster-{}", ns.prefix));
        std::fs::create_dir_all(&work)?;
        let mut sim = Sim {
            env,
            root,
            bin_dir,
            model_dir,
            model: model.to_owned(),
            queue: ns.queue.clone(),
            prefix: ns.prefix.clone(),
            work,
            amqp_urls,
            redis_url: format!("redis+sentinel://{sentinels}/{master}"),
            hosts,
            apis: Vec::new(),
            workers: Vec::new(),
            started_workers: 0,
        };
        for i in 0..2 {
            let api = sim.api(i)?;
            sim.apis.push(api);
            sim.apis[i].proc.start()?;
            // The first API declares the queue: its leader is on that
            // API's first node (h1).
            sim.wait_api(i).await?;
        }
        Ok(sim)
    }

    /// Re-reads the environment file (node pids change on restarts).
    pub(crate) fn reload_env(&mut self) -> anyhow::Result<()> {
        self.env = read_env(&self.root.join(".cache/cluster/env"))?;
        Ok(())
    }

    /// Runs a harness script; its standard output.
    pub(crate) fn script(&self, name: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("bash")
            .arg(self.root.join("scripts/cluster").join(name))
            .args(args)
            .current_dir(&self.root)
            .output()
            .with_context(|| format!("running {name}"))?;
        anyhow::ensure!(
            out.status.success(),
            "{name} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The AMQP URLs, starting with node `first`.
    fn amqp_list(&self, first: usize) -> String {
        let n = self.amqp_urls.len();
        (0..n)
            .map(|k| self.amqp_urls[(first + k) % n].clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn common(&self, first_node: usize) -> Vec<String> {
        vec![
            "--amqp-url".into(),
            self.amqp_list(first_node),
            "--queue".into(),
            self.queue.clone(),
            "--redis-url".into(),
            self.redis_url.clone(),
            "--key-prefix".into(),
            self.prefix.clone(),
            "--model-dir".into(),
            self.model_dir.display().to_string(),
        ]
    }

    fn on_host(&self, name: &str, ns: &str, bin: &str, args: Vec<String>) -> Managed {
        let mut full = vec!["netns".into(), "exec".into(), ns.to_owned()];
        full.push(self.bin_dir.join(bin).display().to_string());
        full.extend(args);
        Managed::new(
            name,
            Path::new("ip"),
            full,
            &self.work.join(format!("{name}.log")),
        )
    }

    /// API `i` (not started): on worker host `i`, first node `i`.
    fn api(&self, i: usize) -> anyhow::Result<Api> {
        anyhow::ensure!(
            self.bin_dir.join("inferq-api").is_file(),
            "inferq-api not built in {}",
            self.bin_dir.display()
        );
        let (ns, ip) = &self.hosts[i % self.hosts.len()];
        let mut args = self.common(i);
        args.extend([
            "--listen".into(),
            format!("{ip}:8080"),
            "--metrics-listen".into(),
            format!("{ip}:9090"),
            "--default-model".into(),
            self.model.clone(),
            "--auth".into(),
            "false".into(),
        ]);
        Ok(Api {
            proc: self.on_host(&format!("api-{i}"), ns, "inferq-api", args),
            url: format!("http://{ip}:8080"),
            metrics: format!("http://{ip}:9090/metrics"),
        })
    }

    /// Waits until API `i` answers `/readyz` with 200.
    pub(crate) async fn wait_api(&mut self, i: usize) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = self.apis[i].url.clone();
        anyhow::ensure!(
            crate::wait_ready(&client, &url, Duration::from_secs(60)).await,
            "api-{i} not ready within 60 s:\n{}",
            self.apis[i].proc.log_tail(20)
        );
        Ok(())
    }

    /// The base URLs of the APIs.
    pub(crate) fn api_urls(&self) -> Vec<String> {
        self.apis.iter().map(|a| a.url.clone()).collect()
    }

    /// Starts one more worker, on the next worker host, with one inference
    /// thread pinned to the next core.
    pub(crate) fn add_worker(&mut self) -> anyhow::Result<()> {
        let k = self.started_workers;
        self.started_workers += 1;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (ns, _) = self.hosts[k % self.hosts.len()].clone();
        let mut args = vec![
            "--ort-library".into(),
            inferq_tests::ort_library().display().to_string(),
        ];
        args.extend(self.common(k));
        args.extend([
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            "--threads".into(),
            "1".into(),
            "--cores".into(),
            (k % cores).to_string(),
        ]);
        let mut w = self.on_host(&format!("worker-{k}"), &ns, "inferq-worker", args);
        w.start()?;
        self.workers.push(w);
        Ok(())
    }

    /// SIGTERMs the newest worker and waits until it drained and exited.
    pub(crate) fn remove_worker(&mut self) -> anyhow::Result<()> {
        if let Some(mut w) = self.workers.pop() {
            w.stop(Duration::from_secs(60))?;
        }
        Ok(())
    }

    /// Starts or drains workers until `n` run.
    pub(crate) fn set_workers(&mut self, n: usize) -> anyhow::Result<()> {
        while self.workers.len() > n {
            self.remove_worker()?;
        }
        while self.workers.len() < n {
            self.add_worker()?;
        }
        Ok(())
    }

    /// Workers that exited by themselves (not stopped by the driver).
    pub(crate) fn dead_workers(&mut self) -> usize {
        self.workers
            .iter_mut()
            .map(|w| !w.running())
            .filter(|dead| *dead)
            .count()
    }

    /// CPU seconds (user + system) the running workers used so far.
    pub(crate) fn worker_cpu_secs(&self) -> f64 {
        let tick = 100.0; // USER_HZ on Linux
        self.workers
            .iter()
            .filter_map(|w| w.pid())
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .filter_map(|stat| {
                let after = stat.rsplit_once(')')?.1;
                let f: Vec<&str> = after.split_whitespace().collect();
                let utime: f64 = f.get(11)?.parse().ok()?;
                let stime: f64 = f.get(12)?.parse().ok()?;
                Some((utime + stime) / tick)
            })
            .sum()
    }

    /// Job records under this run's prefix, counted on the Redis primary.
    pub(crate) fn job_records(&self) -> anyhow::Result<u64> {
        let primary = self.script("redis-primary.sh", &["--short"])?;
        let primary = primary.trim();
        let (host, port) = primary.rsplit_once(':').unwrap_or((primary, "6379"));
        let out = Command::new("redis-cli")
            .args(["-h", host, "-p", port, "--scan", "--pattern"])
            .arg(format!("{}:job:*", self.prefix))
            .output()
            .context("redis-cli")?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().count() as u64)
    }

    /// How many lines of the InferQ process logs (all of this run so far)
    /// contain each of `needles`.
    pub(crate) fn log_counts(&self, needles: &[&str]) -> String {
        let mut counts = vec![0u64; needles.len()];
        if let Ok(dir) = std::fs::read_dir(&self.work) {
            for entry in dir.flatten() {
                let Ok(text) = std::fs::read_to_string(entry.path()) else {
                    continue;
                };
                for line in text.lines() {
                    for (n, needle) in needles.iter().enumerate() {
                        if line.contains(needle) {
                            counts[n] += 1;
                        }
                    }
                }
            }
        }
        needles
            .iter()
            .zip(counts)
            .map(|(n, c)| format!("\"{n}\" {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Stops everything of this run and deletes its queues.
    pub(crate) async fn shutdown(&mut self) {
        for w in &mut self.workers {
            let _ = w.stop(Duration::from_secs(5));
        }
        for a in &mut self.apis {
            let _ = a.proc.stop(Duration::from_secs(5));
        }
        for url in &self.amqp_urls {
            let connect = lapin::Connection::connect(url, lapin::ConnectionProperties::default());
            let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), connect).await else {
                continue;
            };
            if let Ok(ch) = conn.create_channel().await {
                for q in [self.queue.clone(), format!("{}.dead", self.queue)] {
                    let _ = ch
                        .queue_delete(
                            q.as_str().into(),
                            lapin::options::QueueDeleteOptions::default(),
                        )
                        .await;
                }
            }
            let _ = conn.close(200, "bye".into()).await;
            break;
        }
    }
}
