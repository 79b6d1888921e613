//! The consume loop: deliveries in, results stored, then acked.
//!
//! The order is what makes delivery safe: a job's result is written to the
//! store *before* its message is acked. A worker that dies in between leaves
//! the message unacked; the broker redelivers it, and the next worker finds
//! either a finished record (acks without rerunning) or a running one (runs
//! it again, counting the attempt). A job that keeps killing workers is
//! rejected into the dead-letter queue once it has been started
//! `delivery_limit` times (the broker does the same on its own when a
//! message keeps coming back); [`crate::dead_letters`] parks it for an operator.
//!
//! A job whose deadline passed while it waited is not run: it ends
//! `expired`. Bad input is not retried: a job whose image cannot be decoded
//! is marked failed with an error code and acked. Only infrastructure
//! failures put a message back on the queue — and a store outage is first
//! waited out for a while, holding the message, because every requeue
//! counts against the delivery limit. A video input takes the same path
//! up to the model lookup, then [`crate::video`] runs its frames.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use inferq_backends::broker::{Delivery, JobQueue};
use inferq_backends::store::{ResultStore, Saved, StoreError};
use inferq_core::ErrorCode;
use inferq_core::job::{JobError, JobRecord, Timings};
use inferq_core::manifest::{DType, ModelManifest};
use inferq_core::message::{ImageSource, JobMessage};
use inferq_vision::postprocess::Prediction;
use inferq_vision::preprocess::{InputTensor, TensorData};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::engine::{InferError, WorkInput};
use crate::inference::Inference;
use crate::storage;
use crate::triage::{Action, Triage, triage};
use inferq_backends::fetch::Fetcher;
use inferq_backends::tenant::TenantDirectory;

/// Everything needed to process one delivery.
pub struct Processor {
    /// Model lookup and inference (the engine, or a stand-in in tests).
    pub inference: Arc<dyn Inference>,
    pub store: Arc<dyn ResultStore>,
    /// Reads `uri` inputs and writes results to output URIs.
    pub fetcher: Arc<Fetcher>,
    /// The tenants' storage fences, checked again before every read and
    /// write of a job's references (the API checked them at submit).
    pub tenants: Arc<TenantDirectory>,
    pub result_ttl: Duration,
    /// Starts after which a job is dead-lettered (see the module docs).
    pub delivery_limit: u32,
    /// How long a store outage is waited out before a message is requeued.
    pub store_patience: Duration,
    /// How long a dead-lettered job is kept for a replay.
    pub dead_letter_ttl: Duration,
    /// Limits and tools of video jobs (see [`crate::video`]).
    pub video: crate::video::VideoSettings,
}

/// How a delivery was settled (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Acked,
    Requeued,
    /// Sent to the dead-letter queue.
    Rejected,
}

/// Retries of a final write before the message is requeued.
const STORE_RETRIES: u32 = 5;

impl Processor {
    /// Processes one delivery and settles it.
    pub async fn handle(&self, delivery: Delivery) -> Settled {
        let msg = match JobMessage::decode(delivery.payload.clone()) {
            Ok(m) => m,
            Err(e) => {
                // Retrying cannot fix a message nobody can read.
                tracing::error!(error = %e, "unreadable message dropped");
                return settle(&delivery, Settle::Ack).await;
            }
        };
        // The trace as the broker carried it (the message's own copy when a
        // broker drops headers), under a span of this worker's.
        let parent = delivery.traceparent.or(msg.trace);
        let hop = parent.map(|p| p.child());
        let span = tracing::info_span!("job", job_id = %msg.id, model = %msg.model,
            version = msg.version, redelivered = delivery.redelivered,
            delivery_count = delivery.delivery_count,
            trace_id = hop.map(|t| t.trace_id()).unwrap_or_default(),
            span_id = hop.map(|t| t.span_id()).unwrap_or_default(),
            parent_id = parent.map(|t| t.span_id()).unwrap_or_default());
        let in_flight = &inferq_runtime::metrics::metrics().worker_in_flight;
        in_flight.inc();
        let outcome = self.process(msg).instrument(span).await;
        in_flight.dec();
        settle(&delivery, outcome).await
    }

