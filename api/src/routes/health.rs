//! Liveness and readiness probes.
//!
//! `/healthz` says the process serves HTTP at all (restart me if not);
//! `/readyz` says it can do useful work — the broker and the store answer —
//! so a load balancer stops sending jobs while either is down.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::http::error::ApiError;
use crate::state::AppState;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A probe's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Probe {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    pub status: &'static str,
    /// `ok` when the broker answered (`/readyz` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<&'static str>,
    /// `ok` when the store answered (`/readyz` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<&'static str>,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "The process is alive", body = Probe))
)]
pub async fn healthz() -> Json<Probe> {
    Json(Probe {
        status: "ok",
        broker: None,
        store: None,
    })
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses((status = 200, description = "Broker and store answer", body = Probe), (status = 503, description = "Broker or store unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"))
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Probe>, ApiError> {
    let (broker, store) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, state.queue.check()),
        tokio::time::timeout(PROBE_TIMEOUT, state.store.check()),
    );
    let describe = |r: Result<Result<(), String>, _>| match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some("timed out".to_owned()),
    };
    let broker = describe(broker.map(|r| r.map_err(|e| e.to_string())));
    let store = describe(store.map(|r| r.map_err(|e| e.to_string())));
    match (broker, store) {
        (None, None) => Ok(Json(Probe {
            status: "ready",
            broker: Some("ok"),
            store: Some("ok"),
        })),
        (b, s) => Err(ApiError::Unavailable(format!(
            "not ready: broker {}, store {}",
            b.unwrap_or_else(|| "ok".into()),
            s.unwrap_or_else(|| "ok".into())
        ))),
    }
}
