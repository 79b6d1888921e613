//! A bounded in-process job queue for the embedded mode and tests.
//!
//! There is no durability to offer in one process — if it dies, its queue
//! dies with it — so ack is a no-op and requeue puts the message back at the
//! tail. The bound keeps memory finite: a full queue refuses new jobs, which
//! the API turns into a retryable 503.
//!
//! The delivery limit and the dead-letter queue behave as RabbitMQ's do: a
//! message requeued more often than the limit, or rejected, moves to a
//! second bounded queue read by [`JobQueue::consume_dead`].

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Mutex, mpsc};

use super::{Acker, BrokerError, Deliveries, Delivery, JobQueue};
use inferq_core::job::JobId;

struct Message {
    payload: Bytes,
    /// Times the message went back to the queue.
    returns: u32,
}

/// One bounded FIFO.
#[derive(Clone)]
struct Lane {
    tx: mpsc::Sender<Message>,
    rx: Arc<Mutex<mpsc::Receiver<Message>>>,
}

impl Lane {
    fn new(capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Lane {
            tx,
            rx: Arc::new(Mutex::new(rx)),
        }
    }
}

/// The in-memory queue. Clones share the same queue.
#[derive(Clone)]
pub struct MemoryQueue {
    jobs: Lane,
    dead: Lane,
    delivery_limit: u32,
}

impl MemoryQueue {
    /// A queue holding at most `capacity` waiting jobs (and as many dead
    /// letters), with RabbitMQ's default-free delivery limit of
    /// `delivery_limit` returns.
    pub fn new(capacity: usize, delivery_limit: u32) -> Self {
        MemoryQueue {
            jobs: Lane::new(capacity),
            dead: Lane::new(capacity),
            delivery_limit,
        }
    }

    /// Jobs waiting (not yet handed to a consumer).
    pub fn len(&self) -> usize {
        self.jobs.tx.max_capacity() - self.jobs.tx.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn publish(&self, _id: JobId, payload: Vec<u8>) -> Result<(), BrokerError> {
        self.jobs
            .tx
            .try_send(Message {
                payload: payload.into(),
                returns: 0,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => BrokerError::Full,
                mpsc::error::TrySendError::Closed(_) => BrokerError::Closed,
            })
    }

    async fn consume(&self, _prefetch: u16) -> Result<Box<dyn Deliveries>, BrokerError> {
        Ok(Box::new(MemoryDeliveries {
            from: self.jobs.clone(),
            queue: self.clone(),
            cancelled: false,
        }))
    }

    async fn consume_dead(&self, _prefetch: u16) -> Result<Box<dyn Deliveries>, BrokerError> {
        Ok(Box::new(MemoryDeliveries {
            from: self.dead.clone(),
            queue: self.clone(),
            cancelled: false,
        }))
    }

    async fn check(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn ready(&self) -> Result<u64, BrokerError> {
        Ok(self.len() as u64)
    }
}

struct MemoryDeliveries {
    from: Lane,
    queue: MemoryQueue,
    cancelled: bool,
}

#[async_trait]
impl Deliveries for MemoryDeliveries {
    async fn next(&mut self) -> Option<Result<Delivery, BrokerError>> {
        if self.cancelled {
            return None;
        }
        let msg = self.from.rx.lock().await.recv().await?;
        Some(Ok(Delivery {
            // What an AMQP broker would carry as the `traceparent` header.
            traceparent: inferq_core::message::JobMessage::peek_trace(&msg.payload),
            payload: msg.payload.clone(),
            redelivered: msg.returns > 0,
            delivery_count: msg.returns,
            acker: Box::new(MemoryAcker {
                from: self.from.tx.clone(),
                queue: self.queue.clone(),
                payload: msg.payload,
                returns: msg.returns,
            }),
        }))
    }

    async fn cancel(&mut self) {
        self.cancelled = true;
    }
}

struct MemoryAcker {
    /// The lane the message came from (requeues go back there).
    from: mpsc::Sender<Message>,
    queue: MemoryQueue,
    payload: Bytes,
    returns: u32,
}

impl MemoryAcker {
    async fn to_dead(&self) -> Result<(), BrokerError> {
        let msg = Message {
            payload: self.payload.clone(),
            returns: self.returns,
        };
        // Bounded like the job lane; a full dead-letter lane waits.
        self.queue
            .dead
            .tx
            .send(msg)
            .await
            .map_err(|_| BrokerError::Closed)
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn requeue(&self) -> Result<(), BrokerError> {
        let returns = self.returns + 1;
        let is_dead_lane = self.from.same_channel(&self.queue.dead.tx);
        if !is_dead_lane && self.queue.delivery_limit > 0 && returns > self.queue.delivery_limit {
            return self.to_dead().await;
        }
        self.from
            .send(Message {
                payload: self.payload.clone(),
                returns,
            })
            .await
            .map_err(|_| BrokerError::Closed)
    }

    async fn reject(&self) -> Result<(), BrokerError> {
        if self.from.same_channel(&self.queue.dead.tx) {
            // Rejected from the dead-letter queue itself: dropped, as in RabbitMQ.
            return Ok(());
        }
        self.to_dead().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_fifo_with_requeue() {
        let q = MemoryQueue::new(2, 5);
        q.publish(JobId::new(), b"a".to_vec()).await.unwrap();
        q.publish(JobId::new(), b"b".to_vec()).await.unwrap();
        assert!(matches!(
            q.publish(JobId::new(), b"c".to_vec()).await,
            Err(BrokerError::Full)
        ));
        let mut d = q.consume(1).await.unwrap();
        let first = d.next().await.unwrap().unwrap();
        assert_eq!(&first.payload[..], b"a");
        assert!(!first.redelivered);
        first.acker.requeue().await.unwrap();
        let second = d.next().await.unwrap().unwrap();
        assert_eq!(&second.payload[..], b"b");
        let again = d.next().await.unwrap().unwrap();
        assert_eq!(&again.payload[..], b"a");
        assert!(again.redelivered);
        d.cancel().await;
        assert!(d.next().await.is_none());
    }

    #[tokio::test]
    async fn delivery_limit_and_reject_dead_letter() {
        let q = MemoryQueue::new(4, 1);
        q.publish(JobId::new(), b"poison".to_vec()).await.unwrap();
        q.publish(JobId::new(), b"bad".to_vec()).await.unwrap();
        let mut d = q.consume(1).await.unwrap();
        let first = d.next().await.unwrap().unwrap();
        assert_eq!(first.delivery_count, 0);
        first.acker.requeue().await.unwrap();
        let bad = d.next().await.unwrap().unwrap();
        bad.acker.reject().await.unwrap();
        let second = d.next().await.unwrap().unwrap();
        assert_eq!(
            (&second.payload[..], second.delivery_count),
            (&b"poison"[..], 1)
        );
        // Over the limit of one return: dead-lettered, not requeued.
        second.acker.requeue().await.unwrap();
        assert!(q.is_empty());
        let mut dead = q.consume_dead(1).await.unwrap();
        let got: Vec<Bytes> = vec![
            dead.next().await.unwrap().unwrap().payload,
            dead.next().await.unwrap().unwrap().payload,
        ];
        assert_eq!(
            got,
            vec![Bytes::from_static(b"bad"), Bytes::from_static(b"poison")]
        );
    }
}
