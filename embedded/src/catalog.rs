//! The API's view of the models in the embedded process: the worker's own
//! model set, so the API routes jobs only to versions whose sessions are
//! loaded on every inference thread.

use std::sync::Arc;

use inferq_backends::repository::ModelRepository;
use inferq_worker::models::ModelSet;

/// In the embedded process the API reads the worker's model set, so it only
/// routes jobs to versions whose sessions are ready.
pub struct EmbeddedCatalog(pub Arc<ModelSet>);

#[async_trait::async_trait]
impl inferq_api::ModelCatalog for EmbeddedCatalog {
    fn current(&self) -> Arc<ModelRepository> {
        self.0.current()
    }

    fn may_rescan(&self) -> bool {
        self.0.may_rescan()
    }

    async fn rescan(&self) -> bool {
        self.0.reload().await
    }
}
