//! The inference engine: ONNX Runtime on dedicated, pinned OS threads.
//!
//! Decoding, preprocessing and inference are CPU-bound and would stall the
//! async runtime (and with it AMQP heartbeats, after which RabbitMQ drops the
//! channel). So they run on plain `std::thread`s, one per core, each owning
//! its own `ort::Session` per model (`Session::run` takes `&mut self`, and one
//! intra-op thread per session avoids oversubscribing the cores). Async code
//! talks to the engine through a bounded channel and gets the answer on a
//! oneshot — the shape of text-embeddings-inference's backend.
//!
//! A panic while processing one image fails that job and leaves the thread
//! serving; a model that cannot be loaded is reported and the others serve.

mod compute;
mod footprint;
mod native;
mod providers;
mod thread;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use inferq_backends::repository::{ModelEntry, ModelRepository};
use inferq_core::ErrorCode;
use inferq_core::job::{JobError, JobId};
use inferq_core::manifest::Provider;
use inferq_vision::postprocess::{Artifact, Prediction, View};
use inferq_vision::preprocess::{InputTensor, MemoryBudget};
use ort::session::{Session, builder::GraphOptimizationLevel};
use tokio::sync::oneshot;

pub use compute::{run, warm_up};
pub use footprint::JobMemory;
pub use native::MAX_OUTPUT_PIXELS;
pub use providers::{available as available_providers, is_available as provider_available};
use thread::ThreadState;

use crate::pinning;

/// How the engine is built.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// 0 = one per allowed core.
    pub threads: usize,
    pub cores: Vec<usize>,
    pub pin: bool,
    pub ort_library: Option<PathBuf>,
    /// Decoder pixel limit.
    pub max_pixels: u64,
    /// Bytes of decoded images all threads may hold at once (see
    /// `crate::memory`); a larger image runs alone.
    pub decode_budget_bytes: u64,
    /// Execution providers of models whose manifest names none.
    pub providers: Vec<Provider>,
}

/// Failures that stop the engine from starting.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "ONNX Runtime library not configured: set --ort-library / INFERQ_ORT_LIBRARY or \
         ORT_DYLIB_PATH to libonnxruntime.so (`make assets` installs it under .cache/venv)"
    )]
    NoRuntime,
    #[error("ONNX Runtime library not found at {0} (run `make assets`)")]
    RuntimeMissing(PathBuf),
    #[error("cannot load ONNX Runtime: {0}")]
    Runtime(String),
    #[error("no model could be loaded: {0}")]
    NoModels(String),
    #[error("cannot start inference thread: {0}")]
    Thread(std::io::Error),
}

/// A job's result from the engine, with stage timings in milliseconds.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub prediction: Prediction,
    /// A binary result (an output image) to store beside the record.
    pub artifact: Option<Artifact>,
    /// Other renderings of the output image (heatmap colour map, overlay).
    pub views: Vec<View>,
    pub decode_ms: f64,
    pub preprocess_ms: f64,
    /// Inference time of the whole batch the job ran in.
    pub inference_ms: f64,
    /// How many jobs ran in that batch (1 without batching).
    pub batch_size: usize,
    /// RSS around the job (shared by a batch), its image's and tensor's
    /// bytes and its model's resident bytes.
    pub memory: JobMemory,
}

/// Why [`Engine::infer`] produced no outcome.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The job itself is bad (or the model failed on it): fail the job.
    #[error("{0}")]
    Job(JobError),
    /// The engine is shutting down: the job should be retried elsewhere.
    #[error("inference engine stopped")]
    Stopped,
}

/// What a job feeds the model.
#[derive(Debug, Clone)]
pub enum WorkInput {
    /// An encoded image to decode and preprocess.
    Encoded(Bytes),
    /// A ready model input (sent as a tensor); no decoding or resizing.
    Tensor(InputTensor),
    /// A decoded video frame (upright RGB), preprocessed like a decoded
    /// image; frames of one video batch together when the model batches.
    Frame(image::RgbImage),
}

/// One unit of work for an inference thread.
struct Work {
    job: JobId,
    model: Arc<ModelEntry>,
    input: WorkInput,
    top_k: Option<usize>,
    reply: oneshot::Sender<Result<Outcome, JobError>>,
    /// The submitting job's span, continued on the inference thread.
    span: tracing::Span,
}

/// Handle to the inference threads.
pub struct Engine {
    tx: Mutex<Option<flume::Sender<Work>>>,
    /// One control channel per thread, for reloads.
    controls: Vec<flume::Sender<Control>>,
    handles: Mutex<Vec<std::thread::JoinHandle<()>>>,
    threads: usize,
    loaded: RwLock<Vec<String>>,
}

/// Longest an idle inference thread waits before checking for control
/// messages.
const CONTROL_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Messages to one inference thread, besides work.
enum Control {
    /// Load/replace/drop sessions to match these entries, then report.
    Apply(Vec<Arc<ModelEntry>>, std::sync::mpsc::Sender<LoadReport>),
}

