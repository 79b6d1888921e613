//! In-process result store for the embedded mode and tests.
//!
//! Records expire like Redis keys: each carries a deadline and expired
//! entries are swept on write. The number of records is bounded so a flood of
//! jobs cannot grow the process without limit; when full (after sweeping) new
//! jobs are refused with [`StoreError::Full`].

mod coord;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::recent::{Completion, RECENT_CAPACITY};
use super::{
    Admission, Claim, Notifier, RATE_BUCKET_SECS, RATE_BUCKETS, ResultStore, Saved, StoreError,
    rate_bucket,
};
use inferq_core::job::{JobId, JobRecord, JobStatus};
use inferq_core::webhook::WebhookDelivery;

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
        let backlog = self.backlog.entry(record.model.clone()).or_default();
        if record.status.is_terminal() {
            *backlog = backlog.saturating_sub(1);
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
        }
        Ok(true)
    }
}

#[async_trait]
impl ResultStore for MemoryStore {
    async fn save(&self, record: &JobRecord, ttl: Duration) -> Result<Saved, StoreError> {
        let written =
            self.inner
                .lock()
                .expect("store lock")
                .write(record, ttl, self.capacity, false)?;
        if !written {
            return Ok(Saved::AlreadyFinished);
        }
        if record.status.is_terminal() {
            self.notifier.notify(record.id);
        }
        Ok(Saved::Written)
    }

    async fn admit(&self, model: &str, max: u64) -> Result<Admission, StoreError> {
        let mut inner = self.inner.lock().expect("store lock");
        let backlog = inner.backlog.get(model).copied().unwrap_or(0);
        if max > 0 && backlog >= max {
            let newest = rate_bucket(std::time::SystemTime::now());
            let done: u64 = inner
                .completions
                .iter()
                .filter(|((m, b), _)| m == model && b + RATE_BUCKETS > newest)
                .map(|(_, n)| n)
                .sum();
            return Ok(Admission::Full {
                backlog,
                completions_per_sec: done as f64 / (RATE_BUCKETS * RATE_BUCKET_SECS) as f64,
            });
        }
        inner.backlog.insert(model.to_owned(), backlog + 1);
        Ok(Admission::Admitted {
            backlog: backlog + 1,
        })
    }

