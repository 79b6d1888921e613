//! The in-process limit: what this machine can do without the service.
//!
//! One pinned OS thread per allowed core (the worker's `pinning` plan), each
//! owning an ONNX Runtime session built by the worker's own
//! `engine::load_session` (same thread and optimisation options) for the
//! model loaded through the worker's repository code. On those threads we
//! time, per image:
//!
//! - (a) decode + preprocess + inference + post-processing in a tight loop on
//!   every core at once: the ceiling for the service's images/s;
//! - (b) decode and preprocess alone, on one core;
//! - (c) inference alone on a pre-made tensor, on every core at once;
//! - (d) inference alone with batches of 1, 2, 4, 8, 16 images (when the
//!   model's batch axis is dynamic), on every core at once.
//!
//! Nothing here talks to RabbitMQ or Redis; the service phase divides its
//! jobs/s by (a) to show what the queueing path costs.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use inferq_backends::repository::ModelEntry;
use inferq_vision::postprocess;
use inferq_vision::preprocess::{self, InputTensor, Preprocessor, TensorData};
use inferq_worker::{engine, pinning};
use ort::session::Session;
use serde::Serialize;

use crate::images::{BenchImage, MAX_PIXELS};
use crate::stats::{Latencies, Summary, rate};

/// Throughput and per-item latency of one parallel measurement.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Throughput {
    pub images_per_sec: f64,
    /// Per call: one image, or one batch in the batch sweep.
    pub latency: Summary,
}

/// One point of the batch-size sweep.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct BatchPoint {
    pub batch: usize,
    pub images_per_sec: f64,
    /// Per batch call.
    pub latency: Summary,
}

/// The limit measurements of one image.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LimitImage {
    pub image: String,
    pub bytes: usize,
    pub width: u32,
    pub height: u32,
    /// (a) decode + preprocess + inference + post-processing, all cores.
    pub full: Throughput,
    /// (b) decode alone, one core.
    pub decode: Summary,
    /// (b) resize/crop + tensor conversion alone, one core.
    pub preprocess: Summary,
    /// (c) inference alone on a ready tensor, all cores.
    pub inference: Throughput,
    /// (d) inference alone per batch size, all cores (empty when the batch
    /// axis is fixed).
    pub batch: Vec<BatchPoint>,
}

/// The whole limit phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LimitReport {
    pub model: String,
    /// One pinned thread per core, in this order.
    pub cores: Vec<usize>,
    /// The model input's declared shape (-1 = dynamic).
    pub input_shape: Vec<i64>,
    pub batch_axis_dynamic: bool,
    pub session_load_ms: f64,
    pub images: Vec<LimitImage>,
}

impl LimitReport {
    /// The full-path limit (a) for `image`, if measured.
    pub(crate) fn full_rate(&self, image: &str) -> Option<f64> {
        self.images
            .iter()
            .find(|i| i.image == image)
            .map(|i| i.full.images_per_sec)
    }
}

/// What one thread measured.
#[derive(Default)]
struct Measured {
    count: u64,
    elapsed: Duration,
    total: Latencies,
    stage_a: Latencies,
    stage_b: Latencies,
}

type Task = Arc<dyn Fn(&mut Session) -> Result<Measured, String> + Send + Sync>;