/// What a thread has loaded, and what failed.
struct LoadReport {
    loaded: Vec<String>,
    errors: Vec<(String, String)>,
}

impl LoadReport {
    /// Logs the failures and returns the sorted loaded keys.
    fn log(self) -> Vec<String> {
        for (model, e) in self.errors {
            tracing::error!(%model, error = %e, "model failed to load; it will not be served here");
        }
        let mut loaded = self.loaded;
        loaded.sort();
        loaded
    }
}

static ENVIRONMENT: Mutex<Option<ort::environment::Environment>> = Mutex::new(None);

/// The process-wide ONNX Runtime environment, loading the library on first use.
pub fn ort_environment(
    library: Option<&Path>,
) -> Result<ort::environment::Environment, EngineError> {
    let mut env = ENVIRONMENT.lock().expect("ort env lock");
    if let Some(e) = env.as_ref() {
        return Ok(e.clone());
    }
    let path = library
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .ok_or(EngineError::NoRuntime)?;
    if !path.is_file() {
        return Err(EngineError::RuntimeMissing(path));
    }
    let built = ort::init_from(&path)
        .map_err(|e| EngineError::Runtime(e.to_string()))?
        .with_name("inferq")
        .build()
        .map_err(|e| EngineError::Runtime(e.to_string()))?;
    *env = Some(built.clone());
    Ok(built)
}

/// Builds a single-threaded session for one model and checks it matches its
/// manifest, on the providers its manifest names (else the CPU).
///
/// Public so that measuring tools (`inferq-bench`) build sessions with
/// exactly the options the inference threads use: one intra- and one
/// inter-op thread, no spinning, all graph optimisations, no memory pattern.
pub fn load_session(
    env: &ort::environment::Environment,
    entry: &ModelEntry,
) -> Result<Session, String> {
    load_session_with(env, entry, &[Provider::Cpu])
}

/// [`load_session`] with the worker's default execution providers for a
/// manifest without `[runtime] providers`. Fails, naming the provider and
/// the ones the library has, when a provider is missing (see
/// `providers`).
pub fn load_session_with(
    env: &ort::environment::Environment,
    entry: &ModelEntry,
    default_providers: &[Provider],
) -> Result<Session, String> {
    let path = entry.model_path();
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let plan = providers::plan(entry, default_providers).map_err(|e| fail(&e))?;
    let builder = Session::builder(env)
        .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
        .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
        .and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into))
        .and_then(|b| b.with_inter_op_spinning(false).map_err(Into::into))
        .and_then(|b| {
            b.with_optimization_level(GraphOptimizationLevel::All)
                .map_err(Into::into)
        })
        // No memory pattern: ORT would keep one pre-planned block per input
        // shape, i.e. per batch size seen; measured for EfficientNet-Lite0
        // with batches of 1 and 2: 11 MB less RSS per worker, the same speed.
        .and_then(|b| b.with_memory_pattern(false).map_err(Into::into))
        .map_err(|e: ort::Error| fail(&e))?;
    let mut builder = if plan.dispatch.is_empty() {
        builder
    } else {
        builder
            .with_execution_providers(&plan.dispatch)
            .map_err(|e| fail(&e))?
    };
    tracing::debug!(model = %entry.key(), providers = ?plan.effective, "building session");
    let session = builder.commit_from_file(&path).map_err(|e| fail(&e))?;
    let m = &entry.manifest;
    if !session.inputs().iter().any(|i| i.name() == m.input.name) {
        return Err(fail(&format!(
            "the model has no input named `{}`",
            m.input.name
        )));
    }
    for wanted in m.output.wanted() {
        if !session.outputs().iter().any(|o| o.name() == wanted) {
            return Err(fail(&format!("the model has no output named `{wanted}`")));
        }
    }
    if m.batching.enabled() {
        let batch_axis = session
            .inputs()
            .iter()
            .find(|i| i.name() == m.input.name)
            .and_then(|i| i.dtype().tensor_shape())
            .and_then(|shape| shape.first().copied());
        if let Some(fixed) = batch_axis.filter(|d| *d > 0) {
            return Err(fail(&format!(
                "batching.max_batch is {} but the input's batch axis is fixed to {fixed}; \
                 export the model with a dynamic batch axis or remove [batching]",
                m.batching.max_batch
            )));
        }
    }
    Ok(session)
}

