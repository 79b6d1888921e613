//! Whole-system runs as separate OS processes: a private Redis, the real
//! `inferq-api` and `inferq-worker` binaries, and RabbitMQ restarts.
//!
//! The chaos and soak harnesses (`inferq-chaos`) need what in-process test
//! servers cannot give: processes that can be SIGKILLed, whose memory can be
//! read from `/proc`, and a Redis that can be killed and restarted without
//! disturbing the shared one on 6379 (which other tests use and which keeps
//! nothing on disk). Everything here kills what it started when dropped, so
//! an error or Ctrl-C in the harness leaves no stray processes behind.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Extra flags for `inferq-api` in harness runs, kept in one place. When API
/// keys become mandatory by default, the flag that turns them off (or
/// supplies a key) goes here.
pub const API_EXTRA_FLAGS: &[&str] = &["--auth", "false", "--metrics-listen", "127.0.0.1:0"];

/// Extra flags for every `inferq-worker` in harness runs.
pub const WORKER_EXTRA_FLAGS: &[&str] = &["--metrics-listen", "127.0.0.1:0"];

/// A free TCP port on 127.0.0.1 (free when this returns; good enough for a
/// child process that binds it right away).
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// True if something accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// Polls `check` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn timed_out(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what)
}

/// Resident set size of a process in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Sends `sig` to `pid`.
fn signal(pid: u32, sig: i32) -> io::Result<()> {
    crate::send_signal(pid, sig)
}

/// A child process that can be killed and started again with the same
/// command line; its stderr is appended to a log file.
pub struct Managed {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// How many times it was (re)started.
    pub starts: u32,
}

impl Managed {
    pub fn new(name: &str, program: &Path, args: Vec<String>, log: &Path) -> Self {
        Managed {
            name: name.to_owned(),
            program: program.to_owned(),
            args,
            envs: vec![("RUST_LOG".into(), "info".into())],
            log: log.to_owned(),
            child: None,
            starts: 0,
        }
    }

    /// Sets an environment variable for the next start.
    pub fn env(&mut self, key: &str, value: &str) {
        self.envs.push((key.to_owned(), value.to_owned()));
    }

    /// Starts the process (it must not be running).
    pub fn start(&mut self) -> io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.program.display())))?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file its stdout and stderr are appended to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                signal(child.id(), libc::SIGKILL)?;
            }
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) -> io::Result<()> {
        if let Some(child) = self.child.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            signal(child.id(), libc::SIGTERM)?;
            wait_until(grace, || !matches!(child.try_wait(), Ok(None)));
        }
        self.kill()
    }

    /// The last `n` lines of its log (for error messages).
    pub fn log_tail(&self, n: usize) -> String {
        let Ok(f) = std::fs::File::open(&self.log) else {
            return String::new();
        };
        let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A private `redis-server` with an append-only file fsynced on every
/// write, so that a SIGKILL loses nothing that was acknowledged and a
/// restart on the same directory brings every record back.
pub struct RedisServer {
    pub port: u16,
    process: Managed,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts Redis on a free port with its data in `dir`; waits until it
    /// answers PING.
    pub fn start(dir: &Path, aof: bool) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let appendonly = if aof { "yes" } else { "no" };
        let args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir.display().to_string(),
            "--appendonly",
            appendonly,
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        .map(String::from)
        .to_vec();
        let mut process = Managed::new(
            "redis",
            Path::new("redis-server"),
            args,
            &dir.join("redis.log"),
        );
        process.start()?;
        let mut redis = RedisServer {
            port,
            process,
            dir: dir.to_owned(),
        };
        redis.wait_ready(Duration::from_secs(20))?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// True when Redis answers PING with PONG (not `-LOADING`).
    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_millis(500),
        ) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    fn wait_ready(&mut self, timeout: Duration) -> io::Result<()> {
        if wait_until(timeout, || self.ping()) {
            return Ok(());
        }
        let tail = self.process.log_tail(20);
        Err(timed_out(format!(
            "redis-server on port {} did not answer within {timeout:?}:\n{tail}",
            self.port
        )))
    }

    /// SIGKILLs Redis (no shutdown save: only what the AOF holds survives).
    pub fn kill(&mut self) -> io::Result<()> {
        self.process.kill()
    }

    /// Starts Redis again on the same port and directory and waits until it
    /// has loaded the AOF.
    pub fn restart(&mut self) -> io::Result<()> {
        self.process.kill()?;
        self.process.start()?;
        self.wait_ready(Duration::from_secs(30))
    }

    /// SIGKILLs Redis, deletes whatever it persisted (AOF, RDB) and starts
    /// it again: a restart of a Redis that persists nothing, which comes
    /// back empty whatever its flags say.
    pub fn restart_empty(&mut self) -> io::Result<()> {
        self.process.kill()?;
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "log") {
                continue;
            }
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        self.process.start()?;
        self.wait_ready(Duration::from_secs(30))
    }
}

