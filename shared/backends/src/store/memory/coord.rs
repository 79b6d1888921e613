//! The coordination half of the in-memory store: due-sets, webhook
//! outcomes and hashes, mirroring `redis/coord.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Inner, MemoryStore};
use crate::store::StoreError;
use inferq_core::webhook::WebhookDelivery;

/// Due-sets, webhook outcomes and hashes, kept beside the records.
#[derive(Default)]
pub(super) struct Coord {
    /// Set name → member → due time (Unix ms).
    pub(super) due: HashMap<String, HashMap<String, u64>>,
    /// Outbox member → delivery outcome, expiry.
    pub(super) hooks: HashMap<String, (WebhookDelivery, Instant)>,
    /// Key → fields, expiry.
    pub(super) hashes: HashMap<String, (HashMap<String, Vec<u8>>, Instant)>,
}

impl Coord {
    pub(super) fn sweep(&mut self, now: Instant) {
        self.hooks.retain(|_, (_, exp)| *exp > now);
        self.hashes.retain(|_, (_, exp)| *exp > now);
    }

    pub(super) fn schedule(&mut self, set: &str, member: &str, at_ms: u64) {
        self.due
            .entry(set.to_owned())
            .or_default()
            .insert(member.to_owned(), at_ms);
    }

    fn live_hash(&self, key: &str) -> Option<&HashMap<String, Vec<u8>>> {
        self.hashes
            .get(key)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(h, _)| h)
    }
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().expect("store lock"))
    }

    pub(super) fn zschedule(&self, set: &str, member: &str, at_ms: u64) {
        self.with(|i| i.coord.schedule(set, member, at_ms));
    }

    pub(super) fn zclaim(
        &self,
        set: &str,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Vec<String> {
        self.with(|i| {
            let Some(members) = i.coord.due.get_mut(set) else {
                return Vec::new();
            };
            let mut due: Vec<(u64, String)> = members
                .iter()
                .filter(|(_, at)| **at <= now_ms)
                .map(|(m, at)| (*at, m.clone()))
                .collect();
            due.sort();
            due.truncate(limit.max(1));
            let until = now_ms.saturating_add(lease_ms);
            for (_, m) in &due {
                members.insert(m.clone(), until);
            }
            due.into_iter().map(|(_, m)| m).collect()
        })
    }

    pub(super) fn zremove(&self, set: &str, member: &str) {
        self.with(|i| {
            if let Some(members) = i.coord.due.get_mut(set) {
                members.remove(member);
            }
        });
    }

    pub(super) fn zscore(&self, set: &str, member: &str) -> Option<u64> {
        self.with(|i| i.coord.due.get(set).and_then(|m| m.get(member)).copied())
    }

    pub(super) fn put_delivery(&self, member: &str, d: &WebhookDelivery, ttl: Duration) {
        self.with(|i| {
            i.coord
                .hooks
                .insert(member.to_owned(), (d.clone(), Instant::now() + ttl))
        });
    }

    pub(super) fn read_delivery(&self, member: &str) -> Option<WebhookDelivery> {
        self.with(|i| {
            i.coord
                .hooks
                .get(member)
                .filter(|(_, exp)| *exp > Instant::now())
                .map(|(d, _)| d.clone())
        })
    }

    pub(super) fn hset(
        &self,
        key: &str,
        fields: &[(String, Vec<u8>)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let capacity = self.capacity;
        self.with(|i| {
            let now = Instant::now();
            if !i.coord.hashes.contains_key(key) && i.coord.hashes.len() >= capacity {
                i.coord.sweep(now);
                if i.coord.hashes.len() >= capacity {
                    return Err(StoreError::Full);
                }
            }
            let entry = i
                .coord
                .hashes
                .entry(key.to_owned())
                .or_insert_with(|| (HashMap::new(), now));
            if entry.1 <= now {
                entry.0.clear();
            }
            for (f, v) in fields {
                entry.0.insert(f.clone(), v.clone());
            }
            entry.1 = now + ttl;
            Ok(())
        })
    }

    pub(super) fn hget(&self, key: &str, fields: &[String]) -> Vec<Option<Vec<u8>>> {
        self.with(|i| {
            let hash = i.coord.live_hash(key);
            fields
                .iter()
                .map(|f| hash.and_then(|h| h.get(f)).cloned())
                .collect()
        })
    }

    pub(super) fn hlen(&self, key: &str) -> u64 {
        self.with(|i| i.coord.live_hash(key).map_or(0, |h| h.len() as u64))
    }

    pub(super) fn hkeys(&self, key: &str) -> Vec<String> {
        self.with(|i| {
            i.coord
                .live_hash(key)
                .map(|h| h.keys().cloned().collect())
                .unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod tests {

    use crate::store::memory::MemoryStore;
    use crate::store::{Documents, Scheduling};
    use std::time::Duration;

    #[tokio::test]
    async fn claims_are_leased_and_oldest_first() {
        let s = MemoryStore::new(10);
        s.schedule("q", "b", 20).await.unwrap();
        s.schedule("q", "a", 10).await.unwrap();
        s.schedule("q", "later", 500).await.unwrap();
        assert_eq!(s.claim_due("q", 100, 1000, 10).await.unwrap(), ["a", "b"]);
        // Leased: nobody else gets them before the lease ends.
        assert!(s.claim_due("q", 200, 1000, 10).await.unwrap().is_empty());
        assert_eq!(s.due_at("q", "a").await.unwrap(), Some(1100));
        assert_eq!(s.claim_due("q", 1100, 10, 1).await.unwrap(), ["later"]);
        s.unschedule("q", "a").await.unwrap();
        assert_eq!(s.due_at("q", "a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn hashes_set_read_and_expire() {
        let s = MemoryStore::new(10);
        let f = |k: &str, v: &str| (k.to_owned(), v.as_bytes().to_vec());
        s.hash_set("h", &[f("1", "x"), f("2", "y")], Duration::from_secs(60))
            .await
            .unwrap();
        s.hash_set("h", &[f("2", "z")], Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(s.hash_len("h").await.unwrap(), 2);
        let got = s.hash_get("h", &["2".into(), "3".into()]).await.unwrap();
        assert_eq!(got, vec![Some(b"z".to_vec()), None]);
        s.hash_set("short", &[f("1", "x")], Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(s.hash_len("short").await.unwrap(), 0);
        assert!(s.hash_fields("short").await.unwrap().is_empty());
    }
}
