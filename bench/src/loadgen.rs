//! Closed-loop clients against the HTTP API.
//!
//! `concurrency` tasks each run one operation (submit and long-poll a job,
//! or just submit), record its latency and start the next, until the
//! measurement time is up; operations still in flight then are finished and
//! counted. Closed loop means the offered load adapts to the service: the
//! numbers are the throughput at that concurrency and the latency a client
//! sees, not a fixed arrival rate. The bench's own CPU time over the run is
//! recorded, since the clients share the machine's cores with the service.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inferq_tests::load::{Image, LoadError, one_job};
use serde::Serialize;
use serde_json::json;

use crate::resources::{CpuUse, cpu_time};
use crate::stats::{Latencies, Summary, rate};

/// Error messages kept per run (the count is always complete).
const ERROR_SAMPLES: usize = 5;

/// What a closed-loop run measured.
#[derive(Default)]
pub(crate) struct LoopResult {
    pub ok: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub elapsed: Duration,
    pub cpu: CpuUse,
    /// Client-side latency of the successful operations.
    pub latency: Latencies,
    /// Worker-reported compute time (decode + preprocess + inference) of
    /// finished jobs, when present.
    pub compute: Latencies,
    /// Worker-reported time in the queue (`timings.queue_ms`).
    pub queue: Latencies,
    /// Sum of the worker-reported batch sizes, and how many jobs reported one.
    pub batch_sum: u64,
    pub batch_jobs: u64,
}

/// The serialised form of a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoopSummary {
    pub concurrency: usize,
    pub ok: u64,
    pub errors: u64,
    pub secs: f64,
    pub per_sec: f64,
    pub latency: Summary,
    pub loadgen_cpu: CpuUse,
    /// Mean worker-reported batch size of the finished jobs (dynamic
    /// batching); `None` when no job reported one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_batch: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub error_samples: Vec<String>,
}

impl LoopResult {
    pub(crate) fn summary(&self, concurrency: usize) -> LoopSummary {
        LoopSummary {
            concurrency,
            ok: self.ok,
            errors: self.errors,
            secs: self.elapsed.as_secs_f64(),
            per_sec: rate(self.ok, self.elapsed.as_secs_f64()),
            latency: self.latency.summary(),
            loadgen_cpu: self.cpu,
            mean_batch: (self.batch_jobs > 0)
                .then(|| self.batch_sum as f64 / self.batch_jobs as f64),
            error_samples: self.error_samples.clone(),
        }
    }
}

/// What the worker reported about a finished job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct JobTimes {
    /// decode + preprocess + inference.
    pub compute: Duration,
    pub queue: Duration,
    /// Jobs in the inference batch (`timings.batch_size`; 0 when absent).
    pub batch_size: u32,
}

impl JobTimes {
    /// From a job's `timings` object; `None` when it has none.
    pub(crate) fn from_job(job: &serde_json::Value) -> Option<Self> {
        let t = &job["timings"];
        let ms = |k: &str| t[k].as_f64().filter(|v| v.is_finite() && *v >= 0.0);
        let compute = ms("decode_ms")? + ms("preprocess_ms")? + ms("inference_ms")?;
        Some(JobTimes {
            compute: Duration::from_secs_f64(compute / 1e3),
            queue: Duration::from_secs_f64(ms("queue_ms").unwrap_or(0.0) / 1e3),
            batch_size: t["batch_size"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
        })
    }
}

/// Runs `op` from `concurrency` clients for `duration`. `op` returns the
/// worker-side times of the job when it knows them.
pub(crate) async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, op: F) -> LoopResult
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<JobTimes>, String>> + Send,
{
    let op = Arc::new(op);
    let cpu0 = cpu_time();
    let started = Instant::now();
    let deadline = started + duration;
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut r = LoopResult::default();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match op().await {
                        Ok(worker) => {
                            r.latency.record(t.elapsed());
                            if let Some(w) = worker {
                                r.compute.record(w.compute);
                                r.queue.record(w.queue);
                                if w.batch_size > 0 {
                                    r.batch_sum += u64::from(w.batch_size);
                                    r.batch_jobs += 1;
                                }
                            }
                            r.ok += 1;
                        }
                        Err(e) => {
                            r.errors += 1;
                            if r.error_samples.len() < ERROR_SAMPLES {
                                r.error_samples.push(e);
                            }
                            // Do not spin on a dead endpoint.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                r
            })
        })
        .collect();
    let mut total = LoopResult::default();
    for c in clients {
        match c.await {
            Ok(r) => total.absorb(r),
            Err(e) => {
                total.errors += 1;
                total.error_samples.push(format!("client task failed: {e}"));
            }
        }
    }
    total.elapsed = started.elapsed();
    total.cpu = CpuUse::over(cpu_time().saturating_sub(cpu0), total.elapsed);
    total
}