/// Finds `rabbitmqctl`: on PATH, or in /usr/sbin and /sbin (Debian puts it
/// there, and a non-login PATH often lacks them).
pub fn rabbitmqctl() -> io::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join("rabbitmqctl"))
        .find(|p| p.is_file())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "rabbitmqctl not found"))
}

fn rabbitmqctl_run(args: &[&str]) -> io::Result<()> {
    let out = Command::new(rabbitmqctl()?)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "rabbitmqctl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// Stops the RabbitMQ application on the local node (`rabbitmqctl
/// stop_app`): every client connection is cut and the AMQP port closes, but
/// the Erlang node stays up, so [`start_rabbitmq`] works however the node was
/// started (systemd, or `rabbitmq-server -detached` as in
/// scripts/ensure-services.sh). Blocking.
pub fn stop_rabbitmq() -> io::Result<()> {
    rabbitmqctl_run(&["-q", "stop_app"])
}

/// Starts the RabbitMQ application again (`rabbitmqctl start_app`; durable
/// queues and persistent messages come back from disk) and waits until the
/// AMQP port answers. Harmless if it is running. Blocking.
pub fn start_rabbitmq(amqp_port: u16) -> io::Result<()> {
    rabbitmqctl_run(&["-q", "start_app"])?;
    if wait_until(Duration::from_secs(60), || port_open(amqp_port)) {
        Ok(())
    } else {
        Err(timed_out(format!(
            "RabbitMQ did not listen on {amqp_port} within 60 s after start_app"
        )))
    }
}

/// Where the harness finds the InferQ binaries and models, and the shared
/// broker settings.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Directory with `inferq-api` and `inferq-worker` (target/debug or target/release).
    pub bin_dir: PathBuf,
    pub amqp_url: String,
    pub queue: String,
    pub key_prefix: String,
    pub redis_url: String,
    pub model_dir: PathBuf,
    pub default_model: String,
    pub workers: usize,
    /// Directory for the process logs.
    pub log_dir: PathBuf,
    /// Flags appended to the API's command line (after [`API_EXTRA_FLAGS`]).
    pub api_flags: Vec<String>,
    /// Flags appended to every worker's command line.
    pub worker_flags: Vec<String>,
    /// Flags for worker `i` only (`per_worker_flags[i]`, when present),
    /// appended after `worker_flags`: e.g. `--cores 1` to pin each worker
    /// to its own core.
    pub per_worker_flags: Vec<Vec<String>>,
}

impl ClusterSpec {
    /// The flags every process of the cluster shares.
    fn common_flags(&self) -> Vec<String> {
        vec![
            "--amqp-url".to_string(),
            self.amqp_url.clone(),
            "--queue".into(),
            self.queue.clone(),
            "--redis-url".into(),
            self.redis_url.clone(),
            "--key-prefix".into(),
            self.key_prefix.clone(),
            "--model-dir".into(),
            self.model_dir.display().to_string(),
        ]
    }

