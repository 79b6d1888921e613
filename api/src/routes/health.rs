//! Liveness and readiness probes.
//!
//! `/healthz` says the process serves HTTP at all (restart me if not);
//! `/readyz` says it can do useful work — the broker and the store answer —
//! so a load balancer stops sending jobs while either is down.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::http::error::ApiError;
use crate::state::AppState;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "The process is alive"))
)]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses((status = 200, description = "Broker and store answer"), (status = 503, description = "Broker or store unavailable", body = crate::http::error::Problem, content_type = "application/problem+json"))
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
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
        (None, None) => Ok(Json(
            json!({ "status": "ready", "broker": "ok", "store": "ok" }),
        )),
        (b, s) => Err(ApiError::Unavailable(format!(
            "not ready: broker {}, store {}",
            b.unwrap_or_else(|| "ok".into()),
            s.unwrap_or_else(|| "ok".into())
        ))),
    }
}
