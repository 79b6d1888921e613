//! One inference thread: its sessions, its reusable buffers, and the loop
//! that takes work, gathers batches and answers each job on its oneshot.
//!
//! Dynamic batching happens here. When a thread picks up a job whose model
//! declares `[batching]`, it also takes the jobs for that model that are
//! already waiting in the work channel (and, with `max_delay_ms`, those that
//! arrive within that time), up to `max_batch`, and runs them as one batch.
//! Jobs for other models met on the way are held and run next, in order, so
//! no model starves another. With the default `max_delay_ms = 0` a lone job
//! never waits for company: batching only forms under load, where the jobs
//! were waiting anyway.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inferq_backends::repository::ModelEntry;
use inferq_core::ErrorCode;
use inferq_core::job::JobError;
use inferq_core::manifest::Provider;
use inferq_vision::preprocess::{BatchTensor, MemoryBudget, Preprocessor};

use super::compute::{self, Sessions};
use super::footprint::{self, ModelMemory};
use super::native;
use super::{CONTROL_POLL, Control, LoadReport, Work, WorkInput, load_session_with};

/// An inference thread's own state.
pub(super) struct ThreadState {
    pub(super) env: ort::environment::Environment,
    pub(super) sessions: Sessions,
    /// Resizer and buffers reused from job to job.
    pub(super) prep: Preprocessor,
    /// The stacked input of a batch, reused from batch to batch.
    pub(super) batch: BatchTensor,
    pub(super) max_pixels: u64,
    /// Execution providers of models whose manifest names none.
    pub(super) providers: Vec<Provider>,
    /// This thread's index among the engine's threads.
    index: usize,
    /// Resident bytes of each of this thread's sessions, by key, with the
    /// model's name and version (see `footprint`).
    resident: HashMap<String, (String, u64, u64)>,
    /// The figures of all threads, for the per-model gauge.
    memory: Arc<ModelMemory>,
}

impl ThreadState {
    pub(super) fn new(
        env: ort::environment::Environment,
        max_pixels: u64,
        budget: Arc<MemoryBudget>,
        providers: Vec<Provider>,
        (index, memory): (usize, Arc<ModelMemory>),
    ) -> Self {
        ThreadState {
            env,
            sessions: Sessions::new(),
            prep: Preprocessor::with_budget(budget),
            batch: BatchTensor::new(),
            max_pixels,
            providers,
            index,
            resident: HashMap::new(),
            memory,
        }
    }

