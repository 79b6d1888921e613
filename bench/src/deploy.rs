//! Starting the real `inferq-api` and `inferq-worker` processes for a phase
//! and knowing when they are ready.
//!
//! Each phase gets its own [`Namespace`] (a unique queue and Redis key
//! prefix on the shared RabbitMQ and Redis) and log directory, so phases do
//! not see each other's jobs; [`Deployment::finish`] stops the processes and
//! deletes the queue and keys. The API runs without auth and with a backlog
//! limit high enough never to answer 429 during a measurement. Workers log
//! JSON so the bench can read the `startup_ms` of the "inferq-worker ready"
//! line; the API is ready when `/readyz` answers 200, a worker when that
//! line is in its log.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use inferq_tests::Namespace;
use inferq_tests::cluster::{Cluster, ClusterSpec, Managed};
use serde_json::Value;

use crate::cli::Settings;

/// The log line a worker prints once its sessions are loaded and warm.
pub(crate) const WORKER_READY: &str = "inferq-worker ready";

/// How long processes get to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running API (and maybe workers) in a private namespace.
pub(crate) struct Deployment {
    pub ns: Namespace,
    pub spec: ClusterSpec,
    pub cluster: Cluster,
}

/// Worker flags: one inference thread pinned to `core`.
pub(crate) fn pinned_worker_flags(core: usize) -> Vec<String> {
    vec![
        "--threads".into(),
        "1".into(),
        "--cores".into(),
        core.to_string(),
    ]
}

/// The core of each of `workers` single-threaded workers: round robin over
/// the cores this process may use. The bare pipeline and the embedded
/// server use the same cores.
pub(crate) fn worker_cores(workers: usize) -> Vec<usize> {
    let allowed = inferq_worker::pinning::allowed_cores();
    (0..workers).map(|i| allowed[i % allowed.len()]).collect()
}

impl Deployment {
    /// Starts the API and `per_worker_flags.len()` workers; logs go to
    /// `<out>/logs/<phase>`.
    pub(crate) fn start(
        settings: &Settings,
        phase: &str,
        per_worker_flags: Vec<Vec<String>>,
    ) -> anyhow::Result<Self> {
        let ns = Namespace::new();
        let log_dir = settings.out.join("logs").join(phase);
        // Logs are appended to: start each run with empty ones.
        let _ = std::fs::remove_dir_all(&log_dir);
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let spec = ClusterSpec {
            bin_dir: settings.bin_dir.clone(),
            amqp_url: inferq_tests::AMQP_URL.into(),
            queue: ns.queue.clone(),
            key_prefix: ns.prefix.clone(),
            redis_url: inferq_tests::REDIS_URL.into(),
            model_dir: absolute(&settings.model_dir),
            default_model: settings.model.clone(),
            workers: per_worker_flags.len(),
            log_dir,
            api_flags: [
                "--max-backlog",
                "1000000000",
                "--max-inflight-requests",
                "100000",
            ]
            .map(String::from)
            .to_vec(),
            worker_flags: ["--log-format", "json"].map(String::from).to_vec(),
            per_worker_flags,
        };
        let cluster = Cluster::start(&spec).context("starting inferq-api and workers")?;
        Ok(Deployment { ns, spec, cluster })
    }

    pub(crate) fn api_url(&self) -> String {
        self.cluster.api_url()
    }

    /// Waits until the API answers /readyz and every worker logged ready.
    pub(crate) async fn wait_ready(&mut self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("{}/readyz", self.api_url());
        loop {
            let api_ready = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let workers_ready = self
                .cluster
                .workers
                .iter()
                .all(|w| ready_line(&read_log(w)).is_some());
            if api_ready && workers_ready {
                return Ok(());
            }
            check_running(&mut self.cluster.api)?;
            for w in &mut self.cluster.workers {
                check_running(w)?;
            }
            if Instant::now() > deadline {
                bail!(
                    "not ready within {READY_TIMEOUT:?} (api ready: {api_ready}); API log:\n{}",
                    self.cluster.api.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Pids of the API and workers, named for the memory report.
    pub(crate) fn pids(&self) -> Vec<(String, u32)> {
        std::iter::once(&self.cluster.api)
            .chain(&self.cluster.workers)
            .filter_map(|m| m.pid().map(|p| (m.name.clone(), p)))
            .collect()
    }

    /// Stops the processes and deletes the namespace's queue and keys.
    pub(crate) async fn finish(self) {
        let Deployment {
            ns, mut cluster, ..
        } = self;
        tokio::task::spawn_blocking(move || cluster.stop(Duration::from_secs(5)))
            .await
            .ok();
        ns.cleanup().await;
    }
}

/// Fails with the process's log tail when it has exited.
pub(crate) fn check_running(m: &mut Managed) -> anyhow::Result<()> {
    if m.running() {
        return Ok(());
    }
    bail!("{} exited; its log ends:\n{}", m.name, m.log_tail(20))
}

/// The whole log of a process (empty if unreadable).
pub(crate) fn read_log(m: &Managed) -> String {
    std::fs::read_to_string(m.log_path()).unwrap_or_default()
}

/// The worker's ready line in `log`, with the `startup_ms` it reports when
/// that can be read (JSON log lines, or text `startup_ms=…`).
pub(crate) fn ready_line(log: &str) -> Option<Option<f64>> {
    let line = log.lines().find(|l| l.contains(WORKER_READY))?;
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        return Some(v["fields"]["startup_ms"].as_f64());
    }
    let startup = line
        .split_once("startup_ms=")
        .and_then(|(_, rest)| {
            rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .next()
        })
        .and_then(|n| n.parse().ok());
    Some(startup)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_from_json_log() {
        let log = concat!(
            r#"{"level":"INFO","fields":{"message":"session ready","ms":35.0}}"#,
            "\n",
            r#"{"level":"INFO","fields":{"message":"inferq-worker ready","threads":1,"prefetch":2,"startup_ms":161.25}}"#,
            "\n"
        );
        assert_eq!(ready_line(log), Some(Some(161.25)));
    }

    #[test]
    fn ready_line_from_text_log_and_absent() {
        let log =
            "2026 INFO inferq_worker: inferq-worker ready threads=2 prefetch=4 startup_ms=98.5\n";
        assert_eq!(ready_line(log), Some(Some(98.5)));
        assert_eq!(ready_line("INFO inferq-worker ready threads=2"), Some(None));
        assert_eq!(ready_line("INFO session ready ms=35\n"), None);
    }
}
