//! The worker's live model set: the repository plus the engine's sessions,
//! kept in step.
//!
//! A rescan that finds new or changed models first has every inference
//! thread build and warm the new sessions, and only then publishes the new
//! repository. So a job is routed to a model version only once every thread
//! can run it, and an old session is dropped only after its replacement is
//! ready: no job fails during a swap. A job naming a version this worker has
//! not seen yet (the API noticed it first) triggers a rescan instead of
//! failing.

use std::sync::Arc;
use std::time::Duration;

use inferq_backends::repository::{LiveRepository, ModelEntry, ModelRepository};
use inferq_runtime::signals::ReloadTrigger;

use crate::engine::Engine;

/// Repository and sessions, reloaded together.
pub struct ModelSet {
    live: LiveRepository,
    engine: Arc<Engine>,
    reloading: tokio::sync::Mutex<()>,
}

impl ModelSet {
    pub fn new(live: LiveRepository, engine: Arc<Engine>) -> Arc<Self> {
        Arc::new(ModelSet {
            live,
            engine,
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The published repository.
    pub fn current(&self) -> Arc<ModelRepository> {
        self.live.current()
    }

    /// Whether an on-demand rescan is allowed now (they are rate-limited).
    pub fn may_rescan(&self) -> bool {
        self.live.may_rescan()
    }

    /// Rescans; if anything changed, loads it on every thread, then
    /// publishes. Returns whether anything changed.
    pub async fn reload(self: &Arc<Self>) -> bool {
        let _one_at_a_time = self.reloading.lock().await;
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            let Some(repo) = this.live.scan_if_changed()? else {
                return Ok::<_, inferq_core::manifest::ManifestError>(false);
            };
            let entries: Vec<Arc<ModelEntry>> = repo.entries().cloned().collect();
            let loaded = this.engine.reload(&entries);
            tracing::info!(models = ?loaded, "models reloaded");
            this.live.publish(Arc::new(repo));
            Ok(true)
        })
        .await;
        match result {
            Ok(Ok(changed)) => changed,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "model rescan failed; keeping the current models");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "model reload task failed");
                false
            }
        }
    }

    /// Finds a model version, rescanning once if it is not known yet.
    pub async fn get(self: &Arc<Self>, name: &str, version: u64) -> Option<Arc<ModelEntry>> {
        if let Some(e) = self.current().get(name, Some(version)) {
            return Some(e.clone());
        }
        // Not rate-limited like the API's on-demand rescan: the API only
        // enqueues versions it has seen on disk, so a miss here means this
        // worker is behind, and failing the job would be wrong. Reloads are
        // serialised, and an unchanged directory costs only a scan.
        self.reload().await;
        self.current().get(name, Some(version)).cloned()
    }

    /// Rescans on SIGHUP and every `poll` until `shutdown` resolves.
    pub async fn watch(
        self: Arc<Self>,
        poll: Option<Duration>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut trigger = ReloadTrigger::new(poll);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = trigger.next() => { self.reload().await; }
            }
        }
    }
}
