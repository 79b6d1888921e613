//! In-process result store for the embedded mode and tests.
//!
//! Records expire like Redis keys: each carries a deadline and expired
//! entries are swept on write. The number of records is bounded so a flood of
//! jobs cannot grow the process without limit; when full (after sweeping) new
//! jobs are refused with [`StoreError::Full`].

mod admission;
mod blobs;
mod coord;
mod dead;
mod documents;
mod idempotency;
mod records;
mod schedule;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::recent::{Completion, RECENT_CAPACITY};
use super::{Notifier, RATE_BUCKETS, StoreError, rate_bucket};
use inferq_core::job::{JobId, JobRecord, JobStatus};

#[derive(Default)]
struct Inner {
    records: HashMap<JobId, (JobRecord, Instant)>,
    blobs: HashMap<String, (Vec<u8>, Instant)>,
    writes: u64,
    /// Model → jobs accepted and not yet final.
    backlog: HashMap<String, u64>,
    /// (model, bucket) → jobs finished; old buckets are dropped on write.
    completions: HashMap<(String, u64), u64>,
    /// Model → its newest completions, newest first, at most
    /// [`RECENT_CAPACITY`].
    recent: HashMap<String, VecDeque<Completion>>,
    /// Parked dead letters: index by (parked order) and the messages.
    dead: BTreeMap<u64, JobId>,
    dead_messages: HashMap<JobId, (u64, Vec<u8>, Instant)>,
    dead_seq: u64,
    /// Idempotency key → (job, request fingerprint, expiry).
    idempotency: HashMap<String, (JobId, String, Instant)>,
    /// Due-sets, webhook outcomes and hashes (see `coord`).
    coord: coord::Coord,
    /// Model → (creation ms, job) of jobs queued and not started.
    waiting: HashMap<String, std::collections::BTreeSet<(u64, JobId)>>,
}

/// The in-memory store.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    capacity: usize,
    notifier: Notifier,
}

impl MemoryStore {
    /// Holds at most `capacity` records and `capacity` blobs.
    pub fn new(capacity: usize) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            notifier: Notifier::default(),
        }
    }

    /// Live records (for tests and metrics).
    pub fn len(&self) -> usize {
        self.inner.lock().expect("store lock").records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn sweep(&mut self, now: Instant) {
        self.records.retain(|_, (_, exp)| *exp > now);
        let records = &self.records;
        for w in self.waiting.values_mut() {
            w.retain(|(_, id)| records.contains_key(id));
        }
        self.blobs.retain(|_, (_, exp)| *exp > now);
        self.idempotency.retain(|_, (_, _, exp)| *exp > now);
        self.coord.sweep(now);
        let dead = &mut self.dead;
        self.dead_messages.retain(|_, (seq, _, exp)| {
            let keep = *exp > now;
            if !keep {
                dead.remove(seq);
            }
            keep
        });
    }

    fn live(&self, id: &JobId, now: Instant) -> Option<&JobRecord> {
        self.records
            .get(id)
            .filter(|(_, exp)| *exp > now)
            .map(|(r, _)| r)
    }

    /// The write every mode of [`MemoryStore`] shares; mirrors the Redis
    /// script (see `redis.rs`).
    fn write(
        &mut self,
        record: &JobRecord,
        ttl: Duration,
        capacity: usize,
        revive: bool,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        self.writes += 1;
        // Sweeping is O(n); do it on every 1024th write or when full.
        if self.writes.is_multiple_of(1024) || self.records.len() >= capacity {
            self.sweep(now);
        }
        let current = self.live(&record.id, now).map(|r| r.status);
        match current {
            _ if revive && current != Some(JobStatus::DeadLettered) => return Ok(false),
            Some(s) if !revive && s.is_terminal() => return Ok(false),
            None if self.records.len() >= capacity => return Err(StoreError::Full),
            _ => {}
        }
        self.records.insert(record.id, (record.clone(), now + ttl));
        let waiting = self.waiting.entry(record.model.clone()).or_default();
        let key = (
            record.created_at.timestamp_millis().max(0) as u64,
            record.id,
        );
        if record.status == JobStatus::Queued {
            waiting.insert(key);
        } else {
            waiting.remove(&key);
        }
        // As in the Redis script: a record the store lost is counted back
        // in by its `running` write, and its final write over nothing takes
        // nothing out.
        let lost = current.is_none();
        let backlog = self.backlog.entry(record.model.clone()).or_default();
        if record.status.is_terminal() {
            if !lost {
                *backlog = backlog.saturating_sub(1);
            }
            let bucket = rate_bucket(std::time::SystemTime::now());
            *self
                .completions
                .entry((record.model.clone(), bucket))
                .or_default() += 1;
            self.completions
                .retain(|(_, b), _| b + RATE_BUCKETS > bucket);
            let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
            let recent = self.recent.entry(record.model.clone()).or_default();
            recent.push_front(Completion::from_record(record, now_ms));
            recent.truncate(RECENT_CAPACITY);
            if record.webhook.is_some() {
                let member = format!("job:{}", record.id);
                self.coord.schedule(crate::store::HOOKS, &member, now_ms);
            }
        } else if revive {
            *backlog += 1;
            self.coord.hooks.remove(&format!("job:{}", record.id));
        } else if lost && record.status != JobStatus::Queued {
            *backlog += 1;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
