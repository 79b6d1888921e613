//! The consume loop: deliveries in, results stored, then acked.
//!
//! The order is what makes delivery safe: a job's result is written to the
//! store *before* its message is acked. A worker that dies in between leaves
//! the message unacked; the broker redelivers it, and the next worker finds
//! either a finished record (acks without rerunning) or a running one (runs
//! it again, counting the attempt). A job that keeps killing workers is
//! failed after `max_attempts` instead of looping forever.
//!
//! Bad input is not retried: a job whose image cannot be decoded is marked
//! failed with an error code and acked. Only infrastructure failures (the
//! store is down, the engine is stopping) put a message back on the queue.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use inferq_shared::ErrorCode;
use inferq_shared::broker::{Delivery, JobQueue};
use inferq_shared::job::{InputInfo, JobError, JobRecord, Timings};
use inferq_shared::manifest::{DType, ModelManifest};
use inferq_shared::message::{ImageSource, JobMessage};
use inferq_shared::postprocess::Prediction;
use inferq_shared::preprocess::{InputTensor, TensorData};
use inferq_shared::store::{ResultStore, Saved, StoreError};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::deliver;
use crate::engine::{Engine, InferError, WorkInput};
use crate::models::ModelSet;
use inferq_shared::fetch::Fetcher;

/// Everything needed to process one delivery.
pub struct Processor {
    pub engine: Arc<Engine>,
    pub store: Arc<dyn ResultStore>,
    pub models: Arc<ModelSet>,
    /// Reads `uri` inputs and writes results to output URIs.
    pub fetcher: Arc<Fetcher>,
    pub result_ttl: Duration,
    pub max_attempts: u32,
}

/// How a delivery was settled (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Acked,
    Requeued,
}

const STORE_RETRIES: u32 = 5;

impl Processor {
    /// Processes one delivery and settles it.
    pub async fn handle(&self, delivery: Delivery) -> Settled {
        let msg = match JobMessage::decode(delivery.payload.clone()) {
            Ok(m) => m,
            Err(e) => {
                // Retrying cannot fix a message nobody can read.
                tracing::error!(error = %e, "unreadable message dropped");
                return settle(&delivery, true).await;
            }
        };
        let span = tracing::info_span!("job", job_id = %msg.id, model = %msg.model,
            version = msg.version, redelivered = delivery.redelivered);
        let ack = self.process(msg).instrument(span).await;
        settle(&delivery, ack).await
    }

