//! One coordinator's turn at one batch, and the lease that makes it the only
//! one: the state a turn carries and how it keeps its claim while it works.
//!
//! The coordinator ([`super::coordinator`]) drives a turn; writing the
//! result files ([`super::files`]) needs only what is here, so neither of
//! those two files has to import the other.

use std::time::{Duration, Instant};

use inferq_backends::store::{BATCHES, ResultStore};
use inferq_core::job::JobId;
use tokio::sync::watch;

use super::now_ms;
use crate::http::error::ApiError;
use crate::state::AppState;

/// One coordinator's turn at one batch.
pub(super) struct Run {
    pub(super) state: AppState,
    pub(super) id: JobId,
    pub(super) member: String,
    pub(super) lease: Duration,
    pub(super) renewed: Instant,
    pub(super) stop: watch::Receiver<bool>,
}

impl Run {
    pub(super) fn store(&self) -> &dyn ResultStore {
        self.state.store.as_ref()
    }

    pub(super) fn state(&self) -> &AppState {
        &self.state
    }

    /// Extends the lease when a third of it has passed.
    pub(super) async fn renew(&mut self) -> Result<(), ApiError> {
        if self.renewed.elapsed() >= self.lease / 3 {
            let until = now_ms() + self.lease.as_millis() as u64;
            self.store().schedule(BATCHES, &self.member, until).await?;
            self.renewed = Instant::now();
        }
        Ok(())
    }
}
