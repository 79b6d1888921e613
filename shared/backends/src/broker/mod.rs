//! The job queue: where accepted jobs wait for a worker.
//!
//! Two implementations sit behind one trait: [`amqp::AmqpQueue`] (RabbitMQ,
//! durable quorum queue, publisher confirms — the production path) and
//! [`memory::MemoryQueue`] (a bounded in-process queue for the embedded
//! single-process mode and for unit tests). Everything above this trait — the
//! API's submit path and the worker's consume loop — is shared.
//!
//! Semantics both honour: `publish` returns only once the job is safely
//! queued (for RabbitMQ: the broker confirmed it); a [`Delivery`] that is
//! neither acked nor requeued is redelivered when its consumer goes away; a
//! message returned to the queue more often than the *delivery limit*, or
//! rejected by its consumer, moves to the dead-letter queue, which a
//! separate consumer ([`JobQueue::consume_dead`]) drains.

pub mod amqp;
pub mod memory;

use async_trait::async_trait;
use bytes::Bytes;

use inferq_core::job::JobId;

/// Broker failures.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached or refused the operation; retry later.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker did not take responsibility for the message (nack).
    #[error("broker rejected the message: {0}")]
    Rejected(String),
    /// The message was handed to the broker but its confirm never came (the
    /// connection broke in between): it may or may not be queued. Callers
    /// that can tell a retry of the same job from a new one (an
    /// `Idempotency-Key`) keep the job; others must make sure a late copy
    /// does not run.
    #[error("broker outcome unknown: {0}")]
    Unconfirmed(String),
    /// A bounded queue is full.
    #[error("queue is full")]
    Full,
    /// The queue was shut down.
    #[error("queue closed")]
    Closed,
}

/// The producer and consumer sides of the job queue.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Durably enqueues one encoded [`inferq_core::message::JobMessage`].
    async fn publish(&self, id: JobId, payload: Vec<u8>) -> Result<(), BrokerError>;

    /// Starts consuming with at most `prefetch` unacknowledged deliveries.
    async fn consume(&self, prefetch: u16) -> Result<Box<dyn Deliveries>, BrokerError>;

    /// Starts consuming the dead-letter queue: messages that exceeded the
    /// delivery limit or were rejected.
    async fn consume_dead(&self, prefetch: u16) -> Result<Box<dyn Deliveries>, BrokerError>;

    /// Checks the broker is reachable (for readiness probes).
    async fn check(&self) -> Result<(), BrokerError>;

    /// Jobs waiting in the queue that no consumer holds yet, as the broker
    /// counts them. This is the broker's own truth, independent of the
    /// result store: it survives a Redis that lost its data, so the
    /// autoscaling signal reads it next to the store's backlog counter.
    async fn ready(&self) -> Result<u64, BrokerError>;
}

/// A stream of deliveries for one consumer.
#[async_trait]
pub trait Deliveries: Send {
    /// The next delivery; `None` once the consumer is cancelled or its
    /// connection is gone (the caller then consumes again).
    async fn next(&mut self) -> Option<Result<Delivery, BrokerError>>;

    /// Stops new deliveries; those already received can still be acked.
    async fn cancel(&mut self);
}

/// One message handed to a consumer.
pub struct Delivery {
    pub payload: Bytes,
    /// The broker delivered this message before (to a consumer that died).
    pub redelivered: bool,
    /// How often the message went back to the queue before this delivery
    /// (0 on the first delivery).
    pub delivery_count: u32,
    /// The trace the publisher attached (the AMQP `traceparent` header).
    pub traceparent: Option<inferq_core::trace::TraceContext>,
    pub acker: Box<dyn Acker>,
}

/// Settles a delivery. Exactly one of the methods should be called; dropping
/// the acker without calling either leaves the message unacked until the
/// consumer's channel closes, after which it is redelivered.
#[async_trait]
pub trait Acker: Send + Sync {
    /// The job is finished (its record is stored); remove the message.
    async fn ack(&self) -> Result<(), BrokerError>;
    /// Processing could not complete (e.g. the store is down); put it back.
    async fn requeue(&self) -> Result<(), BrokerError>;
    /// Give up on the message: it moves to the dead-letter queue.
    async fn reject(&self) -> Result<(), BrokerError>;
}
