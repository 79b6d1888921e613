//! [`Documents`](crate::store::Documents) on the in-memory store.

use std::time::Duration;

use super::*;
use crate::store::{Documents, StoreError};
use async_trait::async_trait;

#[async_trait]
impl Documents for MemoryStore {
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
