//! [`Blobs`](crate::store::Blobs) on the in-memory store.

use std::time::Duration;

use super::*;
use crate::store::{Blobs, StoreError};
use async_trait::async_trait;
use inferq_core::job::JobId;

#[async_trait]
impl Blobs for MemoryStore {
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
}