    /// Reads a record, waiting out a store outage for up to `store_patience`.
    pub(crate) async fn read_record(
        &self,
        id: inferq_core::job::JobId,
    ) -> Result<Option<JobRecord>, ()> {
        let give_up = tokio::time::Instant::now() + self.store_patience;
        let mut delay = Duration::from_millis(100);
        loop {
            match self.store.get(id).await {
                Ok(r) => return Ok(r),
                Err(e) if tokio::time::Instant::now() + delay < give_up => {
                    tracing::warn!(error = %e, retry_in = ?delay, "store unavailable; waiting");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "store still unavailable; requeueing");
                    return Err(());
                }
            }
        }
    }

    /// Runs the job as far as it should go and says how to settle it.
    async fn process(&self, msg: JobMessage) -> Settle {
        let Ok(stored) = self.read_record(msg.id).await else {
            return Settle::Requeue;
        };
        let Triage { mut record, action } = triage(stored, &msg, Utc::now(), self.delivery_limit);
        match action {
            Action::Run => {}
            Action::AlreadyFinal => {
                tracing::info!(status = %record.status, "job already finished; acking redelivery");
                self.drop_blob(&msg).await;
                return Settle::Ack;
            }
            Action::Expire => {
                tracing::info!(deadline = ?record.deadline, "deadline passed in the queue; job expired");
                return self.finish(&msg, &record).await;
            }
            Action::DeadLetter => {
                tracing::error!(
                    attempts = record.attempts,
                    "job keeps failing to finish; dead-lettering"
                );
                return Settle::Reject;
            }
            Action::Skip => return Settle::Ack,
        }
        let started = record.started_at.unwrap_or_else(Utc::now);
        match self.store.save(&record, self.result_ttl).await {
            Ok(Saved::Written) => {}
            Ok(Saved::AlreadyFinished) => return Settle::Ack,
            Err(e) => {
                tracing::warn!(error = %e, "cannot mark job running; requeueing");
                return Settle::Requeue;
            }
        }
        let mut timings = Timings {
            queue_ms: record.ms_since_created(started),
            worker: inferq_runtime::procmem::process_label().to_owned(),
            ..Timings::default()
        };

        let fence = self.tenants.fence_for(msg.owner.as_deref());
        let fetch_start = std::time::Instant::now();
        let bytes: Bytes = match &msg.image {
            ImageSource::Inline(b) => b.clone(),
            ImageSource::Uri(uri) => {
                let max_video = self.video.max_video_bytes;
                match storage::fetch_input(&self.fetcher, fence.as_deref(), uri, max_video).await {
                    Ok(b) => b,
                    Err(err) => {
                        tracing::info!(code = %err.code, error = %err.message, "input fetch failed");
                        let _ = record.fail(err, Some(timings), Utc::now());
                        return self.finish(&msg, &record).await;
                    }
                }
            }
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
                    return Settle::Requeue;
                }
            },
        };
        timings.fetch_ms = fetch_start.elapsed().as_secs_f64() * 1e3;

        let Some(entry) = self.inference.model(&msg.model, msg.version).await else {
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
        if msg.tensor.is_none()
            && let Some(format) = inferq_core::video::sniff(&bytes)
        {
            return self
                .process_video(
                    &msg,
                    record,
                    entry,
                    bytes,
                    format,
                    timings,
                    fence.as_deref(),
                )
                .await;
        }
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
        match self.inference.infer(msg.id, entry, input, msg.top_k).await {
            Ok(mut outcome) => {
                let artifact = outcome.artifact.take();
                if let Some(artifact) = &artifact {
                    // The views first: a record that lists them must find them.
                    let mut blobs: Vec<(String, &[u8])> = outcome
                        .views
                        .iter()
                        .map(|v| {
                            (
                                self.store.output_view_key(msg.id, v.name),
                                &v.artifact.bytes[..],
                            )
                        })
                        .collect();
                    blobs.push((self.store.output_key(msg.id), &artifact.bytes));
                    for (key, bytes) in blobs {
                        if let Err(e) = self.store.put_blob(&key, bytes, self.result_ttl).await {
                            tracing::warn!(error = %e, "cannot store output; requeueing");
                            return Settle::Requeue;
                        }
                    }
                    if let Prediction::Image { href, .. } = &mut outcome.prediction {
                        *href = format!("/v1/jobs/{}/output", msg.id);
                    }
                }
                timings.decode_ms = outcome.decode_ms;
                timings.preprocess_ms = outcome.preprocess_ms;
                timings.inference_ms = outcome.inference_ms;
                timings.batch_size = outcome.batch_size as u32;
                timings.rss_before_bytes = outcome.memory.rss_before;
                timings.rss_after_bytes = outcome.memory.rss_after;
                timings.decoded_bytes = outcome.memory.decoded;
                timings.input_tensor_bytes = outcome.memory.input_tensor;
                timings.model_bytes = outcome.memory.model;
                let now = Utc::now();
                timings.total_ms = record.ms_since_created(now);
                let _ = record.succeed(outcome.prediction, timings, now);
                if let Some(uri) = &msg.output_uri {
                    let delivery = storage::write_output(
                        &self.fetcher,
                        fence.as_deref(),
                        uri,
                        &record,
                        artifact.as_ref(),
                    )
                    .await;
                    record.output = Some(delivery);
                }
            }
            Err(InferError::Job(err)) => {
                tracing::info!(code = %err.code, error = %err.message, "job failed");
                let now = Utc::now();
                timings.total_ms = record.ms_since_created(now);
                let _ = record.fail(err, Some(timings), now);
            }
            Err(InferError::Stopped) => return Settle::Requeue,
        }
        self.finish(&msg, &record).await
    }

    /// Stores a terminal record (retrying while the store is flaky) and
    /// frees the image; acks if stored, requeues otherwise.
    pub(crate) async fn finish(&self, msg: &JobMessage, record: &JobRecord) -> Settle {
        let mut delay = Duration::from_millis(200);
        let started = std::time::Instant::now();
        for attempt in 1..=STORE_RETRIES {
            match self.store.save(record, self.result_ttl).await {
                Ok(saved) => {
                    if let Some(t) = &record.timings {
                        tracing::info!(status = %record.status, total_ms = t.total_ms,
                            inference_ms = t.inference_ms, "job finished");
                    }
                    if saved == inferq_backends::store::Saved::Written {
                        observe(record, started.elapsed());
                    }
                    self.drop_blob(msg).await;
                    return Settle::Ack;
                }
                Err(StoreError::Corrupt(e)) => {
                    tracing::error!(error = %e, "cannot serialise result");
                    return Settle::Ack;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "cannot store result; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        // The result is lost but the job is not: the broker will redeliver.
        Settle::Requeue
    }

    pub(crate) async fn drop_blob(&self, msg: &JobMessage) {
        if let ImageSource::Blob(key) = &msg.image
            && let Err(e) = self.store.delete_blob(key).await
        {
            tracing::debug!(error = %e, "blob not deleted; it expires by itself");
        }
    }
}

/// Counts a finished job and its stage durations in the metrics.
fn observe(record: &JobRecord, store: Duration) {
    use inferq_runtime::metrics::{metrics, stage};
    let m = metrics();
    let model = record.model.as_str();
    m.jobs_completed
        .with_label_values(&[model, &record.status.to_string()])
        .inc();
    if let Some(e) = &record.error {
        m.job_errors.with_label_values(&[e.code.as_str()]).inc();
    }
    let seconds = |name: &str, ms: f64| {
        m.stage_seconds
            .with_label_values(&[model, name])
            .observe(ms / 1000.0)
    };
    seconds(stage::STORE, store.as_secs_f64() * 1000.0);
    let Some(t) = &record.timings else { return };
    seconds(stage::QUEUE, t.queue_ms);
    seconds(stage::FETCH, t.fetch_ms);
    seconds(stage::DECODE, t.decode_ms);
    seconds(stage::PREPROCESS, t.preprocess_ms);
    if t.batch_size > 0 {
        seconds(stage::INFERENCE, t.inference_ms);
        m.batch_size
            .with_label_values(&[model])
            .observe(t.batch_size as f64);
    }
    seconds(stage::TOTAL, t.total_ms);
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

/// What to do with a delivery once processing is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// The job is final and stored.
    Ack,
    /// Infrastructure trouble; try again later.
    Requeue,
    /// Out of attempts: to the dead-letter queue.
    Reject,
}

async fn settle(delivery: &Delivery, how: Settle) -> Settled {
    let result = match how {
        Settle::Ack => delivery.acker.ack().await,
        Settle::Requeue => {
            // A short pause so an outage does not turn into a hot
            // redelivery loop.
            tokio::time::sleep(Duration::from_millis(500)).await;
            delivery.acker.requeue().await
        }
        Settle::Reject => delivery.acker.reject().await,
    };
    if let Err(e) = result {
        // The channel is gone; the broker redelivers the message anyway.
        tracing::warn!(error = %e, "could not settle delivery");
    }
    match how {
        Settle::Ack => Settled::Acked,
        Settle::Requeue => Settled::Requeued,
        Settle::Reject => Settled::Rejected,
    }
}

async fn open(
    queue: &dyn JobQueue,
    lane: Lane,
    prefetch: u16,
) -> Result<Box<dyn inferq_backends::broker::Deliveries>, inferq_backends::broker::BrokerError> {
    match lane {
        Lane::Jobs => queue.consume(prefetch).await,
        Lane::Dead => queue.consume_dead(prefetch).await,
    }
}

/// Cancels a consumer, giving up after a few seconds: a broker that does
/// not answer must not keep the process from draining and exiting.
async fn cancel(deliveries: &mut dyn inferq_backends::broker::Deliveries) {
    if tokio::time::timeout(Duration::from_secs(5), deliveries.cancel())
        .await
        .is_err()
    {
        tracing::warn!("consumer cancel timed out");
    }
}

/// Which queue a consume loop reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The job queue: run jobs.
    Jobs,
    /// The dead-letter queue: park dead letters (see [`crate::dead_letters`]).
    Dead,
}

/// Consumes `lane` until `shutdown` resolves, then stops taking new
/// deliveries, lets the in-flight ones finish (at most `drain` long) and
/// returns.
pub async fn consume(
    queue: Arc<dyn JobQueue>,
    processor: Arc<Processor>,
    lane: Lane,
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
            d = open(queue.as_ref(), lane, prefetch) => match d {
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
        tracing::info!(prefetch, ?lane, "consuming");
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
                        match lane {
                            Lane::Jobs => {
                                p.handle(delivery).await;
                            }
                            Lane::Dead => {
                                let how = p.park(&delivery).await;
                                settle(&delivery, how).await;
                            }
                        }
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

#[cfg(test)]
mod tests;
