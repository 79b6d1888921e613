//! RabbitMQ job queue (lapin).
//!
//! Jobs go to one durable quorum queue as persistent messages on a channel in
//! confirm mode: `publish` returns only after the broker acknowledged the
//! message, i.e. after a majority of the queue's replicas wrote it. That is
//! the moment the API may answer 202.
//!
//! The connection is opened lazily and re-opened after it breaks, so a broker
//! restart makes calls fail fast with [`BrokerError::Unavailable`] (the API
//! answers 503) and the next call after the broker is back succeeds.
//!
//! The URL may be a comma-separated list, one per node of a RabbitMQ
//! cluster: a connection is made to the first that answers, and after it
//! breaks the nodes are tried again starting with the one after it, so
//! publishers and consumers move to a surviving node without a restart. A
//! publish whose connection broke is sent once more on the new one (a job
//! published twice is handled like a redelivery). A nack reopens the
//! publisher channel before the publish is retried: a channel opened on a
//! surviving node while a quorum queue elects its new leader can nack every
//! publish until the old leader returns (docs/cluster-harness.md).
//!
//! Publishes are `mandatory`: a message that no queue takes (the job queue
//! was deleted or is unbound) is returned by the broker instead of being
//! confirmed into the void; the queue is then declared again and the
//! publish retried, so a confirmed job is a queued job.
//!
//! Topology, declared by every process on connect (declaring is idempotent):
//! - `Q` — the job queue: quorum, with `x-delivery-limit` (a message
//!   returned more often than that — its consumers keep dying — is
//!   dead-lettered instead of looping forever) and at-least-once
//!   dead-lettering into `Q.dlx`, so a dead letter cannot be lost between
//!   the two queues;
//! - `Q.dlx` — a fanout exchange; `Q.dead` — the quorum queue behind it,
//!   drained by the workers' dead-letter consumer.
//!
//! Readiness ([`JobQueue::check`]) needs more than a connection: it also
//! fails while a publish has waited more than five seconds for its confirm
//! (see `stalls`), which is what a broker that cannot take jobs looks like.
//!
//! Every process must declare `Q` with the same arguments: RabbitMQ refuses
//! a declaration that differs from the existing queue (PRECONDITION_FAILED),
//! which is reported with a hint rather than retried silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use lapin::Confirmation;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;

mod deliveries;
mod stalls;
mod urls;

use deliveries::AmqpDeliveries;
use stalls::Stalls;
use urls::redacted;
pub use urls::split_urls;

use super::{BrokerError, Deliveries, JobQueue};
use inferq_core::job::JobId;

/// Content type of InferQ job messages (see [`inferq_core::message`]).
pub const CONTENT_TYPE: &str = "application/vnd.inferq.job";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest AMQP frame InferQ asks for when the URL does not set
/// `frame_max`. lapin keeps 32 frames of receive and 32 of send buffer per
/// connection, so RabbitMQ's default of 128 KiB costs 8 MiB in every API
/// and worker process; 32 KiB costs 2 MiB, and a 100 KB image is still
/// only four frames.
pub const DEFAULT_FRAME_MAX: u32 = 32 * 1024;
/// Publishes of one message before a nack is reported (with backoff from
/// 50 ms, about 1.5 s in all: longer than a quorum queue's leader election).
const NACK_RETRIES: u32 = 6;
/// How a returned (unroutable) publish is reported.
const UNROUTABLE: &str = "returned unroutable";
/// AMQP delivery mode for messages written to disk.
const PERSISTENT: u8 = 2;

struct Link {
    connection: Connection,
    /// Replaced (on the same connection) after a nack.
    publisher: std::sync::Mutex<Channel>,
    /// Which of the URLs this connection went to.
    url_index: usize,
}