    /// Returns whether to ack (true) or requeue (false).
    async fn process(&self, msg: JobMessage) -> bool {
        let record = match self.store.get(msg.id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "store unavailable; requeueing");
                return false;
            }
        };
        // The record may be gone (expired, or the store lost it); the
        // message alone is enough to run the job.
        let mut record = record.unwrap_or_else(|| {
            let mut r = JobRecord::queued(msg.id, &msg.model, msg.version, InputInfo::default());
            r.created_at = msg.created_at;
            r.owner = msg.owner.clone();
            r
        });
        if record.status.is_terminal() {
            tracing::info!(status = %record.status, "job already finished; acking redelivery");
            self.drop_blob(&msg).await;
            return true;
        }
        if record.attempts >= self.max_attempts {
            let err = JobError::new(
                ErrorCode::TooManyAttempts,
                format!(
                    "started {} times without finishing; giving up",
                    record.attempts
                ),
            );
            tracing::error!(attempts = record.attempts, "job failed: too many attempts");
            let _ = record.fail(err, None, Utc::now());
            return self.finish(&msg, &record).await;
        }
        let started = Utc::now();
        if record.start(started).is_err() {
            return true;
        }
        match self.store.save(&record, self.result_ttl).await {
            Ok(Saved::Written) => {}
            Ok(Saved::AlreadyFinished) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot mark job running; requeueing");
                return false;
            }
        }
        let mut timings = Timings {
            queue_ms: record.ms_since_created(started),
            ..Timings::default()
        };

        let fetch_start = std::time::Instant::now();
        let bytes: Bytes = match &msg.image {
            ImageSource::Inline(b) => b.clone(),
            ImageSource::Uri(uri) => match deliver::fetch_input(&self.fetcher, uri).await {
                Ok(b) => b,
                Err(err) => {
                    tracing::info!(code = %err.code, error = %err.message, "input fetch failed");
                    let _ = record.fail(err, Some(timings), Utc::now());
                    return self.finish(&msg, &record).await;
                }
            },
            ImageSource::Blob(key) => match self.store.get_blob(key).await {
                Ok(Some(b)) => Bytes::from(b),
                Ok(None) => {
                    let err = JobError::new(
                        ErrorCode::BlobMissing,
                        "the uploaded image expired before the job ran",
                    );
                    let _ = record.fail(err, Some(timings), Utc::now());
                    return self.finish(&msg, &record).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot fetch image; requeueing");
                    return false;
                }
            },
        };
        timings.fetch_ms = fetch_start.elapsed().as_secs_f64() * 1e3;

        let Some(entry) = self.models.get(&msg.model, msg.version).await else {
            let err = JobError::new(
                ErrorCode::ModelNotFound,
                format!(
                    "model {}:{} is not served by this worker",
                    msg.model, msg.version
                ),
            );
            let _ = record.fail(err, Some(timings), Utc::now());
            return self.finish(&msg, &record).await;
        };
        let input = match &msg.tensor {
            None => WorkInput::Encoded(bytes),
            Some(shape) => match tensor_input(shape, &bytes, &entry.manifest) {
                Ok(t) => WorkInput::Tensor(t),
                Err(err) => {
                    let _ = record.fail(err, Some(timings), Utc::now());
                    return self.finish(&msg, &record).await;
                }
            },
        };
        match self.engine.infer(msg.id, entry, input, msg.top_k).await {
            Ok(mut outcome) => {
                let artifact = outcome.artifact.take();
                if let Some(artifact) = &artifact {
                    let key = self.store.output_key(msg.id);
                    if let Err(e) = self
                        .store
                        .put_blob(&key, &artifact.bytes, self.result_ttl)
                        .await
                    {
                        tracing::warn!(error = %e, "cannot store output; requeueing");
                        return false;
                    }
                    if let Prediction::Image { href, .. } = &mut outcome.prediction {
                        *href = format!("/v1/jobs/{}/output", msg.id);
                    }
                }
                timings.decode_ms = outcome.decode_ms;
                timings.preprocess_ms = outcome.preprocess_ms;
                timings.inference_ms = outcome.inference_ms;
                let now = Utc::now();
                timings.total_ms = record.ms_since_created(now);
                let _ = record.succeed(outcome.prediction, timings, now);
                if let Some(uri) = &msg.output_uri {
                    let delivery =
                        deliver::write_output(&self.fetcher, uri, &record, artifact.as_ref()).await;
                    record.output = Some(delivery);
                }
            }
            Err(InferError::Job(err)) => {
                tracing::info!(code = %err.code, error = %err.message, "job failed");
                let now = Utc::now();
                timings.total_ms = record.ms_since_created(now);
                let _ = record.fail(err, Some(timings), now);
            }
            Err(InferError::Stopped) => return false,
        }
        self.finish(&msg, &record).await
    }

    /// Stores a terminal record (retrying while the store is flaky) and
    /// frees the image; returns whether the message may be acked.
    async fn finish(&self, msg: &JobMessage, record: &JobRecord) -> bool {
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=STORE_RETRIES {
            match self.store.save(record, self.result_ttl).await {
                Ok(_) => {
                    if let Some(t) = &record.timings {
                        tracing::info!(status = %record.status, total_ms = t.total_ms,
                            inference_ms = t.inference_ms, "job finished");
                    }
                    self.drop_blob(msg).await;
                    return true;
                }
                Err(StoreError::Corrupt(e)) => {
                    tracing::error!(error = %e, "cannot serialise result");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "cannot store result; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        // The result is lost but the job is not: the broker will redeliver.
        false
    }

    async fn drop_blob(&self, msg: &JobMessage) {
        if let ImageSource::Blob(key) = &msg.image
            && let Err(e) = self.store.delete_blob(key).await
        {
            tracing::debug!(error = %e, "blob not deleted; it expires by itself");
        }
    }
}

/// Rebuilds a tensor sent as little-endian f32 values in the model's dtype.
fn tensor_input(shape: &[usize], bytes: &[u8], m: &ModelManifest) -> Result<InputTensor, JobError> {
    let bad = |msg: String| JobError::new(ErrorCode::InvalidArgument, msg);
    let dims: [usize; 4] = shape
        .try_into()
        .map_err(|_| bad(format!("tensor shape {shape:?} is not 4-dimensional")))?;
    if bytes.len() != dims.iter().product::<usize>() * 4 {
        return Err(bad(format!("tensor data does not match shape {shape:?}")));
    }
    let values = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let data = match m.input.dtype {
        DType::Float32 => TensorData::F32(values.collect()),
        DType::Int32 => TensorData::I32(values.map(|v| v as i32).collect()),
        DType::Uint8 => TensorData::U8(values.map(|v| v as u8).collect()),
    };
    Ok(InputTensor { shape: dims, data })
}

async fn settle(delivery: &Delivery, ack: bool) -> Settled {
    let result = if ack {
        delivery.acker.ack().await
    } else {
        // A short pause so a store outage does not turn into a hot
        // redelivery loop.
        tokio::time::sleep(Duration::from_millis(500)).await;
        delivery.acker.requeue().await
    };
    if let Err(e) = result {
        // The channel is gone; the broker redelivers the message anyway.
        tracing::warn!(error = %e, "could not settle delivery");
    }
    if ack {
        Settled::Acked
    } else {
        Settled::Requeued
    }
}

/// Cancels a consumer, giving up after a few seconds: a broker that does
/// not answer must not keep the process from draining and exiting.
async fn cancel(deliveries: &mut dyn inferq_shared::broker::Deliveries) {
    if tokio::time::timeout(Duration::from_secs(5), deliveries.cancel())
        .await
        .is_err()
    {
        tracing::warn!("consumer cancel timed out");
    }
}

/// Consumes until `shutdown` resolves, then stops taking new jobs, lets the
/// in-flight ones finish (at most `drain` long) and returns.
pub async fn consume(
    queue: Arc<dyn JobQueue>,
    processor: Arc<Processor>,
    prefetch: u16,
    drain: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    // Bounds the jobs held by this worker even where the queue has no
    // prefetch of its own (the in-memory queue).
    let slots = Arc::new(Semaphore::new(prefetch.max(1) as usize));
    let mut tasks = JoinSet::new();
    let mut backoff = Duration::from_millis(200);
    'outer: loop {
        let mut deliveries = tokio::select! {
            _ = &mut shutdown => break 'outer,
            d = queue.consume(prefetch) => match d {
                Ok(d) => { backoff = Duration::from_millis(200); d }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot consume; retrying");
                    tokio::select! {
                        _ = &mut shutdown => break 'outer,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        tracing::info!(prefetch, "consuming");
        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                _ = &mut shutdown => { cancel(deliveries.as_mut()).await; break 'outer; }
                p = slots.clone().acquire_owned() => p.expect("semaphore open"),
            };
            let next = tokio::select! {
                _ = &mut shutdown => { cancel(deliveries.as_mut()).await; break 'outer; }
                n = deliveries.next() => n,
            };
            match next {
                Some(Ok(delivery)) => {
                    let p = processor.clone();
                    tasks.spawn(async move {
                        p.handle(delivery).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer failed; reconnecting");
                    break;
                }
                None => {
                    tracing::warn!("consumer closed; reconnecting");
                    break;
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => break 'outer,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
    let in_flight = tasks.len();
    tracing::info!(in_flight, "draining");
    let drained =
        tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "drain deadline passed; unfinished jobs will be redelivered"
        );
        tasks.abort_all();
    } else {
        tracing::info!("drained");
    }
}
