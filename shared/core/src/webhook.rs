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
//! (`job_<id>` / `batch_<id>`, see [`message_id`]), which stays the same
//! across retries.

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

/// The `webhook-id` of a notification: stable for all attempts.
pub fn message_id(kind: &str, id: &str) -> String {
    format!("{kind}_{id}")
}
