//! The webhook sender: drains the outbox, signs, POSTs, retries.
//!
//! Every worker runs one [`Dispatcher`]. Each round it claims due outbox
//! entries with a lease ([`crate::store::Scheduling::claim_due`]): a claimed
//! entry's due time moves to the end of the lease, so a dispatcher that dies
//! mid-delivery leaves the entry to be claimed again once the lease runs out
//! (at least once), and two dispatchers never hold the same entry at once.
//! After an attempt the outcome is written first and the entry then removed
//! or rescheduled at the next backoff step.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::sign::{Signer, Signers};
use crate::fetch::{Fetcher, StorageUri};
use crate::store::{HOOKS, ResultStore, StoreError};
use inferq_core::webhook::{DeliveryState, Webhook, WebhookFormat, message_id};

/// How the dispatcher behaves; see `WebhookConfig` for the options.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub max_attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
    /// `source` of CloudEvents notifications.
    pub source: String,
    /// How long delivery outcomes are kept (the result TTL).
    pub ttl: Duration,
    /// Pause between outbox scans when it was empty.
    pub poll: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl DispatchConfig {
    /// The delay before attempt `attempt + 1` (after `attempt` failures):
    /// `backoff × 2^(attempt-1)`, capped, with ±20 % jitter so receivers that
    /// came back are not hit by every sender at the same instant.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let base = (self.backoff.as_secs_f64() * exp).min(self.max_backoff.as_secs_f64());
        let jitter = 0.8 + 0.4 * rand::random::<f64>();
        Duration::from_secs_f64((base * jitter).max(0.0))
    }

    /// The lease on a claimed entry: one attempt's timeout plus slack.
    fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(5)
    }
}

/// What is to be sent for one outbox entry.
struct Notification {
    kind: &'static str,
    id: String,
    webhook: Webhook,
    /// `job.succeeded`, `job.failed`, `batch.completed`, …
    event: String,
    data: serde_json::Value,
    /// The job's trace: each attempt is a child span of it.
    trace: Option<inferq_core::trace::TraceContext>,
    /// Who submitted it: chooses the signing secret.
    owner: Option<String>,
    /// How often the subject was sent round again (a job's replays): part
    /// of the `webhook-id`, which is unique per event.
    sequence: u32,
}

/// Sends webhooks from the outbox until shut down.
pub struct Dispatcher {
    store: Arc<dyn ResultStore>,
    fetcher: Fetcher,
    signers: Signers,
    config: DispatchConfig,
}

/// The outcome when a tenant's notification has no secret of its own to be
/// signed with (its key entry lost its `webhook-secret=`).
const NO_SECRET: &str = "no webhook secret is configured for this tenant";

fn attempts(outcome: &str) {
    inferq_runtime::metrics::metrics()
        .webhook_attempts
        .with_label_values(&[outcome])
        .inc();
}