    async fn release(&self, model: &str) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("store lock");
        if let Some(n) = inner.backlog.get_mut(model) {
            *n = n.saturating_sub(1);
        }
        Ok(())
    }

    async fn backlog(&self, model: &str) -> Result<u64, StoreError> {
        let inner = self.inner.lock().expect("store lock");
        Ok(inner.backlog.get(model).copied().unwrap_or(0))
    }

    async fn oldest_waiting(&self, model: &str) -> Result<Option<u64>, StoreError> {
        let inner = self.inner.lock().expect("store lock");
        Ok(inner
            .waiting
            .get(model)
            .and_then(|w| w.first())
            .map(|(at, _)| *at))
    }

    async fn recent_completions(&self, model: &str) -> Result<Vec<Completion>, StoreError> {
        let inner = self.inner.lock().expect("store lock");
        Ok(inner
            .recent
            .get(model)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn dead_letter(
        &self,
        record: &JobRecord,
        message: &[u8],
        ttl: Duration,
    ) -> Result<Saved, StoreError> {
        {
            let mut inner = self.inner.lock().expect("store lock");
            if !inner.write(record, ttl, self.capacity, false)? {
                return Ok(Saved::AlreadyFinished);
            }
            inner.dead_seq += 1;
            let seq = inner.dead_seq;
            if let Some((old, _, _)) = inner
                .dead_messages
                .insert(record.id, (seq, message.to_vec(), Instant::now() + ttl))
            {
                inner.dead.remove(&old);
            }
            inner.dead.insert(seq, record.id);
        }
        self.notifier.notify(record.id);
        Ok(Saved::Written)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<JobId>, StoreError> {
        let inner = self.inner.lock().expect("store lock");
        Ok(inner.dead.values().take(limit).copied().collect())
    }

    async fn dead_message(&self, id: JobId) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = self.inner.lock().expect("store lock");
        Ok(inner
            .dead_messages
            .get(&id)
            .filter(|(_, _, exp)| *exp > Instant::now())
            .map(|(_, m, _)| m.clone()))
    }

    async fn revive(&self, record: &JobRecord, ttl: Duration) -> Result<bool, StoreError> {
        self.inner
            .lock()
            .expect("store lock")
            .write(record, ttl, self.capacity, true)
    }

    async fn forget_dead(&self, id: JobId) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("store lock");
        if let Some((seq, _, _)) = inner.dead_messages.remove(&id) {
            inner.dead.remove(&seq);
        }
        Ok(())
    }

    async fn claim_idempotency(
        &self,
        key: &str,
        job: JobId,
        fingerprint: &str,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("store lock");
        if let Some((id, fp, exp)) = inner.idempotency.get(key)
            && *exp > now
        {
            return Ok(Claim::Taken {
                job: *id,
                fingerprint: fp.clone(),
            });
        }
        if inner.idempotency.len() >= self.capacity {
            inner.sweep(now);
            if inner.idempotency.len() >= self.capacity {
                return Err(StoreError::Full);
            }
        }
        inner
            .idempotency
            .insert(key.to_owned(), (job, fingerprint.to_owned(), now + ttl));
        Ok(Claim::New)
    }

    async fn release_idempotency(&self, key: &str, job: JobId) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("store lock");
        if inner
            .idempotency
            .get(key)
            .is_some_and(|(id, _, _)| *id == job)
        {
            inner.idempotency.remove(key);
        }
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let mut record = {
            let inner = self.inner.lock().expect("store lock");
            inner
                .records
                .get(&id)
                .filter(|(_, exp)| *exp > Instant::now())
                .map(|(r, _)| r.clone())
        };
        if let Some(w) = record.as_mut().and_then(|r| r.webhook.as_mut()) {
            w.delivery = self.read_delivery(&format!("job:{id}"));
        }
        Ok(record)
    }

    async fn delete(&self, id: JobId) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("store lock");
        if let Some((r, _)) = inner.records.remove(&id)
            && let Some(w) = inner.waiting.get_mut(&r.model)
        {
            w.remove(&(r.created_at.timestamp_millis().max(0) as u64, id));
        }
        Ok(())
    }

    async fn put_blob(&self, key: &str, data: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("store lock");
        if inner.blobs.len() >= self.capacity {
            inner.sweep(now);
            if inner.blobs.len() >= self.capacity {
                return Err(StoreError::Full);
            }
        }
        inner
            .blobs
            .insert(key.to_owned(), (data.to_vec(), now + ttl));
        Ok(())
    }

    async fn get_blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = self.inner.lock().expect("store lock");
        Ok(inner
            .blobs
            .get(key)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(b, _)| b.clone()))
    }

    async fn delete_blob(&self, key: &str) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("store lock");
        inner.blobs.remove(key);
        inner.coord.hashes.remove(key);
        Ok(())
    }

    fn blob_key(&self, id: JobId) -> String {
        format!("blob:{id}")
    }

    fn output_key(&self, id: JobId) -> String {
        format!("output:{id}")
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    async fn schedule(&self, set: &str, member: &str, at_ms: u64) -> Result<(), StoreError> {
        self.zschedule(set, member, at_ms);
        Ok(())
    }

    async fn claim_due(
        &self,
        set: &str,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self.zclaim(set, now_ms, lease_ms, limit))
    }

    async fn unschedule(&self, set: &str, member: &str) -> Result<(), StoreError> {
        self.zremove(set, member);
        Ok(())
    }

    async fn due_at(&self, set: &str, member: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.zscore(set, member))
    }

    async fn set_webhook_delivery(
        &self,
        member: &str,
        delivery: &WebhookDelivery,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put_delivery(member, delivery, ttl);
        Ok(())
    }

    async fn webhook_delivery(&self, member: &str) -> Result<Option<WebhookDelivery>, StoreError> {
        Ok(self.read_delivery(member))
    }

    async fn hash_set(
        &self,
        key: &str,
        fields: &[(String, Vec<u8>)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.hset(key, fields, ttl)
    }

    async fn hash_get(
        &self,
        key: &str,
        fields: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        Ok(self.hget(key, fields))
    }

    async fn hash_len(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self.hlen(key))
    }

    async fn hash_fields(&self, key: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.hkeys(key))
    }

    fn key(&self, name: &str) -> String {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests;
