//! Completion webhooks: "tell me when it is done" without polling.
//!
//! A job (or a batch) may name a URL. These are the records of that: the
//! [`Webhook`] a client asked for, its format, and how delivery went so far
//! ([`WebhookDelivery`]). Delivering is the backends' job: the store puts a
//! finished job into a durable outbox in the same atomic write that makes it
//! final, and a dispatcher in every worker claims due entries with a lease,
//! POSTs a signed Standard Webhooks message (or a CloudEvent) and records
//! the outcome here, retrying with backoff until the attempt limit.
//!
//! Delivery is at least once: a receiver deduplicates on `webhook-id`
//! (`job_<id>_<status>_<replays>` / `batch_<id>_<state>_0`, see
//! [`message_id`]), which stays the same across retries of one event and
//! differs between events — a replayed dead letter's real ending is not
//! dropped as a repeat of its `dead_lettered` notice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A completion callback a client asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Webhook {
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// How delivery went so far; absent until the first attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<WebhookDelivery>,
}

/// The shape of the notification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"type", "timestamp", "data"}` signed per Standard Webhooks.
    #[default]
    Standard,
    /// A CloudEvent in binary mode (`ce-*` headers, the record as data),
    /// also carrying the Standard Webhooks signature headers.
    Cloudevents,
}

impl std::str::FromStr for WebhookFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standard" => Ok(WebhookFormat::Standard),
            "cloudevents" => Ok(WebhookFormat::Cloudevents),
            other => Err(format!(
                "webhook format `{other}` is not `standard` or `cloudevents`"
            )),
        }
    }
}

/// Where a webhook's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet; another attempt is scheduled.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Given up: attempts used up, or the receiver answered 410 Gone.
    Failed,
}

/// The delivery outcome shown in the job (or batch) record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookDelivery {
    pub state: DeliveryState,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// HTTP status of the last answer, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Before the first attempt: pending, nothing tried yet.
impl Default for WebhookDelivery {
    fn default() -> Self {
        WebhookDelivery {
            state: DeliveryState::Pending,
            attempts: 0,
            last_attempt_at: None,
            last_status: None,
            last_error: None,
            next_attempt_at: None,
            delivered_at: None,
        }
    }
}

/// An outbox entry's member string: `job:<id>` or `batch:<id>`.
pub fn outbox_member(kind: &str, id: &str) -> String {
    format!("{kind}:{id}")
}

/// The `webhook-id` of a notification: the same for every attempt of one
/// event, unique per event. `state` is the final status (`succeeded`,
/// `dead_lettered`, …); `sequence` counts how often the subject was sent
/// round again (a job's `replays`), since a replayed job can reach the
/// same status twice.
pub fn message_id(kind: &str, id: &str, state: &str, sequence: u32) -> String {
    format!("{kind}_{id}_{state}_{sequence}")
}

#[cfg(test)]
mod message_id_tests {
    use super::message_id;

    #[test]
    fn one_id_per_event() {
        let id = "0b6c6a51-7f3e-4a8b-9d43-0b8a2f5e9c11";
        let parked = message_id("job", id, "dead_lettered", 0);
        let replayed = message_id("job", id, "succeeded", 1);
        let parked_again = message_id("job", id, "dead_lettered", 1);
        assert_eq!(parked, format!("job_{id}_dead_lettered_0"));
        assert_ne!(parked, replayed);
        assert_ne!(parked, parked_again);
        assert_eq!(replayed, message_id("job", id, "succeeded", 1));
    }
}
