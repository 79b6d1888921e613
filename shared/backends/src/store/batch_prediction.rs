//! Where a batch's parts live in the store, and reading and writing its record.
//!
//! The record type itself is vocabulary ([`inferq_core::batch_prediction`]); this is
//! the part that talks to a store: the key names of a batch's documents,
//! loading a record with its webhook outcome merged in, saving one (and
//! putting a finished batch with a webhook into the outbox in the same
//! step), and what the webhook dispatcher sends for a finished batch.

use chrono::Utc;
use inferq_core::batch_prediction::BatchRecord;
use inferq_core::job::JobId;
use inferq_core::webhook::Webhook;

use crate::store::{Blobs, Documents, Scheduling, StoreError};

/// The store key names of a batch's parts.
pub fn doc_key(store: &(impl Documents + ?Sized), id: JobId) -> String {
    store.key(&format!("batch:{id}"))
}
pub fn inputs_key(store: &(impl Documents + ?Sized), id: JobId) -> String {
    store.key(&format!("batch:{id}:inputs"))
}
pub fn ok_key(store: &(impl Documents + ?Sized), id: JobId) -> String {
    store.key(&format!("batch:{id}:ok"))
}
pub fn err_key(store: &(impl Documents + ?Sized), id: JobId) -> String {
    store.key(&format!("batch:{id}:err"))
}

/// Reads a batch record, with its webhook's delivery outcome merged in.
pub async fn load<S>(store: &S, id: JobId) -> Result<Option<BatchRecord>, StoreError>
where
    S: Blobs + Documents + Scheduling + ?Sized,
{
    let Some(raw) = store.get_blob(&doc_key(store, id)).await? else {
        return Ok(None);
    };
    let mut record: BatchRecord =
        serde_json::from_slice(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if let Some(w) = record.webhook.as_mut() {
        w.delivery = store.webhook_delivery(&format!("batch:{id}")).await?;
    }
    Ok(Some(record))
}

/// Writes a batch record for `ttl`; a final record with a webhook is put
/// into the outbox.
pub async fn save<S>(
    store: &S,
    record: &BatchRecord,
    ttl: std::time::Duration,
) -> Result<(), StoreError>
where
    S: Blobs + Documents + Scheduling + ?Sized,
{
    let mut stored = record.clone();
    if let Some(w) = stored.webhook.as_mut() {
        w.delivery = None;
    }
    let json = serde_json::to_vec(&stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store
        .put_blob(&doc_key(store, record.id), &json, ttl)
        .await?;
    if record.state.is_terminal() && record.webhook.is_some() {
        let now = Utc::now().timestamp_millis().max(0) as u64;
        store
            .schedule(crate::store::HOOKS, &format!("batch:{}", record.id), now)
            .await?;
    }
    Ok(())
}

/// What the webhook dispatcher sends for a finished batch: its webhook,
/// the event type, the record (without its owner) and the owner (whose
/// secret signs it). `None` if there is nothing to send.
pub async fn notification<S>(
    store: &S,
    id: &str,
) -> Result<Option<(Webhook, String, serde_json::Value, Option<String>)>, StoreError>
where
    S: Blobs + Documents + Scheduling + ?Sized,
{
    let Ok(id) = id.parse() else { return Ok(None) };
    let Some(mut record) = load(store, id).await? else {
        return Ok(None);
    };
    if !record.state.is_terminal() {
        return Ok(None);
    }
    let Some(webhook) = record.webhook.take() else {
        return Ok(None);
    };
    let owner = record.owner.take();
    let data = serde_json::to_value(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Some((
        webhook,
        format!("batch.{}", record.state),
        data,
        owner,
    )))
}
