//! `inferq-worker --processes`: one worker process per core, supervised.
//!
//! The threads of one worker process share its fate: an ONNX Runtime abort,
//! a segfault in a decoder or an OOM kill ends every core's jobs on that
//! host at once. In this mode `inferq-worker` becomes a small supervisor
//! that runs no inference and opens no broker or store connection: it
//! starts one child `inferq-worker` per slot (one inference thread, pinned
//! to the slot's core, its own broker connection and prefetch), restarts a
//! child that dies with capped exponential backoff, and on SIGTERM/SIGINT
//! forwards SIGTERM so every child drains, waiting at most the drain
//! deadline plus the time to close connections before it kills a child.
//! A crash now costs the jobs one core holds; the broker redelivers them
//! and the other children keep consuming.
//!
//! Children share nothing but the broker and the store. They run in their
//! own process group (a terminal's Ctrl-C reaches only the supervisor,
//! which forwards it once) and ask the kernel for SIGTERM should the
//! supervisor die, so none is left orphaned. Each serves `/metrics` on a
//! loopback port of its own; the supervisor serves the configured address
//! with its own metrics (restarts, running processes) and the children's,
//! labelled by `process` (module [`crate::scrape`]), once every child has
//! come up, which keeps that address a startup/readiness signal.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inferq_runtime::signals::stopped;
use tokio::sync::watch;

use crate::config::{ChildRole, Processes, WorkerConfig};

/// Extra time a draining child gets beyond `--drain-timeout-secs`: the
/// consumer cancel and closing the broker connection (each up to ~5 s).
const CLOSE_MARGIN: Duration = Duration::from_secs(15);
/// How long the supervisor waits for a child's `/metrics`.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Restart delays: `initial`, doubled after each quick death up to `max`;
/// a child that ran for `stable` before dying starts over at `initial`.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub stable: Duration,
    last: Option<Duration>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(30),
            Duration::from_secs(60),
        )
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, stable: Duration) -> Self {
        Backoff {
            initial,
            max,
            stable,
            last: None,
        }
    }

    /// The delay before restarting a child that died after `uptime`.
    pub fn after_exit(&mut self, uptime: Duration) -> Duration {
        let next = match self.last {
            Some(prev) if uptime < self.stable => prev.saturating_mul(2).min(self.max),
            _ => self.initial.min(self.max),
        };
        self.last = Some(next);
        next
    }
}

/// The cores of the supervised processes, one entry per process; `None`
/// when `--processes` is off. `auto` takes every allowed core (`--cores`
/// if set, else the affinity mask), at most the cgroup CPU quota.
pub fn plan(config: &WorkerConfig, allowed: &[usize], quota: Option<usize>) -> Option<Vec<usize>> {
    let cores = &config.inference.cores;
    match config.processes.processes {
        Processes::Off => None,
        Processes::Count(n) => Some(crate::pinning::plan(n, cores, allowed)),
        Processes::Auto => {
            let mut all = crate::pinning::plan(0, cores, allowed);
            if let Some(q) = quota {
                all.truncate(q.max(1));
            }
            Some(all)
        }
    }
}

/// Where the children's `/metrics` listen.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChildPorts {
    /// Metrics are off.
    Off,
    /// Configured port + 1 + index, on loopback.
    After(u16),
    /// The configured port was 0: a free loopback port at each start.
    Ephemeral,
}

impl ChildPorts {
    fn from_listen(listen: &str) -> Self {
        let port = listen
            .trim()
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok());
        match port {
            None => ChildPorts::Off,
            Some(0) => ChildPorts::Ephemeral,
            Some(p) => ChildPorts::After(p),
        }
    }

    fn address(&self, index: usize) -> String {
        match self {
            ChildPorts::Off => String::new(),
            ChildPorts::After(p) => {
                let port = (*p as usize + 1 + index).min(u16::MAX as usize);
                format!("127.0.0.1:{port}")
            }
            ChildPorts::Ephemeral => std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.to_string())
                .unwrap_or_default(),
        }
    }
}

/// What the slot tasks share: the children's current metrics addresses
/// (`None` while down) and which children have ever answered.
struct Shared {
    config: WorkerConfig,
    ports: ChildPorts,
    decode_mib: u64,
    addrs: Mutex<Vec<Option<String>>>,
}

impl Shared {
    fn set_addr(&self, index: usize, addr: Option<String>) {
        self.addrs.lock().expect("addrs lock")[index] = addr;
    }

