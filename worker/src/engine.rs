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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use inferq_shared::ErrorCode;
use inferq_shared::job::{JobError, JobId};
use inferq_shared::postprocess::{self, Artifact, Interpreted, Prediction, RawOutput};
use inferq_shared::preprocess::{
    self, DecodeError, Geometry, InputTensor, Preprocessor, TensorData,
};
use inferq_shared::repository::{ModelEntry, ModelRepository};
use ort::session::{Session, SessionInputValue, builder::GraphOptimizationLevel};
use ort::value::TensorRef;
use tokio::sync::oneshot;

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
    pub decode_ms: f64,
    pub preprocess_ms: f64,
    pub inference_ms: f64,
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
}

/// One unit of work for an inference thread.
struct Work {
    job: JobId,
    model: Arc<ModelEntry>,
    input: WorkInput,
    top_k: Option<usize>,
    reply: oneshot::Sender<Result<Outcome, JobError>>,
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

/// An inference thread's own state: its sessions, keyed by `name:version`
/// with the fingerprint they were built from.
struct ThreadState {
    env: ort::environment::Environment,
    sessions: HashMap<String, (u64, Session)>,
    /// Resizer and buffers reused from job to job.
    prep: Preprocessor,
    max_pixels: u64,
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
/// manifest.
///
/// Public so that measuring tools (`inferq-bench`) build sessions with
/// exactly the options the inference threads use: one intra- and one
/// inter-op thread, no spinning, all graph optimisations.
pub fn load_session(
    env: &ort::environment::Environment,
    entry: &ModelEntry,
) -> Result<Session, String> {
    let path = entry.model_path();
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut builder = Session::builder(env)
        .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
        .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
        .and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into))
        .and_then(|b| b.with_inter_op_spinning(false).map_err(Into::into))
        .and_then(|b| {
            b.with_optimization_level(GraphOptimizationLevel::All)
                .map_err(Into::into)
        })
        .map_err(|e: ort::Error| fail(&e))?;
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
        // Twice the threads: each thread has its next image waiting.
        let (tx, rx) = flume::bounded::<Work>(threads * 2);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let entries: Vec<Arc<ModelEntry>> = models.entries().cloned().collect();
        let mut handles = Vec::with_capacity(threads);
        let mut controls = Vec::with_capacity(threads);
        for (i, core) in placement.into_iter().enumerate() {
            let rx = rx.clone();
            let (ctrl_tx, ctrl_rx) = flume::bounded::<Control>(1);
            controls.push(ctrl_tx);
            let mut state = ThreadState {
                env: env.clone(),
                sessions: HashMap::new(),
                prep: Preprocessor::new(),
                max_pixels: config.max_pixels,
            };
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

/// One zero-filled run so the first real job does not pay for lazy
/// allocations inside ONNX Runtime.
pub fn warm_up(session: &mut Session, entry: &ModelEntry) -> Result<(), String> {
    let m = &entry.manifest;
    let blank = image::RgbImage::new(m.input.width, m.input.height);
    let tensor = preprocess::to_tensor(&blank, m);
    run(session, entry, &tensor)
        .map(|_| ())
        .map_err(|e| format!("{}: warm-up run failed: {e}", entry.model_path().display()))
}

/// Runs the session on one input and returns the wanted outputs as f32.
///
/// The input may hold a batch (`shape[0] > 1`) when the model's batch axis
/// is dynamic; public for `inferq-bench`, which times exactly this call.
pub fn run(
    session: &mut Session,
    entry: &ModelEntry,
    tensor: &InputTensor,
) -> Result<Vec<RawOutput>, ort::Error> {
    let shape = tensor.shape;
    let value: SessionInputValue = match &tensor.data {
        TensorData::F32(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
        TensorData::U8(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
        TensorData::I32(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
    };
    let m = &entry.manifest;
    let mut wanted = m.output.wanted();
    if wanted.is_empty() {
        wanted = session
            .outputs()
            .iter()
            .map(|o| o.name().to_owned())
            .collect();
    }
    let outputs = session.run(vec![(m.input.name.as_str(), value)])?;
    wanted
        .into_iter()
        .map(|name| {
            let value = &outputs[name.as_str()];
            let (shape, data) = extract_f32(value)?;
            Ok(RawOutput { name, shape, data })
        })
        .collect()
}

/// Reads a numeric output tensor as f32, whatever its element type.
fn extract_f32(value: &ort::value::DynValue) -> Result<(Vec<i64>, Vec<f32>), ort::Error> {
    macro_rules! try_as {
        ($($t:ty),*) => {
            $(if let Ok((shape, data)) = value.try_extract_tensor::<$t>() {
                return Ok((shape.to_vec(), data.iter().map(|v| *v as f32).collect()));
            })*
        };
    }
    try_as!(f32, f64, i64, i32, u8, i8);
    let (shape, data) = value.try_extract_tensor::<f32>()?;
    Ok((shape.to_vec(), data.to_vec()))
}

impl ThreadState {
    fn apply(&mut self, entries: &[Arc<ModelEntry>]) -> LoadReport {
        let mut errors = Vec::new();
        for entry in entries {
            let key = entry.key();
            if self
                .sessions
                .get(&key)
                .is_some_and(|(fp, _)| *fp == entry.fingerprint)
            {
                continue;
            }
            let started = Instant::now();
            match load_session(&self.env, entry).and_then(|mut s| warm_up(&mut s, entry).map(|_| s))
            {
                Ok(session) => {
                    tracing::info!(model = %key, ms = started.elapsed().as_secs_f64() * 1e3, "session ready");
                    // The old session (if any) is dropped only now.
                    self.sessions.insert(key, (entry.fingerprint, session));
                }
                Err(e) => errors.push((key, e)),
            }
        }
        let wanted: std::collections::HashSet<String> = entries.iter().map(|e| e.key()).collect();
        self.sessions.retain(|k, _| wanted.contains(k));
        LoadReport {
            loaded: self.sessions.keys().cloned().collect(),
            errors,
        }
    }

    /// The thread's loop: work until the work channel closes, with control
    /// messages checked between jobs and at least every
    /// [`CONTROL_POLL`] when idle. (Polling keeps the loop simple and
    /// costs a few wake-ups a second; a reload waits at most that long.)
    fn serve(mut self, rx: flume::Receiver<Work>, control: flume::Receiver<Control>) {
        loop {
            while let Ok(Control::Apply(entries, ack)) = control.try_recv() {
                let _ = ack.send(self.apply(&entries));
            }
            match rx.recv_timeout(CONTROL_POLL) {
                Ok(work) => self.run_one(work),
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn run_one(&mut self, work: Work) {
        let span = tracing::info_span!("infer", job_id = %work.job, model = %work.model.key());
        let _guard = span.enter();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            process(&mut self.sessions, &mut self.prep, &work, self.max_pixels)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(panic = %what, "inference panicked; job failed, thread keeps serving");
            Err(JobError::new(
                ErrorCode::Internal,
                format!("inference panicked: {what}"),
            ))
        });
        let _ = work.reply.send(result);
    }
}

fn process(
    sessions: &mut HashMap<String, (u64, Session)>,
    prep: &mut Preprocessor,
    work: &Work,
    max_pixels: u64,
) -> Result<Outcome, JobError> {
    let entry = &work.model;
    let (_, session) = sessions.get_mut(&entry.key()).ok_or_else(|| {
        JobError::new(
            ErrorCode::ModelNotFound,
            format!("model {} is not loaded", entry.key()),
        )
    })?;
    let t0 = Instant::now();
    let (tensor, geometry, t1) = match &work.input {
        WorkInput::Encoded(bytes) => {
            let img = prep
                .decode(bytes, max_pixels, &entry.manifest)
                .map_err(|e| {
                    let code = match e {
                        DecodeError::UnknownFormat => ErrorCode::UnsupportedImageFormat,
                        DecodeError::Limits(_) => ErrorCode::TooManyPixels,
                        DecodeError::Corrupt(_) => ErrorCode::DecodeFailed,
                    };
                    JobError::new(code, e.to_string())
                })?;
            let t1 = Instant::now();
            let (tensor, geometry) = prep.prepare_decoded(&img, &entry.manifest);
            (tensor, geometry, t1)
        }
        WorkInput::Tensor(t) => {
            let m = &entry.manifest.input;
            let geometry = Geometry {
                scale_x: 1.0,
                scale_y: 1.0,
                offset_x: 0.0,
                offset_y: 0.0,
                source_width: m.width,
                source_height: m.height,
            };
            (t, geometry, t0)
        }
    };
    let t2 = Instant::now();
    let outputs = run(session, entry, tensor)
        .map_err(|e| JobError::new(ErrorCode::InferenceFailed, e.to_string()))?;
    let t3 = Instant::now();
    let Interpreted {
        prediction,
        artifact,
    } = postprocess::interpret(
        &outputs,
        &entry.manifest,
        &entry.labels,
        &geometry,
        work.top_k,
    )
    .map_err(|e| JobError::new(ErrorCode::InferenceFailed, e.to_string()))?;
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
    Ok(Outcome {
        prediction,
        artifact,
        decode_ms: ms(t0, t1),
        preprocess_ms: ms(t1, t2),
        inference_ms: ms(t2, t3),
    })
}
