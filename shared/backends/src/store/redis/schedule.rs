//! [`Scheduling`](crate::store::Scheduling) on the Redis store.

use std::time::Duration;

use super::*;
use crate::store::{Scheduling, StoreError};
use async_trait::async_trait;
use inferq_core::webhook::WebhookDelivery;

#[async_trait]
impl Scheduling for RedisStore {
    async fn schedule(&self, set: &str, member: &str, at_ms: u64) -> Result<(), StoreError> {
        self.zschedule(set, member, at_ms).await
    }

    async fn claim_due(
        &self,
        set: &str,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.zclaim(set, now_ms, lease_ms, limit).await
    }

    async fn unschedule(&self, set: &str, member: &str) -> Result<(), StoreError> {
        self.zremove(set, member).await
    }

    async fn due_at(&self, set: &str, member: &str) -> Result<Option<u64>, StoreError> {
        self.zscore(set, member).await
    }

    async fn set_webhook_delivery(
        &self,
        member: &str,
        delivery: &WebhookDelivery,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put_delivery(member, delivery, ttl).await
    }

    async fn webhook_delivery(&self, member: &str) -> Result<Option<WebhookDelivery>, StoreError> {
        self.read_delivery(member).await
    }
}
