//! Latency recording and summaries.
//!
//! Every timed operation goes into an HDR histogram in microseconds (3
//! significant digits, so a percentile is within 0.1 % of the recorded
//! value whatever its magnitude), and per-thread or per-client histograms
//! are merged before summarising. The summary is what the report prints and
//! serialises: count, mean and the p50/p90/p99/max in milliseconds.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram tracks: 10 minutes (values above are clamped).
const MAX_MICROS: u64 = 600_000_000;

/// A latency histogram in microseconds.
#[derive(Clone)]
pub(crate) struct Latencies {
    hist: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub(crate) fn new() -> Self {
        Latencies {
            hist: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"),
        }
    }

    /// Records one duration (at least 1 µs, at most [`MAX_MICROS`]).
    pub(crate) fn record(&mut self, d: Duration) {
        let micros = (d.as_micros() as u64).clamp(1, MAX_MICROS);
        self.hist.saturating_record(micros);
    }

    /// Adds every value recorded in `other`.
    pub(crate) fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail.
        self.hist
            .add(&other.hist)
            .expect("histograms with equal bounds");
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The summary the report shows; all zero when nothing was recorded.
    pub(crate) fn summary(&self) -> Summary {
        if self.hist.is_empty() {
            return Summary::default();
        }
        let ms = |micros: u64| micros as f64 / 1e3;
        Summary {
            count: self.hist.len(),
            mean_ms: self.hist.mean() / 1e3,
            p50_ms: ms(self.hist.value_at_quantile(0.50)),
            p90_ms: ms(self.hist.value_at_quantile(0.90)),
            p99_ms: ms(self.hist.value_at_quantile(0.99)),
            max_ms: ms(self.hist.max()),
        }
    }
}

/// Percentiles of one set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Summary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// `count / secs`, or 0 for an empty interval.
pub(crate) fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 0.002 + 1e-9
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_ms() {
        let mut l = Latencies::new();
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!(s.count, 100);
        assert!(close(s.p50_ms, 50.0), "{s:?}");
        assert!(close(s.p90_ms, 90.0), "{s:?}");
        assert!(close(s.p99_ms, 99.0), "{s:?}");
        assert!(close(s.max_ms, 100.0), "{s:?}");
        assert!(close(s.mean_ms, 50.5), "{s:?}");
    }

    #[test]
    fn merging_adds_counts_and_keeps_the_tail() {
        let mut a = Latencies::new();
        let mut b = Latencies::new();
        for _ in 0..99 {
            a.record(Duration::from_millis(2));
        }
        b.record(Duration::from_secs(3));
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 100);
        assert!(close(s.p50_ms, 2.0), "{s:?}");
        assert!(close(s.max_ms, 3000.0), "{s:?}");
    }

    #[test]
    fn empty_and_out_of_range() {
        assert_eq!(Latencies::new().summary(), Summary::default());
        let mut l = Latencies::new();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(100_000));
        let s = l.summary();
        assert_eq!(s.count, 2);
        assert!(s.p50_ms > 0.0 && s.p50_ms <= 0.002, "{s:?}");
        assert!(close(s.max_ms, MAX_MICROS as f64 / 1e3), "{s:?}");
    }

    #[test]
    fn rate_handles_zero_time() {
        assert_eq!(rate(10, 0.0), 0.0);
        assert_eq!(rate(10, 2.0), 5.0);
    }
}