impl Link {
    fn publisher(&self) -> Channel {
        self.publisher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn healthy(&self) -> bool {
        self.connection.status().connected() && self.publisher().status().connected()
    }

    /// Opens a new publisher channel in confirm mode on the same connection.
    async fn reopen_publisher(&self, failed: &Channel) -> Result<(), BrokerError> {
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(unavailable)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        let old = {
            let mut guard = self.publisher.lock().unwrap_or_else(|e| e.into_inner());
            if guard.id() != failed.id() {
                return Ok(()); // another publish replaced it already
            }
            std::mem::replace(&mut *guard, channel)
        };
        let _ = old.close(200, "reopened after a nack".into()).await;
        Ok(())
    }
}

/// Parses the AMQP URL, asking for [`DEFAULT_FRAME_MAX`] unless the URL
/// sets `frame_max` itself.
pub fn connection_uri(url: &str) -> Result<lapin::uri::AMQPUri, String> {
    let mut uri: lapin::uri::AMQPUri = url.parse().map_err(|e| format!("invalid AMQP URL: {e}"))?;
    uri.query.frame_max.get_or_insert(DEFAULT_FRAME_MAX);
    Ok(uri)
}

/// A RabbitMQ-backed [`JobQueue`].
pub struct AmqpQueue {
    urls: Vec<String>,
    /// The URL to try first on the next connect.
    next_url: AtomicUsize,
    queue: String,
    name: String,
    delivery_limit: u32,
    link: Mutex<Option<Arc<Link>>>,
    /// Publishes waiting for their confirm (readiness).
    stalls: Stalls,
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

impl AmqpQueue {
    /// `url` is one AMQP URL or a comma-separated list of them (the nodes of
    /// a cluster, tried in turn); `name` identifies the connection in the
    /// RabbitMQ management UI;
    /// `delivery_limit` is how often a message may return to the queue
    /// before it is dead-lettered.
    pub fn new(url: &str, queue: &str, name: &str, delivery_limit: u32) -> Self {
        AmqpQueue {
            urls: split_urls(url),
            next_url: AtomicUsize::new(0),
            queue: queue.to_owned(),
            name: name.to_owned(),
            delivery_limit: delivery_limit.max(1),
            link: Mutex::new(None),
            stalls: Stalls::default(),
        }
    }

    /// One publish and its confirm.
    async fn publish_once(&self, id: JobId, payload: &[u8]) -> Result<(), BrokerError> {
        let link = self.link().await?;
        let mut props = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_message_id(id.to_string().into())
            .with_content_type(CONTENT_TYPE.into())
            .with_timestamp(chrono::Utc::now().timestamp() as u64);
        // The W3C AMQP binding's application property, for tracing-aware
        // tools on the broker's side; workers read it back on delivery.
        if let Some(trace) = inferq_core::message::JobMessage::peek_trace(payload) {
            let mut headers = FieldTable::default();
            headers.insert(
                inferq_core::trace::TRACEPARENT.into(),
                AMQPValue::LongString(trace.to_string().into()),
            );
            props = props.with_headers(headers);
        }
        let publisher = link.publisher();
        // Past this point the message may have left: a broken connection
        // no longer proves the broker does not have it.
        let unconfirmed = |e: lapin::Error| BrokerError::Unconfirmed(e.to_string());
        let result = async {
            let confirm = publisher
                .basic_publish(
                    "".into(),
                    self.queue.as_str().into(),
                    // Mandatory: a message no queue takes (the queue was
                    // deleted, or never declared on this node) comes back
                    // instead of being confirmed and dropped.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    payload,
                    props,
                )
                .await
                .map_err(unconfirmed)?;
            match confirm.await.map_err(unconfirmed)? {
                Confirmation::Ack(None) => Ok(()),
                Confirmation::Ack(Some(_)) => Err(BrokerError::Rejected(format!(
                    "{UNROUTABLE}: queue {} does not exist",
                    self.queue
                ))),
                Confirmation::Nack(_) => Err(BrokerError::Rejected("broker nacked".into())),
                Confirmation::NotRequested => Err(BrokerError::Unavailable(
                    "channel is not in confirm mode".into(),
                )),
            }
        }
        .await;
        match &result {
            Err(BrokerError::Unavailable(_) | BrokerError::Unconfirmed(_)) => {
                self.drop_link(&link).await
            }
            // Declared again (on this connection: its consumers stay) before
            // the publish is retried.
            Err(BrokerError::Rejected(reason)) if reason.starts_with(UNROUTABLE) => {
                tracing::warn!(job_id = %id, queue = %self.queue, "message returned unroutable; declaring the queue again");
                if let Err(e) = declare(&publisher, &self.queue, self.delivery_limit).await {
                    tracing::warn!(job_id = %id, error = %e, "cannot declare the queue again");
                    self.drop_link(&link).await;
                }
            }
            Err(BrokerError::Rejected(_)) => {
                if let Err(e) = link.reopen_publisher(&publisher).await {
                    tracing::warn!(job_id = %id, error = %e, "cannot reopen the publisher channel");
                    self.drop_link(&link).await;
                }
            }
            _ => {}
        }
        result
    }

