//! The dead-letter consumer: parks jobs that used up their delivery limit.
//!
//! A message reaches the dead-letter queue in two ways: a worker rejected it
//! because the job had been started `delivery_limit` times without
//! finishing (see [`crate::consumer`]), or the broker moved it there on its
//! own because it came back to the queue more often than the queue's
//! `x-delivery-limit` (workers died holding it before they could even mark
//! it running). Either way the job must not vanish: this consumer marks its
//! record `dead_lettered` — attempt count and last error visible to the
//! client — and keeps the message in the store so an operator can list and
//! replay it (`/v1/admin/dead-letters`). Only then is the dead letter acked.
//!
//! A job that is already final (it finished, or was canceled, before its
//! duplicate was dead-lettered) is simply dropped from the queue.

use bytes::Bytes;
use chrono::Utc;
use inferq_backends::broker::Delivery;
use inferq_backends::store::Saved;
use inferq_core::ErrorCode;
use inferq_core::job::{InputInfo, JobError, JobRecord};
use inferq_core::message::{ImageSource, JobMessage};

use crate::consumer::{Processor, Settle};

impl Processor {
    /// Parks one dead letter and says how to settle it.
    pub(crate) async fn park(&self, delivery: &Delivery) -> Settle {
        let mut msg = match JobMessage::decode(delivery.payload.clone()) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "unreadable dead letter dropped");
                return Settle::Ack;
            }
        };
        let Ok(record) = self.read_record(msg.id).await else {
            return Settle::Requeue;
        };
        let mut record = record.unwrap_or_else(|| {
            let mut r = JobRecord::queued(msg.id, &msg.model, msg.version, InputInfo::default());
            r.created_at = msg.created_at;
            r.deadline = msg.deadline;
            r.owner = msg.owner.clone();
            r.webhook = msg.webhook.clone();
            r.trace = msg.trace;
            r
        });
        if record.status.is_terminal() {
            tracing::info!(status = %record.status, "dead letter of a finished job dropped");
            return Settle::Ack;
        }
        let last = record
            .error
            .take()
            .map(|e| e.to_string())
            .unwrap_or_else(|| {
                "the worker running it stopped without finishing (crash, kill or lost connection)"
                    .into()
            });
        let error = JobError::new(
            ErrorCode::TooManyAttempts,
            format!(
                "gave up after {} attempt(s) and {} return(s) to the queue (delivery limit {}): {last}",
                record.attempts, delivery.delivery_count, self.delivery_limit
            ),
        );
        let _ = record.dead_letter(error, Utc::now());

        // The parked message must outlive the out-of-band image, which
        // expires with the blob TTL: carry the bytes inline from now on.
        let mut blob = None;
        if let ImageSource::Blob(key) = &msg.image {
            match self.store.get_blob(key).await {
                Ok(Some(bytes)) => {
                    blob = Some(key.clone());
                    msg.image = ImageSource::Inline(Bytes::from(bytes));
                }
                Ok(None) => tracing::warn!("the job's image expired; a replay will fail"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the job's image; requeueing");
                    return Settle::Requeue;
                }
            }
        }
        match self
            .store
            .dead_letter(&record, &msg.encode(), self.dead_letter_ttl)
            .await
        {
            Ok(Saved::Written) => {
                tracing::error!(
                    attempts = record.attempts,
                    returns = delivery.delivery_count,
                    "job dead-lettered"
                );
                if let Some(key) = blob {
                    let _ = self.store.delete_blob(&key).await;
                }
                Settle::Ack
            }
            Ok(Saved::AlreadyFinished) => Settle::Ack,
            Err(e) => {
                tracing::warn!(error = %e, "cannot park dead letter; requeueing");
                Settle::Requeue
            }
        }
    }
}