    /// Loads, warms and swaps in the sessions `entries` list; drops the rest.
    pub(super) fn apply(&mut self, entries: &[Arc<ModelEntry>]) -> LoadReport {
        let mut errors = Vec::new();
        let mut freed = false;
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
            let (loaded, grown) = footprint::measure_load(|| {
                load_session_with(&self.env, entry, &self.providers)
                    .and_then(|mut s| compute::warm_up(&mut s, entry).map(|_| s))
            });
            match loaded {
                Ok(session) => {
                    self.memory
                        .set(&entry.name, entry.version, self.index, grown);
                    self.resident
                        .insert(key.clone(), (entry.name.clone(), entry.version, grown));
                    inferq_runtime::metrics::metrics()
                        .model_load_seconds
                        .with_label_values(&[entry.name.as_str()])
                        .observe(started.elapsed().as_secs_f64());
                    tracing::info!(model = %key, ms = started.elapsed().as_secs_f64() * 1e3,
                        resident_mib = grown as f64 / f64::from(1 << 20),
                        max_batch = entry.manifest.batching.max_batch, "session ready");
                    // The old session (if any) is dropped only now.
                    freed |= self
                        .sessions
                        .insert(key, (entry.fingerprint, session))
                        .is_some();
                }
                Err(e) => errors.push((key, e)),
            }
        }
        let wanted: HashSet<String> = entries.iter().map(|e| e.key()).collect();
        let before = self.sessions.len();
        self.sessions.retain(|k, _| wanted.contains(k));
        let (memory, index) = (&self.memory, self.index);
        self.resident.retain(|k, (name, version, _)| {
            let keep = wanted.contains(k);
            if !keep {
                memory.remove(name, *version, index);
            }
            keep
        });
        freed |= self.sessions.len() < before;
        if freed {
            // A replaced or dropped session's weights and arena go back to
            // the OS (see `inferq_heap`).
            inferq_heap::release_free_memory();
        }
        LoadReport {
            loaded: self.sessions.keys().cloned().collect(),
            errors,
        }
    }

    /// The thread's loop: work until the work channel closes (and the held
    /// jobs are done), with control messages checked between batches and at
    /// least every [`CONTROL_POLL`] when idle. (Polling keeps the loop simple
    /// and costs a few wake-ups a second; a reload waits at most that long.)
    pub(super) fn serve(mut self, rx: flume::Receiver<Work>, control: flume::Receiver<Control>) {
        let mut held = VecDeque::new();
        loop {
            while let Ok(Control::Apply(entries, ack)) = control.try_recv() {
                let _ = ack.send(self.apply(&entries));
            }
            let first = match held.pop_front() {
                Some(work) => work,
                None => match rx.recv_timeout(CONTROL_POLL) {
                    Ok(work) => work,
                    Err(flume::RecvTimeoutError::Timeout) => continue,
                    Err(flume::RecvTimeoutError::Disconnected) => return,
                },
            };
            let batch = gather(first, &rx, &mut held);
            self.run(batch);
        }
    }

    /// Runs a batch (of one or more jobs) and answers each job.
    fn run(&mut self, works: Vec<Work>) {
        let span = match works.as_slice() {
            // The job's span (and with it the trace id) continues on this
            // thread; a batch serves several jobs, so it follows from each.
            [one] => tracing::info_span!(parent: &one.span, "infer", model = %one.model.key()),
            many => {
                let ids: Vec<String> = many.iter().map(|w| w.job.to_string()).collect();
                let span = tracing::info_span!("infer_batch", job_ids = ?ids, model = %many[0].model.key(), size = many.len());
                for w in many {
                    span.follows_from(&w.span);
                }
                span
            }
        };
        let _guard = span.enter();
        let rss_before = footprint::rss();
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let [one] = works.as_slice() {
                let run = match &one.input {
                    WorkInput::Encoded(bytes) if one.model.manifest.native_size() => {
                        native::process_native(
                            &mut self.sessions,
                            &mut self.prep,
                            one,
                            bytes,
                            self.max_pixels,
                        )
                    }
                    WorkInput::Frame(frame) if one.model.manifest.native_size() => {
                        native::process_frame(&mut self.sessions, &mut self.prep, one, frame)
                    }
                    _ => compute::process(&mut self.sessions, &mut self.prep, one, self.max_pixels),
                };
                vec![run]
            } else {
                compute::process_batch(
                    &mut self.sessions,
                    &mut self.prep,
                    &mut self.batch,
                    &works,
                    self.max_pixels,
                )
            }
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(panic = %what, jobs = works.len(),
                "inference panicked; its jobs failed, thread keeps serving");
            works
                .iter()
                .map(|_| {
                    Err(JobError::new(
                        ErrorCode::Internal,
                        format!("inference panicked: {what}"),
                    ))
                })
                .collect()
        });
        // One read for the whole batch: its jobs share the figures.
        let rss_after = footprint::rss();
        let model = works
            .first()
            .and_then(|w| self.resident.get(&w.model.key()))
            .map_or(0, |(_, _, bytes)| *bytes);
        let mut results = results;
        for outcome in results.iter_mut().flatten() {
            outcome.memory.rss_before = rss_before;
            outcome.memory.rss_after = rss_after;
            outcome.memory.model = model;
        }
        tracing::debug!(
            jobs = results.len(),
            failed = results.iter().filter(|r| r.is_err()).count(),
            "inference run"
        );
        for (work, result) in works.into_iter().zip(results) {
            let _ = work.reply.send(result);
        }
    }
}

/// Whether `work` may join a batch led by `first`: same model entry (the
/// same `Arc`, so a reload in between never mixes two versions of a model)
/// and an encoded image or a video frame (tensor inputs run alone).
fn joins(first: &Work, work: &Work) -> bool {
    Arc::ptr_eq(&first.model, &work.model) && batchable(&work.input)
}

/// Inputs that are decoded and preprocessed into a batch tensor.
fn batchable(input: &WorkInput) -> bool {
    matches!(input, WorkInput::Encoded(_) | WorkInput::Frame(_))
}

/// Collects the batch that `first` leads: held jobs first, then the work
/// channel, until the model's `max_batch` is reached, nothing is waiting
/// (with `max_delay_ms = 0`) or the delay is over. Jobs of other models are
/// put in `held`, which never grows beyond one batch's worth.
fn gather(first: Work, rx: &flume::Receiver<Work>, held: &mut VecDeque<Work>) -> Vec<Work> {
    let spec = first.model.manifest.batching;
    if !spec.enabled() || !batchable(&first.input) {
        return vec![first];
    }
    let mut batch = Vec::with_capacity(spec.max_batch);
    let mut i = 0;
    while i < held.len() && batch.len() + 1 < spec.max_batch {
        if joins(&first, &held[i]) {
            batch.extend(held.remove(i));
        } else {
            i += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_millis(spec.max_delay_ms);
    while batch.len() + 1 < spec.max_batch && held.len() < spec.max_batch {
        let next = if spec.max_delay_ms == 0 {
            rx.try_recv().ok()
        } else {
            rx.recv_deadline(deadline).ok()
        };
        match next {
            Some(work) if joins(&first, &work) => batch.push(work),
            Some(work) => held.push_back(work),
            None => break,
        }
    }
    batch.insert(0, first);
    batch
}
