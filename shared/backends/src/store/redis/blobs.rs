//! [`Blobs`](crate::store::Blobs) on the Redis store.

use std::time::Duration;

use super::*;
use crate::store::{Blobs, StoreError};
use async_trait::async_trait;
use inferq_core::job::JobId;

#[async_trait]
impl Blobs for RedisStore {
    async fn put_blob(&self, key: &str, data: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(key)
            .arg(data)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn get_blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn delete_blob(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    fn blob_key(&self, id: JobId) -> String {
        format!("{}:blob:{id}", self.prefix)
    }

    fn output_key(&self, id: JobId) -> String {
        format!("{}:output:{id}", self.prefix)
    }
}
