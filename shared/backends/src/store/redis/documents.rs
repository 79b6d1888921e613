//! [`Documents`](crate::store::Documents) on the Redis store.

use std::time::Duration;

use super::*;
use crate::store::{Documents, StoreError};
use async_trait::async_trait;

#[async_trait]
impl Documents for RedisStore {
    async fn hash_set(
        &self,
        key: &str,
        fields: &[(String, Vec<u8>)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.hset(key, fields, ttl).await
    }

    async fn hash_get(
        &self,
        key: &str,
        fields: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.hget(key, fields).await
    }

    async fn hash_len(&self, key: &str) -> Result<u64, StoreError> {
        self.hlen(key).await
    }

    async fn hash_fields(&self, key: &str) -> Result<Vec<String>, StoreError> {
        self.hkeys(key).await
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }
}