impl Engine {
    /// Starts the threads and loads (and warms) every model on each.
    ///
    /// Returns once all threads are ready, so the caller only starts
    /// consuming when the first job can run at full speed.
    pub fn start(config: &EngineConfig, models: &ModelRepository) -> Result<Engine, EngineError> {
        let env = ort_environment(config.ort_library.as_deref())?;
        let placement = pinning::plan(config.threads, &config.cores, &pinning::allowed_cores());
        let threads = placement.len();
        let entries: Vec<Arc<ModelEntry>> = models.entries().cloned().collect();
        // Each thread has its next image waiting, or its next full batch.
        let depth = entries
            .iter()
            .map(|e| e.manifest.batching.max_batch)
            .max()
            .unwrap_or(1)
            .max(2);
        let (tx, rx) = flume::bounded::<Work>(threads * depth);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let budget = MemoryBudget::new(config.decode_budget_bytes);
        let model_memory = Arc::new(footprint::ModelMemory::default());
        tracing::info!(
            threads,
            decode_budget_mib = budget.capacity() >> 20,
            "decoded images share a memory budget"
        );
        let mut handles = Vec::with_capacity(threads);
        let mut controls = Vec::with_capacity(threads);
        for (i, core) in placement.into_iter().enumerate() {
            let rx = rx.clone();
            let (ctrl_tx, ctrl_rx) = flume::bounded::<Control>(1);
            controls.push(ctrl_tx);
            let mut state = ThreadState::new(
                env.clone(),
                config.max_pixels,
                budget.clone(),
                config.providers.clone(),
                (i, model_memory.clone()),
            );
            let entries = entries.clone();
            let ready = ready_tx.clone();
            let pin = config.pin;
            let handle = std::thread::Builder::new()
                .name(format!("inferq-infer-{i}"))
                .spawn(move || {
                    if pin {
                        pinning::pin_current(core);
                    }
                    let _ = ready.send(state.apply(&entries));
                    drop(ready);
                    state.serve(rx, ctrl_rx);
                })
                .map_err(EngineError::Thread)?;
            handles.push(handle);
        }
        drop(ready_tx);
        let mut loaded = Vec::new();
        for _ in 0..threads {
            let Ok(report) = ready_rx.recv() else {
                break;
            };
            loaded = report.log();
        }
        if loaded.is_empty() && !entries.is_empty() {
            drop(tx);
            return Err(EngineError::NoModels(
                "every model failed to load (see the errors above)".into(),
            ));
        }
        tracing::info!(threads, models = ?loaded, "inference engine ready");
        Ok(Engine {
            tx: Mutex::new(Some(tx)),
            controls,
            handles: Mutex::new(handles),
            threads,
            loaded: RwLock::new(loaded),
        })
    }

    /// Number of inference threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// `name:version` of every model the threads serve.
    pub fn loaded_models(&self) -> Vec<String> {
        self.loaded.read().expect("engine lock").clone()
    }

    /// Brings every thread's sessions in line with `entries`: new or changed
    /// models are loaded and warmed *before* they replace the old session
    /// (a thread finishes its current job first and jobs queued meanwhile
    /// wait, so none fails), models no longer listed are dropped, and a
    /// model that fails to load keeps its previous session if it had one.
    /// Blocking: call from a blocking thread.
    pub fn reload(&self, entries: &[Arc<ModelEntry>]) -> Vec<String> {
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        let mut sent = 0;
        for control in &self.controls {
            if control
                .send(Control::Apply(entries.to_vec(), ack_tx.clone()))
                .is_ok()
            {
                sent += 1;
            }
        }
        drop(ack_tx);
        let mut loaded = self.loaded_models();
        for _ in 0..sent {
            match ack_rx.recv() {
                Ok(report) => loaded = report.log(),
                Err(_) => break,
            }
        }
        *self.loaded.write().expect("engine lock") = loaded.clone();
        loaded
    }

    /// Runs one job; waits (asynchronously) for a free slot when all
    /// threads are busy.
    pub async fn infer(
        &self,
        job: JobId,
        model: Arc<ModelEntry>,
        input: WorkInput,
        top_k: Option<usize>,
    ) -> Result<Outcome, InferError> {
        let Some(tx) = self.tx.lock().expect("engine lock").clone() else {
            return Err(InferError::Stopped);
        };
        if !self
            .loaded
            .read()
            .expect("engine lock")
            .contains(&model.key())
        {
            return Err(InferError::Job(JobError::new(
                ErrorCode::ModelNotFound,
                format!("model {} is not loaded on this worker", model.key()),
            )));
        }
        let (reply, answer) = oneshot::channel();
        tx.send_async(Work {
            job,
            model,
            input,
            top_k,
            reply,
            span: tracing::Span::current(),
        })
        .await
        .map_err(|_| InferError::Stopped)?;
        answer
            .await
            .map_err(|_| InferError::Stopped)?
            .map_err(InferError::Job)
    }

    /// Stops accepting work, lets the threads finish what they hold and
    /// joins them.
    pub fn shutdown(&self) {
        self.tx.lock().expect("engine lock").take();
        let handles = std::mem::take(&mut *self.handles.lock().expect("engine lock"));
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}