    /// The live connection, opening (and declaring the queue) if needed.
    async fn link(&self) -> Result<Arc<Link>, BrokerError> {
        let mut guard = self.link.lock().await;
        if let Some(link) = guard.as_ref().filter(|l| l.healthy()) {
            return Ok(link.clone());
        }
        if let Some(old) = guard.take() {
            // Broken: start with the node after the one that failed.
            self.next_url.store(
                (old.url_index + 1) % self.urls.len().max(1),
                Ordering::Relaxed,
            );
            let _ = old.connection.close(200, "reconnecting".into()).await;
        }
        if self.urls.is_empty() {
            return Err(unavailable("no AMQP URL configured"));
        }
        let first = self.next_url.load(Ordering::Relaxed);
        let mut last_error = None;
        for step in 0..self.urls.len() {
            let index = (first + step) % self.urls.len();
            match self.connect(index).await {
                Ok(link) => {
                    let link = Arc::new(link);
                    self.next_url.store(index, Ordering::Relaxed);
                    *guard = Some(link.clone());
                    tracing::info!(
                        queue = %self.queue,
                        node = %redacted(&self.urls[index]),
                        "connected to RabbitMQ"
                    );
                    return Ok(link);
                }
                Err(e) => {
                    tracing::warn!(node = %redacted(&self.urls[index]), error = %e, "RabbitMQ node unavailable");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| unavailable("no AMQP URL configured")))
    }

    /// Connects to URL `index`, declares the topology and opens the
    /// publisher channel.
    async fn connect(&self, index: usize) -> Result<Link, BrokerError> {
        let props = ConnectionProperties::default().with_connection_name(self.name.clone().into());
        let uri = connection_uri(&self.urls[index]).map_err(unavailable)?;
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, props))
            .await
            .map_err(|_| unavailable("connect timed out"))?
            .map_err(unavailable)?;
        let setup = async {
            let publisher = connection.create_channel().await.map_err(unavailable)?;
            declare(&publisher, &self.queue, self.delivery_limit).await?;
            publisher
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(unavailable)?;
            Ok::<_, BrokerError>(publisher)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, setup).await {
            Ok(Ok(publisher)) => Ok(Link {
                connection,
                publisher: std::sync::Mutex::new(publisher),
                url_index: index,
            }),
            Ok(Err(e)) => {
                let _ = connection.close(200, "setup failed".into()).await;
                Err(e)
            }
            Err(_) => {
                let _ = connection.close(200, "setup timed out".into()).await;
                Err(unavailable("declaring the queue timed out"))
            }
        }
    }

    /// Forgets a connection that just failed so the next call reconnects.
    async fn drop_link(&self, failed: &Arc<Link>) {
        let mut guard = self.link.lock().await;
        if guard.as_ref().is_some_and(|l| Arc::ptr_eq(l, failed)) {
            *guard = None;
            self.next_url.store(
                (failed.url_index + 1) % self.urls.len().max(1),
                Ordering::Relaxed,
            );
        }
    }