/// Pinned threads, each with its own session, waiting for tasks.
struct Pool {
    tasks: Vec<mpsc::Sender<Task>>,
    results: mpsc::Receiver<Result<Measured, String>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

struct ThreadInfo {
    input_shape: Vec<i64>,
    load_ms: f64,
}

impl Pool {
    fn start(entry: &Arc<ModelEntry>, cores: &[usize]) -> anyhow::Result<(Pool, ThreadInfo)> {
        let env = engine::ort_environment(Some(&inferq_tests::ort_library()))
            .context("loading ONNX Runtime")?;
        let (result_tx, results) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<ThreadInfo, String>>();
        let mut tasks = Vec::new();
        let mut handles = Vec::new();
        for (i, &core) in cores.iter().enumerate() {
            let (task_tx, task_rx) = mpsc::channel::<Task>();
            tasks.push(task_tx);
            let (env, entry) = (env.clone(), entry.clone());
            let (ready, result_tx) = (ready_tx.clone(), result_tx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("bench-limit-{i}"))
                .spawn(move || {
                    pinning::pin_current(core);
                    let started = Instant::now();
                    let mut session = match engine::load_session(&env, &entry)
                        .and_then(|mut s| engine::warm_up(&mut s, &entry).map(|_| s))
                    {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    let input_shape = session
                        .inputs()
                        .iter()
                        .find(|i| i.name() == entry.manifest.input.name)
                        .and_then(|i| i.dtype().tensor_shape())
                        .map(|s| s.to_vec())
                        .unwrap_or_default();
                    let load_ms = started.elapsed().as_secs_f64() * 1e3;
                    let _ = ready.send(Ok(ThreadInfo {
                        input_shape,
                        load_ms,
                    }));
                    while let Ok(task) = task_rx.recv() {
                        let _ = result_tx.send(task(&mut session));
                    }
                })
                .context("starting a limit thread")?;
            handles.push(handle);
        }
        let mut info = None;
        for _ in 0..cores.len() {
            match ready_rx.recv() {
                Ok(Ok(i)) => info = Some(i),
                Ok(Err(e)) => bail!("loading the model session: {e}"),
                Err(_) => bail!("a limit thread died while loading the model"),
            }
        }
        let pool = Pool {
            tasks,
            results,
            handles,
        };
        Ok((pool, info.context("no limit threads")?))
    }

    /// Runs `task` on the first `n` threads at once; merges what they measured.
    fn run_on(&self, n: usize, task: Task) -> anyhow::Result<Measured> {
        for t in &self.tasks[..n] {
            t.send(task.clone()).context("limit thread gone")?;
        }
        let mut merged = Measured::default();
        for _ in 0..n {
            let m = self
                .results
                .recv()
                .context("limit thread gone")?
                .map_err(anyhow::Error::msg)?;
            merged.count += m.count;
            merged.elapsed = merged.elapsed.max(m.elapsed);
            merged.total.merge(&m.total);
            merged.stage_a.merge(&m.stage_a);
            merged.stage_b.merge(&m.stage_b);
        }
        Ok(merged)
    }

    fn all(&self, task: Task) -> anyhow::Result<Measured> {
        self.run_on(self.tasks.len(), task)
    }

    fn one(&self, task: Task) -> anyhow::Result<Measured> {
        self.run_on(1, task)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.tasks.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Calls `step` until `duration` has passed (at least once); `step` records
/// its own stage times and returns the item count it processed.
fn timed_loop(
    duration: Duration,
    mut step: impl FnMut(&mut Measured) -> Result<u64, String>,
) -> Result<Measured, String> {
    let mut m = Measured::default();
    let started = Instant::now();
    loop {
        let t = Instant::now();
        m.count += step(&mut m)?;
        m.total.record(t.elapsed());
        if started.elapsed() >= duration {
            break;
        }
    }
    m.elapsed = started.elapsed();
    Ok(m)
}

/// `tensor` repeated `n` times along the batch axis.
pub(crate) fn batched(tensor: &InputTensor, n: usize) -> InputTensor {
    let mut shape = tensor.shape;
    shape[0] *= n;
    let data = match &tensor.data {
        TensorData::F32(v) => TensorData::F32(v.repeat(n)),
        TensorData::U8(v) => TensorData::U8(v.repeat(n)),
        TensorData::I32(v) => TensorData::I32(v.repeat(n)),
    };
    InputTensor { shape, data }
}

/// Loads the model through the worker's repository code.
pub(crate) fn load_model(
    model_dir: &Path,
    name: &str,
    version: u64,
) -> anyhow::Result<Arc<ModelEntry>> {
    let repo = inferq_worker::load_models(model_dir)
        .with_context(|| format!("loading models from {}", model_dir.display()))?;
    repo.get(name, Some(version)).cloned().with_context(|| {
        format!(
            "model {name} version {version} not found in {} (run `make assets`)",
            model_dir.display()
        )
    })
}

/// One image through exactly the worker's per-thread pipeline.
fn full_step(
    session: &mut Session,
    prep: &mut Preprocessor,
    entry: &ModelEntry,
    bytes: &[u8],
    m: &mut Measured,
) -> Result<u64, String> {
    let t0 = Instant::now();
    let img = prep
        .decode(bytes, MAX_PIXELS, &entry.manifest)
        .map_err(|e| e.to_string())?;
    let t1 = Instant::now();
    let (tensor, geometry) = prep.prepare_decoded(&img, &entry.manifest);
    let t2 = Instant::now();
    let outputs = engine::run(session, entry, tensor).map_err(|e| e.to_string())?;
    postprocess::interpret(&outputs, &entry.manifest, &entry.labels, &geometry, None)
        .map_err(|e| e.to_string())?;
    m.stage_a.record(t1 - t0);
    m.stage_b.record(t2 - t1);
    Ok(1)
}

fn throughput(m: &Measured) -> Throughput {
    Throughput {
        images_per_sec: rate(m.count, m.elapsed.as_secs_f64()),
        latency: m.total.summary(),
    }
}

/// Runs the limit phase for `images`, `secs` per measurement.
pub(crate) fn run(
    entry: &Arc<ModelEntry>,
    images: &[BenchImage],
    secs: Duration,
    batch_sizes: &[usize],
) -> anyhow::Result<LimitReport> {
    let cores = pinning::plan(0, &[], &pinning::allowed_cores());
    let (pool, info) = Pool::start(entry, &cores)?;
    let dynamic = info.input_shape.first() == Some(&-1);
    let mut out = Vec::new();
    for image in images {
        eprintln!("limit: {} ({} threads)", image.name, cores.len());
        let bytes = image.image.bytes.clone();
        let e = entry.clone();
        let full = pool.all(Arc::new(move |s: &mut Session| {
            let mut prep = Preprocessor::new();
            timed_loop(secs, |m| full_step(s, &mut prep, &e, &bytes, m))
        }))?;
        let (bytes, e) = (image.image.bytes.clone(), entry.clone());
        let prep = pool.one(Arc::new(move |_: &mut Session| {
            let mut prep = Preprocessor::new();
            timed_loop(secs, |m| {
                let t0 = Instant::now();
                let img = prep
                    .decode(&bytes, MAX_PIXELS, &e.manifest)
                    .map_err(|e| e.to_string())?;
                let t1 = Instant::now();
                std::hint::black_box(prep.prepare_decoded(&img, &e.manifest));
                m.stage_a.record(t1 - t0);
                m.stage_b.record(t1.elapsed());
                Ok(1)
            })
        }))?;
        let decoded = preprocess::decode(&image.image.bytes, MAX_PIXELS)?;
        let (fitted, _) = preprocess::fit(&decoded, &entry.manifest);
        let tensor = Arc::new(preprocess::to_tensor(&fitted, &entry.manifest));
        let infer = |n: usize| -> anyhow::Result<Measured> {
            let input = Arc::new(batched(&tensor, n));
            let e = entry.clone();
            pool.all(Arc::new(move |s: &mut Session| {
                timed_loop(secs, |_| {
                    engine::run(s, &e, &input).map_err(|e| e.to_string())?;
                    Ok(n as u64)
                })
            }))
        };
        // (c) is the batch-1 point of the sweep.
        let single = infer(1)?;
        let mut batch = Vec::new();
        if dynamic {
            for &n in batch_sizes {
                let m = if n == 1 { None } else { Some(infer(n)?) };
                let m = m.as_ref().unwrap_or(&single);
                batch.push(BatchPoint {
                    batch: n,
                    images_per_sec: throughput(m).images_per_sec,
                    latency: m.total.summary(),
                });
            }
        }
        let inference = throughput(&single);
        out.push(LimitImage {
            image: image.name.clone(),
            bytes: image.bytes(),
            width: image.width,
            height: image.height,
            full: throughput(&full),
            decode: prep.stage_a.summary(),
            preprocess: prep.stage_b.summary(),
            inference,
            batch,
        });
    }
    Ok(LimitReport {
        model: entry.key(),
        cores,
        input_shape: info.input_shape,
        batch_axis_dynamic: dynamic,
        session_load_ms: info.load_ms,
        images: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batching_repeats_the_image_along_the_first_axis() {
        let t = InputTensor {
            shape: [1, 3, 1, 2],
            data: TensorData::F32((0..6).map(|v| v as f32).collect()),
        };
        let b = batched(&t, 3);
        assert_eq!(b.shape, [3, 3, 1, 2]);
        let TensorData::F32(v) = &b.data else {
            panic!("dtype changed")
        };
        assert_eq!(v.len(), 18);
        assert_eq!(&v[12..18], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn timed_loop_runs_at_least_once_and_counts_items() {
        let m = timed_loop(Duration::ZERO, |_| Ok(4)).unwrap();
        assert_eq!(m.count, 4);
        assert_eq!(m.total.count(), 1);
        assert!(timed_loop(Duration::ZERO, |_| Err("boom".into())).is_err());
    }
}