    /// Path of binary `name` in `bin_dir`, or an error that says how to
    /// build it.
    pub fn binary(&self, name: &str) -> io::Result<PathBuf> {
        let p = self.bin_dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
        let release = self.bin_dir.ends_with("release");
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{name} not built ({} missing): run cargo build{} --bins",
                p.display(),
                if release { " --release" } else { "" }
            ),
        ))
    }

    /// Worker `i` (not started yet), logging to `<log_dir>/worker-<i>.log`.
    pub fn worker(&self, i: usize) -> io::Result<Managed> {
        let mut args = vec![
            "--ort-library".to_string(),
            crate::ort_library().display().to_string(),
        ];
        args.extend(self.common_flags());
        args.extend(WORKER_EXTRA_FLAGS.iter().map(|s| s.to_string()));
        args.extend(self.worker_flags.iter().cloned());
        if let Some(own) = self.per_worker_flags.get(i) {
            args.extend(own.iter().cloned());
        }
        Ok(Managed::new(
            &format!("worker-{i}"),
            &self.binary("inferq-worker")?,
            args,
            &self.log_dir.join(format!("worker-{i}.log")),
        ))
    }
}

/// An API process and its workers, all talking to one queue and key prefix.
pub struct Cluster {
    pub api: Managed,
    pub api_port: u16,
    pub workers: Vec<Managed>,
}

impl Cluster {
    /// Starts the API and the workers (does not wait for readiness).
    pub fn start(spec: &ClusterSpec) -> io::Result<Self> {
        let api_bin = spec.binary("inferq-api")?;
        // Check before starting anything, so a missing worker binary is
        // reported without an API left running.
        if spec.workers > 0 {
            spec.binary("inferq-worker")?;
        }
        let api_port = free_port()?;
        let mut api_args = spec.common_flags();
        api_args.extend([
            "--listen".into(),
            format!("127.0.0.1:{api_port}"),
            "--default-model".into(),
            spec.default_model.clone(),
        ]);
        api_args.extend(API_EXTRA_FLAGS.iter().map(|s| s.to_string()));
        api_args.extend(spec.api_flags.iter().cloned());
        let mut api = Managed::new("api", &api_bin, api_args, &spec.log_dir.join("api.log"));
        api.start()?;
        let mut workers = Vec::new();
        for i in 0..spec.workers {
            let mut w = spec.worker(i)?;
            w.start()?;
            workers.push(w);
        }
        Ok(Cluster {
            api,
            api_port,
            workers,
        })
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// Stops everything gracefully (SIGTERM, then SIGKILL after `grace`).
    pub fn stop(&mut self, grace: Duration) {
        for w in &mut self.workers {
            let _ = w.stop(grace);
        }
        let _ = self.api.stop(grace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_of_this_process_is_read() {
        let kib = rss_kib(std::process::id()).expect("VmRSS");
        assert!(kib > 100, "{kib} KiB");
        assert_eq!(rss_kib(u32::MAX), None);
    }

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let spec = ClusterSpec {
            bin_dir: PathBuf::from("/nonexistent/target/release"),
            amqp_url: String::new(),
            queue: String::new(),
            key_prefix: String::new(),
            redis_url: String::new(),
            model_dir: PathBuf::new(),
            default_model: String::new(),
            workers: 1,
            log_dir: std::env::temp_dir(),
            api_flags: Vec::new(),
            worker_flags: Vec::new(),
            per_worker_flags: Vec::new(),
        };
        let e = spec.binary("inferq-api").unwrap_err().to_string();
        assert!(
            e.starts_with("inferq-api not built") && e.contains("cargo build --release --bins"),
            "{e}"
        );
        assert!(spec.worker(0).is_err());
        let e = Cluster::start(&spec)
            .err()
            .expect("no binaries")
            .to_string();
        assert!(e.contains("inferq-api not built"), "{e}");
    }
}
