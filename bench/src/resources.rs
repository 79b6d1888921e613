//! Resource accounting: the bench's own CPU time and the peak memory of the
//! processes it started.
//!
//! On a 2-core machine the load generator competes with the service for the
//! same cores, so every service measurement reports how much CPU the bench
//! process itself used (`getrusage(RUSAGE_SELF)` deltas). Peak RSS comes from
//! sampling `/proc/<pid>/status` every 100 ms in a background thread, for
//! each process and for their sum at the same instant.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use inferq_tests::cluster::rss_kib;
use serde::Serialize;

/// User + system CPU time of this process so far.
pub(crate) fn cpu_time() -> Duration {
    // SAFETY: getrusage writes only into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU used over an interval: seconds, and percent of one core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct CpuUse {
    pub cpu_secs: f64,
    pub pct_of_one_core: f64,
}

impl CpuUse {
    pub(crate) fn over(cpu: Duration, wall: Duration) -> Self {
        let wall = wall.as_secs_f64();
        CpuUse {
            cpu_secs: cpu.as_secs_f64(),
            pct_of_one_core: if wall > 0.0 {
                cpu.as_secs_f64() / wall * 100.0
            } else {
                0.0
            },
        }
    }
}

/// Peak resident memory of the sampled processes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct MemoryReport {
    /// Peak RSS per process name, KiB.
    pub peak_kib: BTreeMap<String, u64>,
    /// Highest sum over all processes at one sample, KiB.
    pub total_peak_kib: u64,
    pub samples: u64,
    /// RSS per process at its first sample, KiB: [`MemoryReport::growth_kib`]
    /// is measured from it (after a merge: the first report's).
    pub start_kib: BTreeMap<String, u64>,
}

impl MemoryReport {
    /// Folds in another run's report: the peaks of both.
    pub(crate) fn merge(&mut self, other: &MemoryReport) {
        for (name, kib) in &other.peak_kib {
            let peak = self.peak_kib.entry(name.clone()).or_default();
            *peak = (*peak).max(*kib);
        }
        self.total_peak_kib = self.total_peak_kib.max(other.total_peak_kib);
        self.samples += other.samples;
        for (name, kib) in &other.start_kib {
            self.start_kib.entry(name.clone()).or_insert(*kib);
        }
    }

    /// Peak minus start RSS of one process, KiB (`None` when not sampled).
    pub(crate) fn growth_kib(&self, name: &str) -> Option<u64> {
        let peak = self.peak_kib.get(name)?;
        Some(peak.saturating_sub(*self.start_kib.get(name)?))
    }

    /// Folds in one sample (KiB per process; a process that is gone is absent).
    pub(crate) fn add_sample(&mut self, sample: &[(String, u64)]) {
        let mut total = 0;
        for (name, kib) in sample {
            let peak = self.peak_kib.entry(name.clone()).or_default();
            *peak = (*peak).max(*kib);
            self.start_kib.entry(name.clone()).or_insert(*kib);
            total += kib;
        }
        self.total_peak_kib = self.total_peak_kib.max(total);
        self.samples += 1;
    }
}

/// Samples the RSS of some processes until stopped.
pub(crate) struct RssSampler {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<MemoryReport>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub(crate) fn start(processes: Vec<(String, u32)>, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(MemoryReport::default()));
        let (s, r) = (stop.clone(), report.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let sample: Vec<(String, u64)> = processes
                    .iter()
                    .filter_map(|(name, pid)| rss_kib(*pid).map(|k| (name.clone(), k)))
                    .collect();
                r.lock().expect("rss lock").add_sample(&sample);
                std::thread::sleep(every);
            }
        });
        RssSampler {
            stop,
            report,
            handle: Some(handle),
        }
    }

    pub(crate) fn finish(mut self) -> MemoryReport {
        self.halt();
        self.report.lock().expect("rss lock").clone()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_are_per_process_and_total_is_per_sample() {
        let mut m = MemoryReport::default();
        m.add_sample(&[("api".into(), 100), ("w".into(), 10)]);
        m.add_sample(&[("api".into(), 20), ("w".into(), 50)]);
        assert_eq!(m.peak_kib["api"], 100);
        assert_eq!(m.peak_kib["w"], 50);
        // Not 150: the two peaks never coincided.
        assert_eq!(m.total_peak_kib, 110);
        assert_eq!(m.samples, 2);
        assert_eq!(m.growth_kib("w"), Some(40));
        assert_eq!(m.growth_kib("api"), Some(0), "shrinking is no growth");
        assert_eq!(m.growth_kib("absent"), None);
    }

    #[test]
    fn growth_after_a_merge_counts_from_the_first_run() {
        let mut first = MemoryReport::default();
        first.add_sample(&[("rabbitmq".into(), 100)]);
        first.add_sample(&[("rabbitmq".into(), 150)]);
        let mut second = MemoryReport::default();
        second.add_sample(&[("rabbitmq".into(), 140)]);
        second.add_sample(&[("rabbitmq".into(), 260)]);
        assert_eq!(second.growth_kib("rabbitmq"), Some(120));
        first.merge(&second);
        assert_eq!(first.growth_kib("rabbitmq"), Some(160));
        assert_eq!(first.samples, 4);
    }

    #[test]
    fn cpu_percent_of_one_core() {
        let c = CpuUse::over(Duration::from_millis(500), Duration::from_secs(2));
        assert_eq!(c.cpu_secs, 0.5);
        assert_eq!(c.pct_of_one_core, 25.0);
        assert_eq!(
            CpuUse::over(Duration::ZERO, Duration::ZERO).pct_of_one_core,
            0.0
        );
    }

    #[test]
    fn own_cpu_time_is_read() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_time() > Duration::ZERO);
    }
}
