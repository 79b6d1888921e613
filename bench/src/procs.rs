//! CPU time per process group, read from `/proc`, and the local broker
//! processes found by the port they listen on.
//!
//! The production path spends CPU in five places: the API, the workers,
//! RabbitMQ, Redis and (on this shared machine) the load generator. A
//! [`CpuMeter`] reads each group's `utime + stime` from `/proc/<pid>/stat`
//! before and after a measurement and turns the difference into CPU seconds,
//! milliseconds per job and a share of the machine ([`CpuBreakdown`]), so a
//! run says where each job's CPU went, not only how many jobs there were.
//!
//! RabbitMQ (`beam.smp`) and Redis (`redis-server`) are not started by the
//! bench: [`listener_pid`] finds the process that owns the listening socket
//! of 5672 and 6379 (`/proc/net/tcp{,6}` gives the socket inode,
//! `/proc/<pid>/fd` the owner), which is exact even when other Redis
//! servers run on the machine. Other clients of the same broker (tests run
//! by other people) are counted too: the embedded rows, which do not use the
//! broker at all, show that background.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Ports of the local RabbitMQ and Redis.
pub(crate) const RABBITMQ_PORT: u16 = 5672;
pub(crate) const REDIS_PORT: u16 = 6379;

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`.
///
/// The command name (field 2) may contain spaces and parentheses, so the
/// fields are counted after the last `)`: state is field 3, utime 14 and
/// stime 15.
pub(crate) fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// User + system CPU time of a process (all its threads), `None` when it is
/// gone or unreadable.
pub(crate) fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(Duration::from_secs_f64(
        stat_ticks(&stat)? as f64 / ticks_per_sec(),
    ))
}

/// Inodes of the sockets listening on `port` in the text of
/// `/proc/net/tcp` or `/proc/net/tcp6` (state `0A` = LISTEN).
pub(crate) fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    let want = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit_once(':')?.1;
            (local_port.eq_ignore_ascii_case(&want) && *f.get(3)? == "0A")
                .then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// The process that owns a socket listening on `port`, if this process may
/// look into the owner's file descriptors.
pub(crate) fn listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && wanted.iter().any(|w| target.as_os_str() == w.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// The local RabbitMQ and Redis, named for the reports (absent when not
/// found).
pub(crate) fn broker_pids() -> Vec<(String, u32)> {
    [("rabbitmq", RABBITMQ_PORT), ("redis", REDIS_PORT)]
        .into_iter()
        .filter_map(|(name, port)| listener_pid(port).map(|p| (name.to_owned(), p)))
        .collect()
}

/// Processes counted together (e.g. `workers` = both worker processes).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProcGroup {
    pub name: String,
    pub pids: Vec<u32>,
}

impl ProcGroup {
    pub(crate) fn new(name: &str, pids: Vec<u32>) -> Self {
        ProcGroup {
            name: name.to_owned(),
            pids,
        }
    }

    /// The bench process itself: the load generator.
    pub(crate) fn loadgen() -> Self {
        ProcGroup::new("loadgen", vec![std::process::id()])
    }

    fn cpu(&self) -> Duration {
        self.pids.iter().filter_map(|&p| process_cpu(p)).sum()
    }
}

/// One group's CPU over a measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct GroupCpu {
    pub name: String,
    pub cpu_secs: f64,
    /// CPU milliseconds per finished job (`None` when no job finished).
    pub ms_per_job: Option<f64>,
    /// Percent of the machine: all allowed cores for the whole wall time.
    pub pct_of_machine: f64,
}

/// CPU of every group over one measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct CpuBreakdown {
    pub wall_secs: f64,
    pub cores: usize,
    pub jobs: u64,
    pub groups: Vec<GroupCpu>,
}

impl CpuBreakdown {
    /// From each group's CPU time over `wall` on `cores` cores, `jobs` jobs.
    pub(crate) fn compute(
        used: &[(String, Duration)],
        wall: Duration,
        cores: usize,
        jobs: u64,
    ) -> Self {
        let capacity = wall.as_secs_f64() * cores.max(1) as f64;
        let groups = used
            .iter()
            .map(|(name, cpu)| {
                let s = cpu.as_secs_f64();
                GroupCpu {
                    name: name.clone(),
                    cpu_secs: s,
                    ms_per_job: (jobs > 0).then(|| s * 1e3 / jobs as f64),
                    pct_of_machine: if capacity > 0.0 {
                        s / capacity * 100.0
                    } else {
                        0.0
                    },
                }
            })
            .collect();
        CpuBreakdown {
            wall_secs: wall.as_secs_f64(),
            cores,
            jobs,
            groups,
        }
    }

    pub(crate) fn group(&self, name: &str) -> Option<&GroupCpu> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Sum of the named groups' share of the machine (missing ones count 0).
    pub(crate) fn pct_of_machine(&self, names: &[&str]) -> f64 {
        names
            .iter()
            .filter_map(|n| self.group(n))
            .map(|g| g.pct_of_machine)
            .sum()
    }

    /// Sum of every group's CPU milliseconds per job.
    pub(crate) fn total_ms_per_job(&self) -> Option<f64> {
        self.groups.iter().map(|g| g.ms_per_job).sum()
    }
}

/// Reads the groups' CPU at the start of a measurement.
pub(crate) struct CpuMeter {
    groups: Vec<ProcGroup>,
    start: Vec<Duration>,
    t0: Instant,
}

impl CpuMeter {
    pub(crate) fn start(groups: Vec<ProcGroup>) -> Self {
        let start = groups.iter().map(ProcGroup::cpu).collect();
        CpuMeter {
            groups,
            start,
            t0: Instant::now(),
        }
    }

    /// The CPU each group used since [`CpuMeter::start`], per one of `jobs`.
    pub(crate) fn finish(self, jobs: u64) -> CpuBreakdown {
        let wall = self.t0.elapsed();
        let used: Vec<(String, Duration)> = self
            .groups
            .iter()
            .zip(&self.start)
            .map(|(g, s)| (g.name.clone(), g.cpu().saturating_sub(*s)))
            .collect();
        let cores = inferq_worker::pinning::allowed_cores().len();
        CpuBreakdown::compute(&used, wall, cores, jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_counts_after_the_command_name() {
        // A command name with spaces and a parenthesis, as /proc allows.
        let stat = "1234 (beam.smp) x) S 1 1234 1234 0 -1 4194560 \
                    500 0 0 0 250 75 3 4 20 0 30 0 100 1000 200";
        assert_eq!(stat_ticks(stat), Some(325));
        assert_eq!(stat_ticks("1234 (short) S 1"), None);
        assert_eq!(stat_ticks("no parenthesis"), None);
    }

    #[test]
    fn own_process_cpu_is_read_and_grows() {
        let before = process_cpu(std::process::id()).expect("own stat");
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(process_cpu(std::process::id()).unwrap() > before);
        assert_eq!(process_cpu(u32::MAX), None);
    }

    #[test]
    fn listening_inodes_match_port_and_listen_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5263 1 0 100 0 0 10 0\n\
   1: 0100007F:1628 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 7235 1 0 100 0 0 10 0\n\
   2: 0100007F:1628 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   106        0 9999 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 5672), vec![7235]);
        assert_eq!(listening_inodes(table, 6379), vec![5263]);
        assert!(listening_inodes(table, 80).is_empty());
        let v6 = "  sl  local_address ...\n   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5264 1 0\n";
        assert_eq!(listening_inodes(v6, 6379), vec![5264]);
    }

    #[test]
    fn a_listener_of_this_process_is_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(listener_pid(port), Some(std::process::id()));
        drop(l);
        assert_eq!(listener_pid(port), None);
    }

    #[test]
    fn breakdown_per_job_and_share_of_machine() {
        let used = vec![
            ("api".to_string(), Duration::from_millis(500)),
            ("rabbitmq".to_string(), Duration::from_millis(200)),
            ("redis".to_string(), Duration::from_millis(100)),
        ];
        let b = CpuBreakdown::compute(&used, Duration::from_secs(5), 2, 100);
        let api = b.group("api").unwrap();
        assert_eq!(api.ms_per_job, Some(5.0));
        assert_eq!(api.pct_of_machine, 5.0);
        assert!((b.pct_of_machine(&["rabbitmq", "redis", "absent"]) - 3.0).abs() < 1e-9);
        assert!((b.total_ms_per_job().unwrap() - 8.0).abs() < 1e-9);
        let none = CpuBreakdown::compute(&used, Duration::ZERO, 2, 0);
        assert_eq!(none.group("api").unwrap().ms_per_job, None);
        assert_eq!(none.group("api").unwrap().pct_of_machine, 0.0);
        assert_eq!(none.total_ms_per_job(), None);
    }
}
