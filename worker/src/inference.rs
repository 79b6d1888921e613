//! The consume loop's view of inference: find a model version, run one job.
//!
//! [`Processor`](crate::consumer::Processor) talks to this trait, not to the
//! [`Engine`] directly, so the delivery path — triage, fetching, storing,
//! acking — can be tested with a stand-in that answers without ONNX Runtime
//! (see the consumer's tests). [`EngineInference`] is the real one: the
//! worker's live model set and its pinned inference threads.

use std::sync::Arc;

use async_trait::async_trait;
use inferq_backends::repository::ModelEntry;
use inferq_core::job::JobId;

use crate::engine::{Engine, InferError, Outcome, WorkInput};
use crate::models::ModelSet;

/// Runs jobs on models.
#[async_trait]
pub trait Inference: Send + Sync + 'static {
    /// The model version a job names, if this worker serves it.
    async fn model(&self, name: &str, version: u64) -> Option<Arc<ModelEntry>>;

    /// Decodes, preprocesses and runs one job's input; `top_k` overrides
    /// the manifest's.
    async fn infer(
        &self,
        job: JobId,
        model: Arc<ModelEntry>,
        input: WorkInput,
        top_k: Option<usize>,
    ) -> Result<Outcome, InferError>;
}

/// The engine's pinned threads over the live model set.
pub struct EngineInference {
    pub engine: Arc<Engine>,
    pub models: Arc<ModelSet>,
}

#[async_trait]
impl Inference for EngineInference {
    async fn model(&self, name: &str, version: u64) -> Option<Arc<ModelEntry>> {
        self.models.get(name, version).await
    }

    async fn infer(
        &self,
        job: JobId,
        model: Arc<ModelEntry>,
        input: WorkInput,
        top_k: Option<usize>,
    ) -> Result<Outcome, InferError> {
        self.engine.infer(job, model, input, top_k).await
    }
}
