//! `GET /v1/models` and `GET /v1/models/{name}[/versions/{v}]`: what is
//! served, with each version's manifest, so clients can discover input
//! sizes, output kinds and label counts without reading files.

use axum::Json;
use axum::extract::{Path, State};
use inferq_backends::repository::{ModelEntry, ModelRepository};
use inferq_core::manifest::ModelManifest;
use serde::Serialize;

use crate::http::error::ApiError;
use crate::state::AppState;

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
    Some(ModelView {
        name,
        default_version,
        versions,
    })
}

/// `GET /v1/models`
#[utoipa::path(
    get,
    operation_id = "list_models",
    path = "/v1/models",
    tag = "models",
    responses((status = 200, description = "Models, versions and manifests", body = serde_json::Value), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json")),
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
    responses((status = 200, description = "The model and its versions", body = serde_json::Value), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json")),
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
    responses((status = 200, description = "The version and its manifest", body = serde_json::Value), (status = 401, description = "Missing or unknown API key", body = crate::http::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found", body = crate::http::error::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn get_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, u64)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let entry = state
        .models
        .find(&name, Some(version))
        .await
        .ok_or(ApiError::ModelNotFound {
            name: name.clone(),
            version: Some(version),
        })?;
    Ok(Json(
        serde_json::to_value(version_view(&entry)).expect("version serialises"),
    ))
}
