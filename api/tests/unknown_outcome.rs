//! A publish whose outcome is unknown: the message left for the broker, the
//! answer never came back (the connection broke before the confirm).
//!
//! The broker may have the job. With an `Idempotency-Key`, the API keeps
//! the job and its key, so the client's retry gets that same job and never
//! a second one; without a key, the job is retracted, so a late copy does
//! not run. A publish that surely did not happen frees the key instead.
//! Found on the simulated cluster (docs/scaling.md, "Two of three broker
//! nodes down"): one key had made two jobs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::http::StatusCode;
use common::*;
use inferq_backends::broker::memory::MemoryQueue;
use inferq_backends::broker::{BrokerError, Deliveries, JobQueue};
use inferq_backends::store::Records;
use inferq_core::job::{JobId, JobStatus};

/// How the next publishes fail.
#[derive(Clone, Copy)]
enum Fault {
    /// The message reaches the queue, its confirm is lost.
    ConfirmLost,
    /// The message never leaves (no connection).
    NotSent,
}

/// The in-memory queue with the next `failing` publishes failing by
/// `fault`.
struct FlakyQueue {
    inner: MemoryQueue,
    fault: Fault,
    failing: AtomicUsize,
}

#[async_trait]
impl JobQueue for FlakyQueue {
    async fn publish(&self, id: JobId, payload: Vec<u8>) -> Result<(), BrokerError> {
        let fail = self
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !fail {
            return self.inner.publish(id, payload).await;
        }
        match self.fault {
            Fault::ConfirmLost => {
                self.inner.publish(id, payload).await?;
                Err(BrokerError::Unconfirmed("connection reset by peer".into()))
            }
            Fault::NotSent => Err(BrokerError::Unavailable("connection refused".into())),
        }
    }
    async fn consume(&self, prefetch: u16) -> Result<Box<dyn Deliveries>, BrokerError> {
        self.inner.consume(prefetch).await
    }
    async fn consume_dead(&self, prefetch: u16) -> Result<Box<dyn Deliveries>, BrokerError> {
        self.inner.consume_dead(prefetch).await
    }
    async fn check(&self) -> Result<(), BrokerError> {
        self.inner.check().await
    }
    async fn ready(&self) -> Result<u64, BrokerError> {
        self.inner.ready().await
    }
}

/// A harness whose next `failing` publishes fail by `fault`.
fn flaky(fault: Fault, failing: usize) -> Harness {
    let mut h = harness(1 << 20, 1 << 20);
    h.state.queue = Arc::new(FlakyQueue {
        inner: h.queue.clone(),
        fault,
        failing: AtomicUsize::new(failing),
    });
    h
}

fn with_key(key: &str) -> axum::http::Request<axum::body::Body> {
    let mut req = post("/v1/jobs", "image/png", png(4, 4));
    req.headers_mut()
        .insert("idempotency-key", key.parse().unwrap());
    req
}

/// The job id named in a kept job's `503` detail.
fn kept_id(detail: &str) -> JobId {
    let start = detail.find("the job (").expect("names the job") + "the job (".len();
    let end = start + detail[start..].find(')').unwrap();
    detail[start..end].parse().unwrap()
}

#[tokio::test]
async fn a_lost_confirm_keeps_the_keyed_job_and_its_retry_gets_it() {
    let h = flaky(Fault::ConfirmLost, 1);
    let s = &h.state;
    let first = send(s, with_key("lost-confirm")).await;
    assert_problem(&first, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let detail = first.2["detail"].as_str().unwrap();
    assert!(detail.contains("same Idempotency-Key"), "{detail}");
    let id = kept_id(detail);
    // Kept as it is: queued, its message in the queue (the broker had it).
    let record = h.store.get(id).await.unwrap().expect("the job is kept");
    assert_eq!(record.status, JobStatus::Queued);
    assert_eq!(h.queue.len(), 1);

    let retry = send(s, with_key("lost-confirm")).await;
    assert_eq!(retry.0, StatusCode::ACCEPTED, "{}", retry.2);
    assert_eq!(retry.1["idempotent-replayed"], "true");
    assert_eq!(retry.2["id"], id.to_string(), "the same job, not a second");
    assert_eq!(h.store.len(), 1, "one job for the key");
    // Published again (the API cannot know the first copy arrived); the
    // worker runs a job id once and acks a copy of a finished job unrun.
    assert_eq!(h.queue.len(), 2);
}

#[tokio::test]
async fn a_lost_confirm_retracts_an_unkeyed_job() {
    let h = flaky(Fault::ConfirmLost, 1);
    let s = &h.state;
    let resp = send(s, post("/v1/jobs", "image/png", png(4, 4))).await;
    assert_problem(&resp, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    // The late copy in the queue finds a final record and is not run.
    assert_eq!(h.queue.len(), 1);
    assert_eq!(h.store.len(), 1);
    let mut deliveries = h.queue.consume(1).await.unwrap();
    let d = deliveries.next().await.unwrap().unwrap();
    let id = inferq_core::message::JobMessage::decode(d.payload)
        .unwrap()
        .id;
    let record = h.store.get(id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Canceled, "{record:?}");
    assert_eq!(record.attempts, 0);
}

#[tokio::test]
async fn a_publish_that_never_left_frees_the_key() {
    let h = flaky(Fault::NotSent, 1);
    let s = &h.state;
    let first = send(s, with_key("never-sent")).await;
    assert_problem(&first, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(h.store.len(), 0, "nothing left behind");
    assert_eq!(h.queue.len(), 0);
    let retry = send(s, with_key("never-sent")).await;
    assert_eq!(retry.0, StatusCode::ACCEPTED, "{}", retry.2);
    assert!(
        !retry.1.contains_key("idempotent-replayed"),
        "a new job: the first never existed"
    );
    assert_eq!(h.store.len(), 1);
    assert_eq!(h.queue.len(), 1);
}