    async fn scrape(&self) -> Vec<(usize, String)> {
        let addrs: Vec<(usize, String)> = {
            let a = self.addrs.lock().expect("addrs lock");
            a.iter()
                .enumerate()
                .filter_map(|(i, a)| a.clone().filter(|a| !a.is_empty()).map(|a| (i, a)))
                .collect()
        };
        let mut out = Vec::new();
        for (i, addr) in addrs {
            if let Some(text) = crate::scrape::fetch(&addr, SCRAPE_TIMEOUT).await {
                out.push((i, text));
            }
        }
        out
    }
}

/// Runs the supervised processes for `cores` until `shutdown` resolves,
/// then drains them. Fails only if the metrics address is unusable.
pub async fn supervise(
    config: WorkerConfig,
    cores: Vec<usize>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let n = cores.len().max(1);
    let budget = crate::memory::decode_budget_bytes(config.inference.decode_memory_mib);
    let shared = Arc::new(Shared {
        ports: ChildPorts::from_listen(&config.metrics.metrics_listen),
        decode_mib: ((budget / n as u64) >> 20).max(1),
        addrs: Mutex::new(vec![None; n]),
        config,
    });
    tracing::info!(
        processes = n,
        ?cores,
        decode_mib_each = shared.decode_mib,
        "inferq-worker supervisor starting one worker process per slot"
    );
    inferq_runtime::metrics::set_build_info("worker-supervisor");
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (index, core) in cores.into_iter().enumerate() {
        tasks.push(tokio::spawn(keep_running(
            index,
            core,
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    let metrics = tokio::spawn(serve_metrics(shared.clone(), n, stop_rx.clone()));
    shutdown.await;
    tracing::info!("supervisor: stopping; every worker process drains");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = metrics.await;
    tracing::info!("inferq-worker supervisor stopped");
    Ok(())
}

/// Opens the configured `/metrics` once every child has answered on its
/// own port, then serves the merged text until the stop.
async fn serve_metrics(shared: Arc<Shared>, n: usize, stop: watch::Receiver<bool>) {
    if shared.ports == ChildPorts::Off {
        return;
    }
    let mut seen = vec![false; n];
    while !seen.iter().all(|s| *s) {
        for (i, _) in shared.scrape().await {
            seen[i] = true;
        }
        if *stop.borrow() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::info!("every worker process is up");
    let body = {
        let shared = shared.clone();
        move || {
            let shared = shared.clone();
            async move {
                let own = inferq_runtime::metrics::render();
                crate::scrape::merge(&own, &shared.scrape().await)
            }
        }
    };
    let listen = shared.config.metrics.metrics_listen.clone();
    if let Some(h) =
        inferq_runtime::metrics::listener::spawn_with(&listen, stopped(stop), body).await
    {
        let _ = h.await;
    }
}

/// Keeps slot `index` (pinned to `core`) running until the stop.
async fn keep_running(index: usize, core: usize, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let m = inferq_runtime::metrics::metrics();
    let drain = Duration::from_secs_f64(shared.config.consume.drain_timeout_secs.max(0.0));
    let mut backoff = Backoff::default();
    let mut starts = 0u64;
    loop {
        if *stop.borrow() {
            return;
        }
        let role = ChildRole {
            index,
            core,
            decode_memory_mib: shared.decode_mib,
            metrics_listen: shared.ports.address(index),
        };
        let started = Instant::now();
        let spawned = spawn_child(&role);
        let status = match spawned {
            Ok(mut child) => {
                if starts > 0 {
                    m.process_restarts
                        .with_label_values(&[&index.to_string()])
                        .inc();
                }
                starts += 1;
                let pid = child.id().unwrap_or_default();
                tracing::info!(process = index, core, pid, "worker process started");
                m.processes_running.inc();
                shared.set_addr(index, Some(role.metrics_listen.clone()));
                let exited = tokio::select! {
                    s = child.wait() => Some(s),
                    _ = stopped(stop.clone()) => None,
                };
                shared.set_addr(index, None);
                let status = match exited {
                    Some(s) => s,
                    None => {
                        let s = drain_child(&mut child, pid, drain + CLOSE_MARGIN).await;
                        m.processes_running.dec();
                        tracing::info!(process = index, core, pid, status = %describe(&s), "worker process stopped");
                        return;
                    }
                };
                m.processes_running.dec();
                let status = match status {
                    Ok(s) => describe(&s),
                    Err(e) => format!("wait failed: {e}"),
                };
                tracing::error!(process = index, core, pid, %status, uptime_secs = started.elapsed().as_secs_f64(), "worker process died");
                status
            }
            Err(e) => {
                tracing::error!(process = index, core, error = %e, "could not start worker process");
                e.to_string()
            }
        };
        let delay = backoff.after_exit(started.elapsed());
        tracing::warn!(
            process = index,
            core,
            restart_in_ms = delay.as_millis() as u64,
            restarts = starts,
            last_exit = %status,
            "restarting worker process"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(stop.clone()) => return,
        }
    }
}

/// Starts this same executable, with the same arguments, as the child
/// described by `role`.
fn spawn_child(role: &ChildRole) -> std::io::Result<tokio::process::Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .arg("--supervised-child")
        .arg(role.to_string())
        .stdin(std::process::Stdio::null());
    #[cfg(unix)]
    cmd.process_group(0);
    cmd.spawn()
}

/// SIGTERM, then up to `deadline` for the drain, then SIGKILL.
async fn drain_child(
    child: &mut tokio::process::Child,
    pid: u32,
    deadline: Duration,
) -> std::process::ExitStatus {
    terminate(pid);
    match tokio::time::timeout(deadline, child.wait()).await {
        Ok(Ok(s)) => s,
        _ => {
            tracing::warn!(pid, "worker process did not drain in time; killing it");
            let _ = child.start_kill();
            child.wait().await.unwrap_or_else(|_| exit_failed())
        }
    }
}

#[cfg(unix)]
fn exit_failed() -> std::process::ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    std::process::ExitStatus::from_raw(1 << 8)
}

#[cfg(not(unix))]
fn exit_failed() -> std::process::ExitStatus {
    std::process::Command::new("false")
        .status()
        .expect("`false` runs")
}

/// Asks a child to drain.
fn terminate(pid: u32) {
    #[cfg(unix)]
    if let Ok(pid) = i32::try_from(pid) {
        use nix::sys::signal::{Signal, kill};
        let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// "exit code 1", "signal 9 (SIGKILL)".
fn describe(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = nix::sys::signal::Signal::try_from(sig)
                .map(|s| s.as_str())
                .unwrap_or("?");
            return format!("signal {sig} ({name})");
        }
    }
    match status.code() {
        Some(c) => format!("exit code {c}"),
        None => status.to_string(),
    }
}

/// In a supervised child: ask for SIGTERM when the supervisor dies (it may
/// be SIGKILLed, or OOM-killed itself), so the child drains instead of
/// running on unsupervised.
pub fn follow_supervisor() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM) {
        tracing::warn!(error = %e, "could not ask for SIGTERM on the supervisor's death");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run() {
        let mut b = Backoff::new(ms(500), ms(3000), Duration::from_secs(60));
        let quick = ms(100);
        let delays: Vec<u64> = (0..5)
            .map(|_| b.after_exit(quick).as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![500, 1000, 2000, 3000, 3000]);
        assert_eq!(b.after_exit(Duration::from_secs(61)), ms(500));
        assert_eq!(b.after_exit(quick), ms(1000));
    }

    #[test]
    fn child_ports_follow_the_configured_address() {
        let after = ChildPorts::from_listen("0.0.0.0:9091");
        assert_eq!(after, ChildPorts::After(9091));
        assert_eq!(after.address(0), "127.0.0.1:9092");
        assert_eq!(after.address(3), "127.0.0.1:9095");
        assert_eq!(ChildPorts::from_listen(""), ChildPorts::Off);
        assert_eq!(ChildPorts::from_listen("[::]:0"), ChildPorts::Ephemeral);
        assert!(ChildPorts::Ephemeral.address(0).starts_with("127.0.0.1:"));
    }

    #[test]
    fn plan_takes_cores_in_turn_and_respects_the_quota() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            let mut all = vec!["inferq-worker"];
            all.extend_from_slice(args);
            WorkerConfig::try_parse_from(all).unwrap()
        };
        assert_eq!(plan(&parse(&[]), &[0, 1], None), None);
        let auto = parse(&["--processes", "auto"]);
        assert_eq!(plan(&auto, &[0, 1, 2, 3], None), Some(vec![0, 1, 2, 3]));
        assert_eq!(plan(&auto, &[0, 1, 2, 3], Some(2)), Some(vec![0, 1]));
        let three = parse(&["--processes", "3", "--cores", "2,3"]);
        assert_eq!(plan(&three, &[0, 1, 2, 3], None), Some(vec![2, 3, 2]));
    }

    #[test]
    fn exit_statuses_name_the_signal() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            describe(&std::process::ExitStatus::from_raw(9)),
            "signal 9 (SIGKILL)"
        );
        assert_eq!(
            describe(&std::process::ExitStatus::from_raw(3 << 8)),
            "exit code 3"
        );
    }
}
