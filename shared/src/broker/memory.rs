//! A bounded in-process job queue for the embedded mode and tests.
//!
//! There is no durability to offer in one process — if it dies, its queue
//! dies with it — so ack is a no-op and requeue puts the message back at the
//! tail. The bound keeps memory finite: a full queue refuses new jobs, which
//! the API turns into a retryable 503.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Mutex, mpsc};

use super::{Acker, BrokerError, Deliveries, Delivery, JobQueue};
use crate::job::JobId;

struct Message {
    payload: Bytes,
    redelivered: bool,
}

/// The in-memory queue. Clones share the same queue.
#[derive(Clone)]
pub struct MemoryQueue {
    tx: mpsc::Sender<Message>,
    rx: Arc<Mutex<mpsc::Receiver<Message>>>,
}

impl MemoryQueue {
    /// A queue holding at most `capacity` waiting jobs.
    pub fn new(capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        MemoryQueue {
            tx,
            rx: Arc::new(Mutex::new(rx)),
        }
    }

    /// Jobs waiting (not yet handed to a consumer).
    pub fn len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn publish(&self, _id: JobId, payload: Vec<u8>) -> Result<(), BrokerError> {
        self.tx
            .try_send(Message {
                payload: payload.into(),
                redelivered: false,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => BrokerError::Full,
                mpsc::error::TrySendError::Closed(_) => BrokerError::Closed,
            })
    }

    async fn consume(&self, _prefetch: u16) -> Result<Box<dyn Deliveries>, BrokerError> {
        Ok(Box::new(MemoryDeliveries {
            queue: self.clone(),
            cancelled: false,
        }))
    }

    async fn check(&self) -> Result<(), BrokerError> {
        Ok(())
    }
}

struct MemoryDeliveries {
    queue: MemoryQueue,
    cancelled: bool,
}

#[async_trait]
impl Deliveries for MemoryDeliveries {
    async fn next(&mut self) -> Option<Result<Delivery, BrokerError>> {
        if self.cancelled {
            return None;
        }
        let msg = self.queue.rx.lock().await.recv().await?;
        Some(Ok(Delivery {
            payload: msg.payload.clone(),
            redelivered: msg.redelivered,
            acker: Box::new(MemoryAcker {
                tx: self.queue.tx.clone(),
                payload: msg.payload,
            }),
        }))
    }

    async fn cancel(&mut self) {
        self.cancelled = true;
    }
}

struct MemoryAcker {
    tx: mpsc::Sender<Message>,
    payload: Bytes,
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn requeue(&self) -> Result<(), BrokerError> {
        self.tx
            .send(Message {
                payload: self.payload.clone(),
                redelivered: true,
            })
            .await
            .map_err(|_| BrokerError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_fifo_with_requeue() {
        let q = MemoryQueue::new(2);
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
}
