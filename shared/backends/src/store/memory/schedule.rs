//! [`Scheduling`](crate::store::Scheduling) on the in-memory store.

use std::time::Duration;

use super::*;
use crate::store::{Scheduling, StoreError};
use async_trait::async_trait;
use inferq_core::webhook::WebhookDelivery;

#[async_trait]
impl Scheduling for MemoryStore {
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
}
