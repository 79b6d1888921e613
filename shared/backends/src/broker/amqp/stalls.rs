//! Publishes still waiting for the broker's confirm, for readiness.
//!
//! A connection that opens is not a broker that takes jobs: a RabbitMQ node
//! left alone by the loss of the other two (a quorum queue without its
//! majority) accepts connections and publishes and confirms none of them,
//! and a node under a memory alarm blocks every publisher. The readiness
//! probe would say "ready" to both. So the queue keeps the start time of
//! every publish in progress (a guard dropped when the publish ends,
//! however it ends — also when the caller's deadline drops it), and
//! readiness fails while one has waited longer than [`STALL`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a publish may wait for its confirm before the queue stops
/// calling itself ready. A healthy confirm takes milliseconds; a leader
/// election on a surviving node a few seconds.
pub(super) const STALL: Duration = Duration::from_secs(5);

/// The publishes in progress, by sequence number.
#[derive(Default)]
pub(super) struct Stalls {
    inner: Mutex<(u64, BTreeMap<u64, Instant>)>,
}

/// One publish in progress; dropping it ends it.
pub(super) struct Pending<'a> {
    stalls: &'a Stalls,
    seq: u64,
}

impl Stalls {
    /// Starts tracking one publish.
    pub(super) fn begin(&self) -> Pending<'_> {
        let mut inner = self.inner.lock().expect("stalls lock");
        let seq = inner.0;
        inner.0 += 1;
        inner.1.insert(seq, Instant::now());
        Pending { stalls: self, seq }
    }

    /// How long the oldest publish in progress has waited.
    pub(super) fn oldest(&self) -> Option<Duration> {
        let inner = self.inner.lock().expect("stalls lock");
        inner.1.values().next().map(Instant::elapsed)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.stalls.inner.lock() {
            inner.1.remove(&self.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_publish_in_progress_is_reported_until_it_ends() {
        let s = Stalls::default();
        assert!(s.oldest().is_none());
        let first = s.begin();
        std::thread::sleep(Duration::from_millis(20));
        let second = s.begin();
        let oldest = s.oldest().unwrap();
        assert!(oldest >= Duration::from_millis(20), "{oldest:?}");
        drop(first);
        assert!(s.oldest().unwrap() < oldest, "the second is younger");
        drop(second);
        assert!(s.oldest().is_none());
    }
}