impl LoopResult {
    fn absorb(&mut self, r: LoopResult) {
        self.ok += r.ok;
        self.errors += r.errors;
        for e in r.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES {
                self.error_samples.push(e);
            }
        }
        self.latency.merge(&r.latency);
        self.compute.merge(&r.compute);
        self.queue.merge(&r.queue);
        self.batch_sum += r.batch_sum;
        self.batch_jobs += r.batch_jobs;
    }
}

/// An HTTP client for the load: generous pool, and a timeout so a stuck
/// request becomes an error instead of a hang.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// One full job: submit `image` and long-poll until it is terminal.
pub(crate) async fn full_job(
    client: reqwest::Client,
    base: Arc<str>,
    image: Image,
) -> Result<Option<JobTimes>, String> {
    let url = format!("{base}/v1/jobs");
    match one_job(&client, &url, &base, &image).await {
        Ok(job) => Ok(JobTimes::from_job(&job)),
        Err(LoadError::JobFailed(job)) => Err(format!(
            "job {}: {}",
            job["status"].as_str().unwrap_or("?"),
            job["error"]
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// What the submit-path phase posts.
#[derive(Debug, Clone)]
pub(crate) enum SubmitBody {
    /// Raw image bytes.
    Image(Image),
    /// A by-reference job: `{"input":{"uri": ...}}`.
    Uri(String),
}

/// One `POST /v1/jobs`, expecting 202.
pub(crate) async fn submit_only(
    client: reqwest::Client,
    base: Arc<str>,
    body: Arc<SubmitBody>,
) -> Result<Option<JobTimes>, String> {
    let req = client.post(format!("{base}/v1/jobs"));
    let req = match &*body {
        SubmitBody::Image(img) => req
            .header("content-type", img.content_type)
            .body(img.bytes.clone()),
        SubmitBody::Uri(uri) => req.json(&json!({ "input": { "uri": uri } })),
    };
    let resp = req.send().await.map_err(|e| format!("http: {e}"))?;
    let status = resp.status();
    // Read the body so the connection is reused.
    let text = resp.text().await.unwrap_or_default();
    if status.as_u16() == 202 {
        Ok(None)
    } else {
        Err(format!("submit answered {status}: {}", text.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_times_from_the_timings_object() {
        let job = json!({"timings": {"queue_ms": 5.0, "fetch_ms": 0.0, "decode_ms": 2.0,
            "preprocess_ms": 1.5, "inference_ms": 6.5, "total_ms": 15.2}});
        let t = JobTimes::from_job(&job).unwrap();
        assert_eq!(t.compute, Duration::from_millis(10));
        assert_eq!(t.queue, Duration::from_millis(5));
        assert_eq!(t.batch_size, 0, "no batch_size reported");
        assert_eq!(JobTimes::from_job(&json!({"status": "succeeded"})), None);
        let batched = json!({"timings": {"queue_ms": 1.0, "decode_ms": 1.0,
            "preprocess_ms": 1.0, "inference_ms": 1.0, "batch_size": 3}});
        assert_eq!(JobTimes::from_job(&batched).unwrap().batch_size, 3);
    }

    #[tokio::test]
    async fn counts_successes_and_errors_and_keeps_a_few_messages() {
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = n.clone();
        let r = closed_loop(2, Duration::from_millis(50), move || {
            let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                if i & 1 == 1 {
                    Err(format!("error {i}"))
                } else {
                    Ok(Some(JobTimes {
                        compute: Duration::from_millis(3),
                        queue: Duration::from_millis(1),
                        batch_size: 2,
                    }))
                }
            }
        })
        .await;
        let calls = n.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(r.ok + r.errors, calls);
        assert!(
            r.ok >= 1 && r.errors >= 1,
            "ok {} errors {}",
            r.ok,
            r.errors
        );
        assert_eq!(r.latency.count(), r.ok);
        assert_eq!(r.compute.count(), r.ok);
        assert_eq!(r.queue.count(), r.ok);
        assert_eq!((r.batch_jobs, r.batch_sum), (r.ok, 2 * r.ok));
        assert!(r.error_samples.len() <= ERROR_SAMPLES);
        assert!(r.elapsed >= Duration::from_millis(50));
        let s = r.summary(2);
        assert_eq!(s.concurrency, 2);
        assert_eq!(s.ok, r.ok);
    }
}
