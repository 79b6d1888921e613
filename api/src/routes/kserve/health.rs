//! KServe v2 server metadata and health: `GET /v2`, `/v2/health/live`,
//! `/v2/health/ready`.
//!
//! Triton answers the health probes with the status code alone, but the
//! Open Inference Protocol's REST schema gives them a body
//! (`{"live": true}`, `{"ready": true}`) and the KServe Python client reads
//! that body, not the status. So both are sent: 200 with `true`, or, for
//! readiness, 503 with `false` when the broker or the store is down.
//! `GET /v2` lists only the protocol extensions InferQ really implements.
//! Model readiness (`/v2/models/{m}[/versions/{v}]/ready`) answers the
//! model's name, version and `ready` likewise, or 404 for a model that is
//! not served.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::state::AppState;

/// The protocol extensions InferQ implements, as `GET /v2` names them:
/// binary tensors in and out (`Inference-Header-Content-Length`), the
/// `classification` output parameter and `GET /v2/models/{m}/config`.
pub const EXTENSIONS: [&str; 3] = [
    "binary_tensor_data",
    "classification",
    "model_configuration",
];

/// `GET /v2`'s body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ServerMetadata {
    /// Always `inferq`.
    pub name: &'static str,
    /// The API's version.
    pub version: &'static str,
    /// The extensions implemented (see [`EXTENSIONS`]).
    pub extensions: Vec<&'static str>,
}

/// `GET /v2/health/live`'s body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Live {
    pub live: bool,
}

/// `GET /v2/health/ready`'s body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Ready {
    pub ready: bool,
}

/// `GET /v2`: server metadata.
#[utoipa::path(
    get,
    path = "/v2",
    tag = "kserve",
    responses((status = 200, description = "Server name, version and implemented extensions", body = ServerMetadata))
)]
pub async fn server() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "inferq",
        version: env!("CARGO_PKG_VERSION"),
        extensions: EXTENSIONS.to_vec(),
    })
}

/// `GET /v2/health/live`: the process answers.
#[utoipa::path(
    get,
    path = "/v2/health/live",
    tag = "kserve",
    responses((status = 200, description = "Live", body = Live))
)]
pub async fn live() -> Json<Live> {
    Json(Live { live: true })
}

/// `GET /v2/health/ready`: the broker and the store answer.
#[utoipa::path(
    get,
    path = "/v2/health/ready",
    tag = "kserve",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Broker or store unavailable (`ready` is false)", body = Ready)
    )
)]
pub async fn ready(state: State<AppState>) -> (StatusCode, Json<Ready>) {
    let status = ready_status(state).await;
    (
        status,
        Json(Ready {
            ready: status == StatusCode::OK,
        }),
    )
}

/// 200 when the broker and the store answer, else 503.
pub(super) async fn ready_status(state: State<AppState>) -> StatusCode {
    match crate::routes::health::readyz(state).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `GET /v2/models/{m}[/versions/{v}]/ready`'s body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelReady {
    /// The model's name.
    pub name: String,
    /// The model version answering (the default one without `/versions/`).
    pub version: String,
    /// True when it is served and the broker and the store answer.
    pub ready: bool,
}

/// `GET /v2/models/{m}/ready`.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/ready",
    tag = "kserve",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "Ready", body = ModelReady),
        (status = 404, description = "Not served", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Broker or store unavailable (`ready` is false)", body = ModelReady)
    ),
    security(("api_key" = []))
)]
pub async fn model_ready(state: State<AppState>, Path(name): Path<String>) -> Response {
    check_model(state, name, None).await
}

/// `GET /v2/models/{m}/versions/{v}/ready`.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/versions/{version}/ready",
    tag = "kserve",
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Model version")),
    responses(
        (status = 200, description = "Ready", body = ModelReady),
        (status = 404, description = "Not served", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Broker or store unavailable (`ready` is false)", body = ModelReady)
    ),
    security(("api_key" = []))
)]
pub async fn version_ready(
    state: State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    check_model(state, name, Some(version)).await
}

async fn check_model(state: State<AppState>, name: String, version: Option<String>) -> Response {
    let entry = match super::entry(&state, &name, version.as_deref()).await {
        Ok(e) => e,
        Err(e) => return e.into_v2_response(),
    };
    let status = ready_status(state).await;
    let body = ModelReady {
        name,
        version: entry.version.to_string(),
        ready: status == StatusCode::OK,
    };
    (status, Json(body)).into_response()
}
