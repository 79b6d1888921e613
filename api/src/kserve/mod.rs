//! KServe v2 / Open Inference Protocol: server and model health.
//!
//! Clients of Triton and KServe (`tritonclient`, the KServe SDK, load
//! balancers configured for them) probe `GET /v2/health/live`,
//! `/v2/health/ready` and `/v2/models/{m}[/versions/{v}]/ready` and read
//! `GET /v2` for the server's name and version. Health answers carry only
//! the status code, as the protocol specifies: 200, or 503 when the broker
//! or store is down, or 404 for a model that is not served. Server health
//! is outside API-key authentication like the other probes; model
//! readiness names models, so it needs the `read` scope.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

/// `GET /v2`: server metadata.
pub async fn server() -> Json<Value> {
    Json(json!({
        "name": "inferq",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
}

/// `GET /v2/health/live`.
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// `GET /v2/health/ready`: the broker and the store answer.
pub async fn ready(state: State<AppState>) -> StatusCode {
    match crate::health::readyz(state).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `GET /v2/models/{m}/ready`.
pub async fn model_ready(state: State<AppState>, Path(name): Path<String>) -> StatusCode {
    check_model(state, &name, None).await
}

/// `GET /v2/models/{m}/versions/{v}/ready`.
pub async fn version_ready(
    state: State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> StatusCode {
    match version.parse::<u64>() {
        Ok(v) => check_model(state, &name, Some(v)).await,
        Err(_) => StatusCode::NOT_FOUND,
    }
}

async fn check_model(state: State<AppState>, name: &str, version: Option<u64>) -> StatusCode {
    if !inferq_shared::repository::valid_model_name(name)
        || state.models.find(name, version).await.is_none()
    {
        return StatusCode::NOT_FOUND;
    }
    ready(state).await
}
