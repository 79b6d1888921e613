//! `GET /v1/models` and `GET /v1/models/{name}[/versions/{v}]`: what is
//! served, with each version's manifest, so clients can discover input
//! sizes, output kinds and label counts without reading files.
//!
//! TF Serving answers the same two paths with its model status,
//! `{"model_version_status": [{"version", "state", "status"}]}`, and its
//! clients (and Vertex's health checks of custom containers) read only
//! that member. Rather than split the path by content negotiation — a TF
//! Serving client sends no distinguishing `Accept` — the answer carries
//! both: InferQ's members as before, plus `model_version_status` for each
//! served version (every version in the repository is `AVAILABLE`: the
//! workers load it on first use).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use inferq_backends::repository::{ModelEntry, ModelRepository};
use inferq_core::manifest::ModelManifest;
use serde::Serialize;

use crate::http::error::ApiError;
use crate::state::AppState;

/// TF Serving's status of one version.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionStatus {
    /// The version, as a decimal string (TF Serving's int64 in JSON).
    version: String,
    /// Always `AVAILABLE`: only servable versions are in the repository.
    state: &'static str,
    status: StatusDetail,
}

/// `status` of a [`VersionStatus`].
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusDetail {
    /// `OK`.
    error_code: &'static str,
    /// Empty.
    error_message: &'static str,
}

fn status(version: u64) -> VersionStatus {
    VersionStatus {
        version: version.to_string(),
        state: "AVAILABLE",
        status: StatusDetail {
            error_code: "OK",
            error_message: "",
        },
    }
}

/// A model as `GET /v1/models/{name}` answers it, for the OpenAPI
/// document (the handler serialises [`ModelView`] and the status).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ModelAnswer {
    name: String,
    /// The version a request naming none gets.
    default_version: u64,
    versions: Vec<VersionAnswer>,
    /// TF Serving's model status: one entry per served version.
    model_version_status: Vec<VersionStatus>,
}

/// The list `GET /v1/models` answers, for the OpenAPI document (the
/// handler serialises [`ModelList`]).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ModelListAnswer {
    /// The model a job naming none runs.
    default_model: String,
    models: Vec<ModelAnswer>,
}

/// A version as listed (and as `GET /v1/models/{name}/versions/{v}`
/// answers it, with `model_version_status`): the version, its label count
/// and every member of its manifest (`kind`, `input`, `preprocess`,
/// `output`, …; see docs/models.md).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct VersionAnswer {
    version: u64,
    label_count: usize,
    kind: String,
    /// `model.toml`'s `[input]`.
    input: BTreeMap<String, serde_json::Value>,
    /// `model.toml`'s `[output]`.
    output: BTreeMap<String, serde_json::Value>,
    /// Only on `GET /v1/models/{name}/versions/{v}`: TF Serving's status of
    /// this version.
    model_version_status: Option<Vec<VersionStatus>>,
}

#[derive(Serialize)]
pub struct VersionView<'a> {
    version: u64,
    #[serde(flatten)]
    manifest: &'a ModelManifest,
    /// Number of labels loaded (0 when the model has none).
    label_count: usize,
}

#[derive(Serialize)]
pub struct ModelView<'a> {
    name: &'a str,
    /// The version used when a request names none: the newest whose
    /// manifest does not say `default = false`.
    default_version: u64,
    versions: Vec<VersionView<'a>>,
    /// TF Serving's model status of every version.
    model_version_status: Vec<VersionStatus>,
}

/// One version with TF Serving's status of it.
#[derive(Serialize)]
struct VersionWithStatus<'a> {
    #[serde(flatten)]
    view: VersionView<'a>,
    model_version_status: Vec<VersionStatus>,
}

#[derive(Serialize)]
pub struct ModelList<'a> {
    default_model: &'a str,
    models: Vec<ModelView<'a>>,
}

fn version_view(e: &ModelEntry) -> VersionView<'_> {
    VersionView {
        version: e.version,
        manifest: &e.manifest,
        label_count: e.labels.len(),
    }
}

fn model_view<'a>(repo: &'a ModelRepository, name: &'a str) -> Option<ModelView<'a>> {
    let versions: Vec<VersionView> = repo.versions(name)?.map(|e| version_view(e)).collect();
    let default_version = repo.get(name, None)?.version;
    let model_version_status = versions.iter().map(|v| status(v.version)).collect();
    Some(ModelView {
        name,
        default_version,
        versions,
        model_version_status,
    })
}

/// `GET /v1/models`
#[utoipa::path(
    get,
    operation_id = "list_models",
    path = "/v1/models",
    tag = "models",
    responses((status = 200, description = "Models, versions and manifests", body = ModelListAnswer), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn list(State(state): State<AppState>) -> Json<serde_json::Value> {
    let repo = state.models.current();
    let models = repo.names().filter_map(|n| model_view(&repo, n)).collect();
    let list = ModelList {
        default_model: &state.settings.default_model,
        models,
    };
    Json(serde_json::to_value(list).expect("model list serialises"))
}

/// `GET /v1/models/{name}`
#[utoipa::path(
    get,
    operation_id = "get_model",
    path = "/v1/models/{name}",
    tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, description = "The model and its versions, with TF Serving's `model_version_status`", body = ModelAnswer), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.models.find(&name, None).await;
    let repo = state.models.current();
    let view = model_view(&repo, &name).ok_or_else(|| ApiError::ModelNotFound {
        name: name.clone(),
        version: None,
    })?;
    Ok(Json(serde_json::to_value(view).expect("model serialises")))
}

/// `GET /v1/models/{name}/versions/{version}`
#[utoipa::path(
    get,
    path = "/v1/models/{name}/versions/{version}",
    tag = "models",
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Model version")),
    responses((status = 200, description = "The version and its manifest, with TF Serving's `model_version_status`", body = VersionAnswer), (status = 400, description = "The version is not a positive integer", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn get_version(
    State(state): State<AppState>,
    path: Result<Path<(String, u64)>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path((name, version)) = path.map_err(|e| ApiError::InvalidArgument(e.body_text()))?;
    let entry = state
        .models
        .find(&name, Some(version))
        .await
        .ok_or(ApiError::ModelNotFound {
            name: name.clone(),
            version: Some(version),
        })?;
    let answer = VersionWithStatus {
        view: version_view(&entry),
        model_version_status: vec![status(entry.version)],
    };
    Ok(Json(
        serde_json::to_value(answer).expect("version serialises"),
    ))
}