    /// A consumer on `queue` (the job queue or its dead-letter queue).
    async fn consume_from(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn Deliveries>, BrokerError> {
        let link = self.link().await?;
        let result = async {
            let channel = link
                .connection
                .create_channel()
                .await
                .map_err(unavailable)?;
            // Per-consumer prefetch (global = false): quorum queues do not
            // support a channel-wide limit.
            channel
                .basic_qos(prefetch.max(1), BasicQosOptions { global: false })
                .await
                .map_err(unavailable)?;
            let tag = format!("{}-{}", self.name, uuid::Uuid::new_v4().simple());
            let consumer = channel
                .basic_consume(
                    queue.into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
            Ok::<_, BrokerError>(
                Box::new(AmqpDeliveries::new(channel, consumer, tag)) as Box<dyn Deliveries>
            )
        }
        .await;
        if result.is_err() {
            self.drop_link(&link).await;
        }
        result
    }

    /// Closes the connection (pending acks are flushed first by the broker).
    pub async fn close(&self) {
        if let Some(link) = self.link.lock().await.take() {
            // Bounded: a broker that does not answer must not block exit.
            let close = link.connection.close(200, "shutdown".into());
            let _ = tokio::time::timeout(CONNECT_TIMEOUT, close).await;
        }
    }
}

/// The dead-letter queue of job queue `queue`.
pub fn dead_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

fn dead_exchange(queue: &str) -> String {
    format!("{queue}.dlx")
}

fn declare_error(queue: &str, e: lapin::Error) -> BrokerError {
    let text = e.to_string();
    if text.contains("PRECONDITION_FAILED") {
        tracing::error!(queue, error = %text, "queue exists with other arguments");
        return BrokerError::Unavailable(format!(
            "queue {queue} exists with different arguments (an older InferQ, or another \
             --delivery-limit); delete it or use another --queue: {text}"
        ));
    }
    unavailable(text)
}

/// Declares the topology described in the module docs. Queues are durable
/// and replicated (quorum), so a broker node restart loses nothing that was
/// confirmed.
async fn declare(channel: &Channel, queue: &str, delivery_limit: u32) -> Result<(), BrokerError> {
    let quorum = || {
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        args
    };
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let dlx = dead_exchange(queue);
    let dead = dead_queue(queue);
    channel
        .exchange_declare(
            dlx.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| declare_error(&dlx, e))?;
    channel
        .queue_declare(dead.as_str().into(), durable, quorum())
        .await
        .map_err(|e| declare_error(&dead, e))?;
    channel
        .queue_bind(
            dead.as_str().into(),
            dlx.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    let mut args = quorum();
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(delivery_limit.min(i32::MAX as u32) as i32),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dlx.as_str().into()),
    );
    // At-least-once dead-lettering needs the queue to reject publishes
    // when over a length limit instead of dropping its head.
    args.insert(
        "x-dead-letter-strategy".into(),
        AMQPValue::LongString("at-least-once".into()),
    );
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    channel
        .queue_declare(queue.into(), durable, args)
        .await
        .map_err(|e| declare_error(queue, e))?;
    Ok(())
}

#[async_trait]
impl JobQueue for AmqpQueue {
    async fn publish(&self, id: JobId, payload: Vec<u8>) -> Result<(), BrokerError> {
        let _pending = self.stalls.begin();
        // A nack means the queue did not take the message (a quorum queue
        // can refuse while its leader is being elected, e.g. just after it
        // was declared): publishing again is safe, and a job id that
        // arrives twice is handled like any redelivery.
        // A broken connection is retried once at once: the retry connects
        // to the next node of the list.
        // Once one attempt's outcome is unknown, a later attempt that fails
        // cannot prove the job is not queued: the failure stays unknown.
        let mut backoff = Duration::from_millis(50);
        let mut reconnected = false;
        let mut maybe_sent = None;
        let settle = |result: Result<(), BrokerError>, maybe_sent: Option<String>| match result {
            Err(e @ (BrokerError::Unavailable(_) | BrokerError::Rejected(_))) => {
                Err(maybe_sent.map_or(e, BrokerError::Unconfirmed))
            }
            other => other,
        };
        for _ in 1..NACK_RETRIES {
            match self.publish_once(id, &payload).await {
                Err(BrokerError::Rejected(reason)) => {
                    tracing::warn!(job_id = %id, %reason, "publish nacked; publishing again");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(e @ (BrokerError::Unavailable(_) | BrokerError::Unconfirmed(_)))
                    if !reconnected && self.urls.len() > 1 =>
                {
                    tracing::warn!(job_id = %id, reason = %e, "publish failed; trying the next node");
                    reconnected = true;
                    if let BrokerError::Unconfirmed(reason) = e {
                        maybe_sent = Some(reason);
                    }
                }
                other => return settle(other, maybe_sent),
            }
        }
        settle(self.publish_once(id, &payload).await, maybe_sent)
    }

    async fn consume(&self, prefetch: u16) -> Result<Box<dyn Deliveries>, BrokerError> {
        self.consume_from(&self.queue, prefetch).await
    }

    async fn consume_dead(&self, prefetch: u16) -> Result<Box<dyn Deliveries>, BrokerError> {
        self.consume_from(&dead_queue(&self.queue), prefetch).await
    }

    async fn check(&self) -> Result<(), BrokerError> {
        if let Some(waited) = self.stalls.oldest().filter(|w| *w > stalls::STALL) {
            return Err(BrokerError::Unavailable(format!(
                "the broker has not confirmed a publish for {:.0} s",
                waited.as_secs_f64()
            )));
        }
        self.link().await.map(|_| ())
    }

    async fn ready(&self) -> Result<u64, BrokerError> {
        // A passive declare only reads the queue's counters. It runs on a
        // channel of its own: a failed passive declare closes its channel,
        // and the publisher's must stay open.
        let link = self.link().await?;
        let result = async {
            let channel = link
                .connection
                .create_channel()
                .await
                .map_err(unavailable)?;
            let queue = channel
                .queue_declare(
                    self.queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
            let _ = channel.close(200, "depth read".into()).await;
            Ok::<_, BrokerError>(u64::from(queue.message_count()))
        }
        .await;
        if result.is_err() {
            self.drop_link(&link).await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_max_defaults_small_but_the_url_wins() {
        let uri = connection_uri("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(uri.query.frame_max, Some(DEFAULT_FRAME_MAX));
        assert_eq!(uri.vhost, "/");
        let uri = connection_uri("amqp://127.0.0.1/%2f?frame_max=131072").unwrap();
        assert_eq!(uri.query.frame_max, Some(131_072));
        assert!(connection_uri("http://nope").is_err());
    }
}