fn now_ms() -> u64 {
    Utc::now().timestamp_millis().max(0) as u64
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn ResultStore>,
        fetcher: Fetcher,
        signers: Signers,
        config: DispatchConfig,
    ) -> Self {
        Dispatcher {
            store,
            fetcher,
            signers,
            config,
        }
    }

    /// Delivers due webhooks until `shutdown` resolves (an attempt in flight
    /// is abandoned; its lease expires and another dispatcher retries it).
    ///
    /// Deliveries run as tasks, at most `concurrency` at once, and free
    /// slots are refilled as soon as they open: a receiver that takes its
    /// full timeout holds one slot, not everyone else's notifications.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let this = Arc::new(self);
        let slots = Arc::new(tokio::sync::Semaphore::new(this.config.concurrency.max(1)));
        tokio::pin!(shutdown);
        loop {
            let free = slots.available_permits();
            let claimed = if free == 0 {
                0
            } else {
                match this.claim(free).await {
                    Ok(due) => {
                        let n = due.len();
                        for member in due {
                            let permit = slots.clone().acquire_owned().await.expect("open");
                            let d = this.clone();
                            tokio::spawn(async move {
                                d.deliver_logged(&member).await;
                                drop(permit);
                            });
                        }
                        n
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook outbox unavailable");
                        0
                    }
                }
            };
            // Full: wait for a slot. Idle: poll again shortly.
            let pause = if claimed > 0 && claimed == free {
                Duration::from_millis(5)
            } else {
                this.config.poll
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn claim(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let lease = self.config.lease().as_millis() as u64;
        self.store.claim_due(HOOKS, now_ms(), lease, limit).await
    }

    async fn deliver_logged(&self, member: &str) {
        if let Err(e) = self.deliver(member).await {
            tracing::warn!(entry = %member, error = %e, "webhook bookkeeping failed; retried after the lease");
        }
    }

    async fn load(&self, member: &str) -> Result<Option<Notification>, StoreError> {
        let Some((kind, id)) = member.split_once(':') else {
            return Ok(None);
        };
        match kind {
            "job" => {
                let Ok(job) = id.parse() else { return Ok(None) };
                let Some(mut record) = self.store.get(job).await? else {
                    return Ok(None);
                };
                let Some(webhook) = record.webhook.take() else {
                    return Ok(None);
                };
                if !record.status.is_terminal() {
                    return Ok(None);
                }
                let mut data = serde_json::to_value(&record)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if let Some(o) = data.as_object_mut() {
                    o.remove("owner");
                }
                Ok(Some(Notification {
                    kind: "job",
                    id: id.to_owned(),
                    event: format!("job.{}", record.status),
                    webhook,
                    data,
                    trace: record.trace,
                    owner: record.owner,
                    sequence: record.replays,
                }))
            }
            "batch" => {
                let Some((webhook, event, data, owner)) =
                    crate::store::batch_prediction::notification(self.store.as_ref(), id).await?
                else {
                    return Ok(None);
                };
                Ok(Some(Notification {
                    kind: "batch",
                    id: id.to_owned(),
                    webhook,
                    event,
                    data,
                    trace: None,
                    owner,
                    sequence: 0,
                }))
            }
            _ => Ok(None),
        }
    }

    /// One attempt for one entry, and its bookkeeping.
    async fn deliver(&self, member: &str) -> Result<(), StoreError> {
        let Some(n) = self.load(member).await? else {
            // Expired, or nothing to send: drop the entry.
            return self.store.unschedule(HOOKS, member).await;
        };
        let mut delivery = self
            .store
            .webhook_delivery(member)
            .await?
            .unwrap_or_default();
        if delivery.state != DeliveryState::Pending {
            return self.store.unschedule(HOOKS, member).await;
        }
        let now = Utc::now();
        delivery.attempts += 1;
        delivery.last_attempt_at = Some(now);
        let hop = n.trace.map(|t| t.child());
        let signer = self.signers.for_owner(n.owner.as_deref());
        let outcome = match signer {
            Some(signer) => self.send(&n, signer, now, hop).await,
            None => Err(NO_SECRET.to_owned()),
        };
        let span = tracing::info_span!("webhook", entry = %member, url = %n.webhook.url, attempt = delivery.attempts,
            trace_id = hop.map(|t| t.trace_id()).unwrap_or_default(),
            span_id = hop.map(|t| t.span_id()).unwrap_or_default());
        let _g = span.enter();
        match outcome {
            Ok(status) if (200..300).contains(&status) => {
                delivery.state = DeliveryState::Delivered;
                delivery.last_status = Some(status);
                delivery.last_error = None;
                delivery.delivered_at = Some(Utc::now());
                delivery.next_attempt_at = None;
                attempts("delivered");
                tracing::info!(status, "webhook delivered");
            }
            other => {
                let (status, error) = match other {
                    Ok(s) => (Some(s), format!("the receiver answered {s}")),
                    Err(e) => (None, e),
                };
                delivery.last_status = status;
                delivery.last_error = Some(error.clone());
                // 410 Gone, or nothing to sign with: retrying cannot help.
                let gone = status == Some(410) || signer.is_none();
                if gone || delivery.attempts >= self.config.max_attempts {
                    delivery.state = DeliveryState::Failed;
                    delivery.next_attempt_at = None;
                    attempts("failed");
                    tracing::warn!(%error, "webhook given up");
                } else {
                    let wait = self.config.delay(delivery.attempts);
                    delivery.next_attempt_at =
                        Some(Utc::now() + chrono::Duration::milliseconds(wait.as_millis() as i64));
                    attempts("retry");
                    tracing::info!(%error, retry_in = ?wait, "webhook attempt failed");
                }
            }
        }
        drop(_g);
        self.store
            .set_webhook_delivery(member, &delivery, self.config.ttl)
            .await?;
        match delivery.next_attempt_at {
            Some(at) => {
                self.store
                    .schedule(HOOKS, member, at.timestamp_millis().max(0) as u64)
                    .await
            }
            None => self.store.unschedule(HOOKS, member).await,
        }
    }

    /// POSTs the notification; the HTTP status, or why there was none.
    async fn send(
        &self,
        n: &Notification,
        signer: &Signer,
        now: chrono::DateTime<Utc>,
        trace: Option<inferq_core::trace::TraceContext>,
    ) -> Result<u16, String> {
        let url = match StorageUri::parse(&n.webhook.url) {
            Ok(StorageUri::Http(url)) => url,
            _ => return Err(format!("{} is not an http(s) URL", n.webhook.url)),
        };
        let state = n.event.rsplit('.').next().unwrap_or(&n.event);
        let msg_id = message_id(n.kind, &n.id, state, n.sequence);
        let mut headers: Vec<(String, String)> = Vec::new();
        let body = match n.webhook.format {
            WebhookFormat::Standard => {
                let envelope = json!({
                    "type": n.event,
                    "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "data": n.data,
                });
                serde_json::to_vec(&envelope).expect("json value serialises")
            }
            WebhookFormat::Cloudevents => {
                let ce = [
                    ("ce-specversion", "1.0".to_owned()),
                    ("ce-id", msg_id.clone()),
                    ("ce-source", self.config.source.clone()),
                    ("ce-type", format!("dev.inferq.{}.v1", n.event)),
                    ("ce-subject", format!("{}s/{}", n.kind, n.id)),
                    (
                        "ce-time",
                        now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    ),
                ];
                headers.extend(ce.into_iter().map(|(k, v)| (k.to_owned(), v)));
                serde_json::to_vec(&n.data).expect("json value serialises")
            }
        };
        let signed = signer.sign(&msg_id, now.timestamp(), &body);
        headers.push(("webhook-id".into(), signed.id));
        headers.push(("webhook-timestamp".into(), signed.timestamp.to_string()));
        headers.push(("webhook-signature".into(), signed.signature));
        if let Some(t) = trace {
            headers.push((inferq_core::trace::TRACEPARENT.into(), t.to_string()));
        }
        self.fetcher
            .post(&url, headers, body.into(), self.config.timeout)
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DispatchConfig {
        DispatchConfig {
            max_attempts: 5,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            source: "inferq".into(),
            ttl: Duration::from_secs(60),
            poll: Duration::from_millis(100),
            concurrency: 2,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let c = config();
        for _ in 0..50 {
            let d1 = c.delay(1).as_secs_f64();
            assert!((1.6..=2.4).contains(&d1), "{d1}");
            let d3 = c.delay(3).as_secs_f64();
            assert!((6.4..=9.6).contains(&d3), "{d3}");
            let d9 = c.delay(9).as_secs_f64();
            assert!((8.0..=12.0).contains(&d9), "capped: {d9}");
        }
    }
}
